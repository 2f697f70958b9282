"""pytest fixtures for the ngx_http_aws_auth_module integration tests.

Fixtures
--------
free_port      (function) callable -> an unused 127.0.0.1 TCP port.
nginx_bin      (session)  path of the nginx binary (NGINX_BIN or newest
                          target/release/build/nginx-sys-*/out/objs/nginx);
                          fails if there is none.
module_path    (session)  path of the module .so (NGX_MODULE or
                          target/release/libngx_http_aws_auth_module.so);
                          fails (never skips) if it does not exist.
s3             (session)  running harness.S3Server (s3s-fs) with bucket
                          harness.BUCKET created; .port, .endpoint, .client
                          (botocore, path-style, direct to s3s-fs), .put().
                          Also started with --domain for the VHOST_DOMAINS.
signing        (function) harness.SigningConfig for today's UTC date:
                          .access_key .secret_key .scope .signing_key_b64
                          .directives(indent, bucket).
recorder       (function) harness.RecordingProxy in front of s3s-fs:
                          .port, .requests, .last(), .clear().
recorder2      (function) a second one (two-server upstreams).
make_nginx     (function) factory: make_nginx(load_module=True) -> Nginx
                          with its own temp prefix; stopped at teardown,
                          and the test errors if a worker crashed.
nginx          (function) make_nginx() shortcut (module required).
module_make_nginx, module_recorder
               (module)   the same, shared by the tests of one module.
"""

from __future__ import annotations

import os
import re
import time

import pytest

import harness


# Most tests sign with one UTC day's key (harness.SigningConfig). A test that
# straddles midnight would see its key run out half-way through, which the
# module rightly answers by refusing to sign (and by cutting presigned URLs
# short at the key's last second). The tests that mean to see that configure
# their days themselves; every other test, and every module that shares one
# nginx between its tests, waits for the next day rather than start within
# these many seconds of the end of a UTC day.
TEST_DAY_MARGIN = 150
MODULE_DAY_MARGIN = 300


def _wait_for_the_next_day_within(margin: float) -> None:
    left = 86400 - time.time() % 86400
    if left < margin:
        time.sleep(left + 1)


@pytest.fixture(scope="module", autouse=True)
def _module_not_at_the_end_of_a_utc_day():
    _wait_for_the_next_day_within(MODULE_DAY_MARGIN)


@pytest.fixture(autouse=True)
def _test_not_at_the_end_of_a_utc_day():
    _wait_for_the_next_day_within(TEST_DAY_MARGIN)


@pytest.fixture
def free_port():
    """Callable returning an unused 127.0.0.1 TCP port."""
    return harness.free_port


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    path = harness.find_nginx_binary()
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            f"nginx binary not found (NGINX_BIN or {harness.NGINX_GLOB})", pytrace=False
        )
    return path


@pytest.fixture(scope="session")
def module_path() -> str:
    path = harness.find_module()
    if not os.path.exists(path):
        pytest.fail(f"module .so not found at {path} (set NGX_MODULE or build it)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    server = harness.S3Server(str(tmp_path_factory.mktemp("s3s")))
    server.start()
    try:
        server.client.create_bucket(Bucket=harness.BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def signing() -> harness.SigningConfig:
    return harness.SigningConfig()


def _remember(request, proxy) -> None:
    """Lets the nginx teardown check logs for the signatures it saw."""
    request.node.__dict__.setdefault("aws_recorders", []).append(proxy)


@pytest.fixture
def recorder(s3, request):
    proxy = harness.RecordingProxy(s3.port)
    _remember(request, proxy)
    yield proxy
    proxy.close()


@pytest.fixture
def recorder2(s3, request):
    """A second recorder in front of s3s-fs: the other server of a
    two-server upstream."""
    proxy = harness.RecordingProxy(s3.port)
    _remember(request, proxy)
    yield proxy
    proxy.close()


def handed_out_url(line: str) -> bool:
    """A presigned URL made with a session token carries the token: that is
    what the client is given. nginx's own debug lines echo it (the value of
    `return 302 $aws_presigned_url;`, the Location header). The module's
    own lines (`aws_auth:`) never may."""
    return ("X-Amz-Signature=" in line and "X-Amz-Security-Token=" in line
            and "aws_auth" not in line)


def _nginx_factory(nginx_bin, base_dir, request):
    """Yields a factory of Nginx instances under base_dir; at teardown stops
    them all and fails the test (or module) if a worker crashed or a secret
    reached an error log."""
    instances: list[harness.Nginx] = []

    def factory(load_module: bool = True) -> harness.Nginx:
        module = None
        if load_module:
            module = request.getfixturevalue("module_path")
        ng = harness.Nginx(nginx_bin, module, str(base_dir / f"nginx{len(instances)}"))
        instances.append(ng)
        return ng

    yield factory
    crashes = []
    leaks = []
    secrets = harness.known_secrets()
    # the signatures that went out are credentials for 15 minutes: no log
    # may hold one either
    # the session tokens metadata mocks handed out are credentials too
    for mock in getattr(request.node, "aws_mocks", []):
        for i, (token, _) in enumerate(list(mock.issued)):
            secrets.update(harness.secret_forms(f"role session token {i}", token))
        for i, value in enumerate(getattr(mock, "secrets", [])):
            secrets.update(harness.secret_forms(f"mock secret {i}", value))
    signatures = set()
    for proxy in getattr(request.node, "aws_recorders", []):
        for rec in proxy.requests:
            for value in rec.values("authorization"):
                sig = value.decode("latin-1").rpartition("Signature=")[2]
                if len(sig) == 64:
                    signatures.add(sig.lower())
    for ng in instances:
        ng.stop()
        crashes += ng.crash_lines()
        log = "\n".join(l for l in ng.error_log().splitlines() if not handed_out_url(l))
        leaks += [name for name, value in secrets.items() if value in log]
        # signatures are 64 hex digits: every such run in the log is looked
        # up at once (any case, any place in a longer run)
        runs = re.findall(r"[0-9a-fA-F]{64,}", log)
        found = {r[i:i + 64].lower() for r in runs for i in range(len(r) - 63)}
        leaks += [f"signature sent upstream ({s[:8]}...)" for s in signatures & found]
    if crashes:
        pytest.fail("nginx worker crashed:\n" + "\n".join(crashes), pytrace=False)
    if leaks:
        # Every test's debug-level error log is checked: no secret, signing
        # key or session token may ever reach it.
        pytest.fail(f"secret material in nginx's error log: {sorted(set(leaks))}", pytrace=False)


@pytest.fixture
def make_nginx(nginx_bin, tmp_path, request):
    yield from _nginx_factory(nginx_bin, tmp_path, request)


@pytest.fixture(scope="module")
def module_make_nginx(nginx_bin, tmp_path_factory, request):
    """make_nginx for one nginx shared by a whole test module."""
    yield from _nginx_factory(nginx_bin, tmp_path_factory.mktemp("nginx"), request)


@pytest.fixture(scope="module")
def module_recorder(s3, request):
    """recorder shared by a whole test module."""
    proxy = harness.RecordingProxy(s3.port)
    _remember(request, proxy)
    yield proxy
    proxy.close()


@pytest.fixture
def nginx(make_nginx) -> harness.Nginx:
    return make_nginx()
