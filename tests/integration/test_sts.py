"""Credentials from AWS STS: `aws_credentials web-identity` (EKS IRSA,
`AssumeRoleWithWebIdentity`) and `aws_assume_role` (`AssumeRole` signed
with the block's credentials: a secret key file with or without a session
token, or instance metadata), against a strict STS mock over TLS with a
certificate from a CA made for this run (sts_mock.py).

The mock hands out the test S3 server's key with a fresh session token and
a short expiration, so refreshes happen during the tests. Every request
that reaches s3s-fs is checked with botocore and must carry a token the
mock issued, valid when the request was made. Tokens, web identity tokens
and base secrets join the secrets no log line may hold."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import time

import pytest

import harness
from harness import BUCKET
from metadata_mock import ImdsMock
from sts_mock import ROLE_ARN, BaseKey, DnsMock, StsMock, TestCA

OBJ = "sts/ok.txt"
BODY = b"read with an assumed role\n"
BASE_AK = "AKIAIOSFODNN7BASEKEY"


@pytest.fixture(scope="module")
def obj(s3):
    s3.put(OBJ, BODY)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def sts_cert(ca):
    return ca.issue(StsMock.HOST)


def register(request, mock):
    request.node.__dict__.setdefault("aws_mocks", []).append(mock)
    return mock


@pytest.fixture
def mocks(request):
    made = []

    def make(cls, *a, **kw):
        m = register(request, cls(*a, **kw))
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


def token_file(tmp_path, name="token") -> tuple:
    path = tmp_path / name
    value = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48) + "." + secrets.token_urlsafe(16)
    path.write_text(value + "\n")
    return path, value


def sts_params(sts: StsMock, ca: TestCA) -> str:
    return f"sts_endpoint={sts.endpoint} sts_address={sts.address} ca={ca.cert}"


def start(ng, creds: str, recorder, workers: int = 2, env: dict | None = None, extra: str = "",
          http: str = ""):
    ng.workers = workers
    ng.write_config(f"""
    {http}
    server {{
        listen 127.0.0.1:{ng.port};
        aws_region {harness.REGION};
        aws_s3_bucket {BUCKET};
        {creds}
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        {extra}
        location = /state {{
            return 200 "$aws_credentials_source $aws_credentials_expires_in\\n";
        }}
    }}""")
    ng.start(env=env)


def get(ng, path: str = f"/{BUCKET}/{OBJ}") -> harness.Response:
    return ng.request("GET", path)


def fetch_lines(ng, source: str) -> list[str]:
    return [l for l in ng.error_log().splitlines() if f"aws_auth: credentials from {source}" in l]


def test_web_identity_from_the_environment_rereads_the_token(nginx, recorder, obj, mocks, ca, sts_cert,
                                                             tmp_path):
    """IRSA as EKS sets it up: role, token file and session name from the
    environment. The call is unsigned and carries the token file's current
    content: kubelet rotates it, the next refresh sends the new one."""
    path, first = token_file(tmp_path)
    sts = mocks(StsMock, sts_cert, ttl=10, token_file=str(path))
    sts.secrets.append(first)
    env = {"AWS_ROLE_ARN": ROLE_ARN, "AWS_WEB_IDENTITY_TOKEN_FILE": str(path),
           "AWS_ROLE_SESSION_NAME": "nginx-pod-7f9c"}
    start(nginx, f"aws_credentials web-identity {sts_params(sts, ca)};", recorder, env=env)
    harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
    _, second = token_file(tmp_path)  # rotated
    sts.secrets.append(second)
    t0 = time.time()
    while time.time() - t0 < 12:
        assert get(nginx).status == 200
        time.sleep(0.2)
    calls = [c for c in sts.calls if c["action"] == "AssumeRoleWithWebIdentity"]
    assert len(calls) >= 2 and all(c["status"] == 200 for c in calls), [(c["status"], c["why"]) for c in calls]
    assert calls[0]["form"]["WebIdentityToken"] == first
    assert calls[-1]["form"]["WebIdentityToken"] == second
    assert all(c["form"]["RoleSessionName"] == "nginx-pod-7f9c" for c in calls)
    assert all("Authorization" not in c["headers"] for c in calls)
    tokens = harness.check_role_signed(recorder, sts)
    assert len(tokens) >= 2
    state = get(nginx, "/state").body.decode().split()
    assert state[0] == "web-identity" and 0 < int(state[1]) <= 10, state
    lines = fetch_lines(nginx, "web-identity")
    assert len(lines) == len(calls) and all("refreshed" in l for l in lines), lines


@pytest.mark.parametrize("with_token", [False, True], ids=["secret", "secret+session-token"])
def test_assume_role_signed_with_a_secret_key_file(nginx, recorder, obj, mocks, ca, sts_cert, tmp_path,
                                                   with_token):
    """`aws_assume_role` over `aws_secret_key_file` (and a session token):
    STS checks the call's signature with botocore against the base key,
    the external ID, duration and session name; S3 gets the assumed role's
    credentials, not the base key."""
    base_secret = secrets.token_urlsafe(30)
    base_token = "IQoJb3JpZ2luX2VjEBASE/" + secrets.token_urlsafe(40) if with_token else None
    sts = mocks(StsMock, sts_cert, ttl=20, external_id="Zx9-tenant:42",
                base_keys={BASE_AK: BaseKey(base_secret, base_token)})
    sts.secrets += [base_secret] + ([base_token] if base_token else [])
    secret_file = tmp_path / "base.secret"
    secret_file.write_text(base_secret + "\n")
    os.chmod(secret_file, 0o600)
    token_line = f"aws_session_token {base_token};" if base_token else ""
    start(nginx, f"""
        aws_access_key {BASE_AK};
        aws_secret_key_file {secret_file};
        {token_line}
        aws_assume_role {ROLE_ARN} external_id=Zx9-tenant:42 duration=900 session_name=edge@nginx
                        {sts_params(sts, ca)};""", recorder)
    harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
    for _ in range(5):
        resp = get(nginx)
        assert resp.status == 200 and resp.body == BODY, resp
    assert sts.count() == 1 and sts.count("AssumeRole", ok=True) == 1, [(c["status"], c["why"]) for c in sts.calls]
    form = sts.calls[0]["form"]
    assert (form["DurationSeconds"], form["RoleSessionName"], form["ExternalId"]) == (
        "900", "edge@nginx", "Zx9-tenant:42")
    assert ("X-Amz-Security-Token" in sts.calls[0]["headers"]) == with_token
    harness.check_role_signed(recorder, sts)
    assert all(harness.parse_authorization(r.header("authorization"))["access_key"] == harness.ACCESS_KEY
               for r in recorder.requests)
    assert get(nginx, "/state").body.decode().startswith("assume-role ")


def test_assume_role_with_a_wrong_secret_is_refused(nginx, recorder, obj, mocks, ca, sts_cert, tmp_path):
    """The mock really checks the signature: a secret file that is not the
    access key's gets SignatureDoesNotMatch, one line, and 500."""
    sts = mocks(StsMock, sts_cert, ttl=20, base_keys={BASE_AK: BaseKey(secrets.token_urlsafe(30))})
    wrong = secrets.token_urlsafe(30)
    sts.secrets.append(wrong)
    secret_file = tmp_path / "base.secret"
    secret_file.write_text(wrong)
    os.chmod(secret_file, 0o600)
    start(nginx, f"""
        aws_access_key {BASE_AK};
        aws_secret_key_file {secret_file};
        aws_assume_role {ROLE_ARN} {sts_params(sts, ca)};""", recorder, workers=1)
    harness.wait_until(lambda: fetch_lines(nginx, "assume-role"), 5, "the refresh error")
    assert get(nginx).status == 500 and recorder.requests == []
    assert sts.calls and sts.calls[0]["why"].startswith("signature: sent"), sts.calls
    lines = fetch_lines(nginx, "assume-role")
    assert all("STS answered 403 SignatureDoesNotMatch" in l for l in lines), lines


def test_assume_role_chained_over_imds(nginx, recorder, obj, mocks, ca, sts_cert):
    """`aws_credentials imds` + `aws_assume_role`: each AssumeRole is signed
    with the instance role's credentials of the moment (STS checks the
    IMDSv2-issued session token was valid then); both refresh ahead of
    their expiry, and requests never fail."""
    imds = mocks(ImdsMock, ttl=8)
    sts = mocks(StsMock, sts_cert, ttl=12, base_keys={
        harness.ACCESS_KEY: BaseKey(harness.SECRET_KEY, token_valid=imds.token_valid_at)})
    start(nginx, f"aws_credentials imds endpoint={imds.url};\n"
                 f"aws_assume_role {ROLE_ARN} {sts_params(sts, ca)};", recorder, workers=4)
    t0 = time.time()
    statuses = []
    while time.time() - t0 < 20:
        statuses.append(get(nginx).status)
        time.sleep(0.1)
    assert set(statuses) == {200}, statuses
    calls = [(c["status"], c["why"]) for c in sts.calls]
    assert sts.count("AssumeRole", ok=True) >= 2 and sts.count(ok=False) == 0, calls
    # the whole nginx fetches once per refresh, not once per worker
    assert sts.count() <= 3, calls
    # 8 s instance credentials (whole seconds on the wire) over ~20 s: one
    # refresh every 5-6 s, for the whole nginx
    assert 3 <= imds.credential_fetches <= 5, imds.credential_fetches
    used = {c["headers"].get("X-Amz-Security-Token") for c in sts.calls}
    assert len(used) >= 2, "AssumeRole was not signed with refreshed instance credentials"
    harness.check_role_signed(recorder, sts)


def test_assume_role_off_below_signs_with_the_base(nginx, recorder, obj, mocks, ca, sts_cert, tmp_path):
    """`aws_assume_role` is inherited like any directive; `aws_assume_role
    off` in a location signs there with the block's own credentials."""
    sts = mocks(StsMock, sts_cert, ttl=20, base_keys={
        harness.ACCESS_KEY: BaseKey(harness.SECRET_KEY)})
    secret_file = tmp_path / "s3.secret"
    secret_file.write_text(harness.SECRET_KEY)
    os.chmod(secret_file, 0o600)
    start(nginx, f"""
        aws_access_key {harness.ACCESS_KEY};
        aws_secret_key_file {secret_file};
        aws_assume_role {ROLE_ARN} {sts_params(sts, ca)};""", recorder, extra=f"""
        location /own/ {{
            aws_sign;
            aws_assume_role off;
            proxy_pass http://127.0.0.1:{recorder.port}/;
        }}""")
    harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
    assumed = recorder.last().header("x-amz-security-token")
    assert sts.token_valid_at(assumed, time.time())
    assert get(nginx, f"/own/{BUCKET}/{OBJ}").status == 200
    own = recorder.last()
    harness.check_signed_request(own)
    assert "x-amz-security-token" not in [n.lower() for n in own.names()]


def test_sts_name_found_with_nginx_resolver(nginx, recorder, obj, mocks, ca, sts_cert, tmp_path):
    """Without sts_address= the endpoint's name is resolved by nginx's
    `resolver`, on the event loop."""
    path, value = token_file(tmp_path)
    sts = mocks(StsMock, sts_cert, ttl=20, token_file=str(path))
    sts.secrets.append(value)
    dns = DnsMock({StsMock.HOST})
    try:
        start(nginx, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                     f"sts_endpoint={sts.endpoint} ca={ca.cert};", recorder,
              http=f"resolver 127.0.0.1:{dns.port} ipv6=off;")
        harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
        assert (StsMock.HOST, 1) in dns.queries
        harness.check_role_signed(recorder, sts)
    finally:
        dns.close()


def test_sts_endpoint_given_by_address(nginx, make_nginx, recorder, obj, mocks, ca, tmp_path):
    """An endpoint written as an IP address: the certificate must name that
    address (nginx's own host check knows DNS names only), no SNI."""
    path, value = token_file(tmp_path)
    good = mocks(StsMock, ca.issue("sts-by-ip.test", ["IP:127.0.0.1"]), ttl=20, token_file=str(path),
                 host="127.0.0.1")
    good.secrets.append(value)
    start(nginx, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                 f"sts_endpoint={good.endpoint} ca={ca.cert};", recorder, workers=1)
    harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
    harness.check_role_signed(recorder, good)
    # the same, with a certificate that names only a DNS name
    other = mocks(StsMock, ca.issue("sts-no-ip.test"), ttl=20, token_file=str(path), host="127.0.0.1")
    ng = make_nginx()
    start(ng, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
              f"sts_endpoint={other.endpoint} ca={ca.cert};", recorder, workers=1)
    harness.wait_until(lambda: 'the certificate is not for "127.0.0.1"' in ng.error_log(), 5,
                       "the refusal line")
    assert other.calls == []


def test_worker_exit_during_a_name_lookup(make_nginx, recorder, obj, mocks, ca, sts_cert, tmp_path):
    """A DNS server that never answers: a reload, then a stop, while STS
    name lookups are pending in old and new workers. No worker crashes and
    nothing is left open: the lookups are given up before nginx frees its
    resolver."""
    path, value = token_file(tmp_path)
    sts = mocks(StsMock, sts_cert, ttl=20, token_file=str(path))
    sts.secrets.append(value)
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.1", 0))
    try:
        ng = make_nginx()
        start(ng, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                  f"sts_endpoint={sts.endpoint} ca={ca.cert};", recorder,
              http=f"resolver 127.0.0.1:{mute.getsockname()[1]} ipv6=off;")
        time.sleep(1)
        os.kill(ng.proc.pid, signal.SIGHUP)
        time.sleep(1.5)
        ng.proc.send_signal(signal.SIGTERM)
        ng.proc.wait(timeout=15)
        log = ng.error_log()
        assert "exited on signal" not in log and "[alert]" not in log, log[-3000:]
        assert sts.calls == []
    finally:
        mute.close()


@pytest.mark.parametrize("case", ["untrusted", "wrong-name"])
def test_unverifiable_certificate_fails_closed(nginx, recorder, obj, mocks, ca, tmp_path, case):
    """A certificate no configured CA vouches for, or one for another
    name: no STS request is sent, no credentials, 500 with one clear
    line; nothing reaches S3."""
    cert = ca.self_signed(StsMock.HOST) if case == "untrusted" else ca.issue("other.test")
    path, value = token_file(tmp_path)
    sts = mocks(StsMock, cert, ttl=20, token_file=str(path))
    sts.secrets.append(value)
    start(nginx, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                 f"{sts_params(sts, ca)};", recorder, workers=1)
    harness.wait_until(lambda: fetch_lines(nginx, "web-identity"), 5, "the refresh error")
    resp = get(nginx)
    assert resp.status == 500, resp
    assert recorder.requests == [] and sts.calls == []
    lines = fetch_lines(nginx, "web-identity")
    want = "the certificate is not trusted" if case == "untrusted" else 'the certificate is not for "sts.test"'
    assert lines and all(want in l and "not refreshed" in l for l in lines), lines


def test_expired_token_file_fails_closed_then_recovers(nginx, recorder, obj, mocks, ca, sts_cert, tmp_path):
    """STS says the projected token expired: ExpiredTokenException in one
    line per attempt, 500; kubelet writes a new token: credentials again
    without a reload."""
    path, old = token_file(tmp_path)
    sts = mocks(StsMock, sts_cert, ttl=20, token_file=str(path))
    sts.expired_tokens.add(old)
    sts.secrets.append(old)
    start(nginx, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                 f"{sts_params(sts, ca)};", recorder, workers=1)
    harness.wait_until(lambda: fetch_lines(nginx, "web-identity"), 5, "the refresh error")
    assert get(nginx).status == 500
    lines = fetch_lines(nginx, "web-identity")
    assert all("STS answered 400 ExpiredTokenException: Token expired" in l for l in lines), lines
    _, new = token_file(tmp_path)
    sts.secrets.append(new)
    harness.wait_until(lambda: get(nginx).status == 200, 10, "credentials with the new token")
    harness.check_role_signed(recorder, sts)


def test_access_denied_keeps_the_last_good_then_fails_closed(nginx, recorder, obj, mocks, ca, sts_cert,
                                                             tmp_path):
    """The role's trust policy changes: AccessDenied on refresh. The last
    credentials sign until they expire, then 500 naming the source and
    STS's answer."""
    path, value = token_file(tmp_path)
    sts = mocks(StsMock, sts_cert, ttl=8, token_file=str(path))
    sts.secrets.append(value)
    start(nginx, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                 f"{sts_params(sts, ca)};", recorder)
    harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
    expires = int(sts.issued[-1][1])
    sts.role_arn = "arn:aws:iam::111122223333:role/someone-else"
    while time.time() < expires - 1:
        assert get(nginx).status == 200
        time.sleep(0.2)
    harness.wait_until(lambda: get(nginx).status == 500, 4, "the expiry")
    log = nginx.error_log()
    assert "STS answered 403 AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity" in log
    assert re.search(r"the credentials from web-identity \(.*\) expired at", log), log
    harness.check_role_signed(recorder, sts)


def test_throttling_backs_off_more_than_other_errors(make_nginx, recorder, obj, mocks, ca, sts_cert,
                                                     tmp_path):
    """Two nginx, one throttled by STS, one denied: over the same 9 s the
    throttled one asks less often (it waits as after two more failures)."""
    path, value = token_file(tmp_path)
    throttled = mocks(StsMock, sts_cert, ttl=20, token_file=str(path))
    throttled.throttle = 1000
    denied = mocks(StsMock, sts_cert, ttl=20, token_file=str(path), role_arn=ROLE_ARN + "-other")
    throttled.secrets.append(value)
    a, b = make_nginx(), make_nginx()
    for ng, sts in ((a, throttled), (b, denied)):
        start(ng, f"aws_credentials web-identity role_arn={ROLE_ARN} token_file={path} "
                  f"{sts_params(sts, ca)};", recorder, workers=1)
    time.sleep(9)
    # throttled: at 0 s, 4-5 s (then 8-10 s later); denied: 0, 1, 3, 7 s
    assert 1 <= throttled.count() <= 2, throttled.count()
    assert denied.count() >= 4, denied.count()
    assert all("STS answered 400 Throttling: Rate exceeded" in l for l in fetch_lines(a, "web-identity"))
    assert get(a).status == 500 and recorder.requests == []


def test_reload_under_load_while_assumed_credentials_refresh(nginx, s3, obj, mocks, ca, sts_cert):
    """`nginx -s reload` every 2 s under wrk load, AssumeRole over IMDS
    refreshing meanwhile: no error, and one STS call per refresh for the
    whole nginx (a reload neither drops nor repeats fetches)."""
    imds = mocks(ImdsMock, ttl=12)
    sts = mocks(StsMock, sts_cert, ttl=12, base_keys={
        harness.ACCESS_KEY: BaseKey(harness.SECRET_KEY, token_valid=imds.token_valid_at)})
    nginx.log_level = "info"
    nginx.workers = 4
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        access_log off;
        aws_region {harness.REGION};
        aws_s3_bucket {BUCKET};
        aws_credentials imds endpoint={imds.url};
        aws_assume_role {ROLE_ARN} {sts_params(sts, ca)};
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port};
        }}
    }}""")
    nginx.start()
    harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
    total, reloads, out = harness.wrk_with_reloads(nginx, f"/{BUCKET}/{OBJ}", 20)
    assert total > 500, out
    # 12 s credentials over ~21 s: 2 or 3 sets each
    calls = [(c["status"], c["why"]) for c in sts.calls]
    assert 2 <= sts.count(ok=True) <= 3 and sts.count(ok=False) == 0, calls
    assert 2 <= imds.credential_fetches <= 3, imds.credential_fetches
