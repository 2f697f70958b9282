"""Role credentials from the machine (`aws_credentials`): EC2 instance
metadata (IMDSv2, IMDSv1 only when allowed), the ECS container endpoint
and EKS Pod Identity, against strict loopback mocks (metadata_mock.py)
that hand out the test S3 server's key with a fresh session token and a
short expiration, so that refreshes happen during the tests.

nginx runs with 4 workers. Every request that reaches s3s-fs is checked
with botocore, and its session token must be one the mock issued, not
expired when the request was made. The mocks' tokens join the secrets no
log may hold."""

from __future__ import annotations

import statistics
import time

import pytest

import harness
from harness import BUCKET
from metadata_mock import ContainerMock, ImdsMock

OBJ = "role/ok.txt"
BODY = b"read with a role\n"


@pytest.fixture(scope="module")
def obj(s3):
    s3.put(OBJ, BODY)


def register(request, mock):
    request.node.__dict__.setdefault("aws_mocks", []).append(mock)
    return mock


@pytest.fixture
def imds(request):
    mock = register(request, ImdsMock(ttl=12))
    yield mock
    mock.close()


def config(ng, recorder, source: str, workers: int = 4, extra: str = "") -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};
        aws_credentials {source};
        aws_region {harness.REGION};
        aws_s3_bucket {BUCKET};
        {extra}
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        location = /state {{
            return 200 "$aws_credentials_source $aws_credentials_expires_in\\n";
        }}
    }}"""


def start(ng, text: str, workers: int = 4, env: dict | None = None):
    ng.workers = workers
    ng.write_config(text)
    ng.start(env=env)


def get(ng) -> harness.Response:
    return ng.request("GET", f"/{BUCKET}/{OBJ}")


def test_imds_refreshes_once_for_all_workers(nginx, recorder, obj, imds):
    """GETs over two refreshes of 12 s credentials: all 200, signed with the
    current token; one fetch (token PUT + role + credentials) per refresh
    for the whole nginx, not one per worker."""
    start(nginx, config(nginx, recorder, f"imds endpoint={imds.url}"))
    t0 = time.time()
    statuses = []
    while time.time() - t0 < 22:
        statuses.append(get(nginx).status)
        time.sleep(0.1)
    assert set(statuses) == {200}, statuses
    tokens = harness.check_role_signed(recorder, imds)
    fetches = imds.credential_fetches
    # fetched at start, refreshed every 7.6-9.3 s (the wire's Expiration has
    # whole seconds): 3 (or 4) sets in 22 s
    assert 3 <= fetches <= 4, fetches
    assert len(tokens) >= 2, tokens
    # each refresh asked for a session token first, and the role once
    assert imds.count("PUT", "/latest/api/token") == fetches
    assert imds.count("GET", "/latest/meta-data/iam/security-credentials/") == 2 * fetches
    state = nginx.request("GET", "/state").body.decode().split()
    assert state[0] == "imds" and 0 < int(state[1]) <= 12, state
    log = nginx.error_log()
    assert log.count("aws_auth: credentials from imds") == fetches, log
    assert "refreshed: access key " + harness.ACCESS_KEY in log


def test_imdsv1_only_when_configured(make_nginx, recorder, obj, request):
    """A service that refuses the IMDSv2 token PUT: without imdsv1=on the
    module does not fall back (500, one clear line); with it, it signs."""
    v1 = register(request, ImdsMock(ttl=20, v1_only=True))
    try:
        strict = make_nginx()
        start(strict, config(strict, recorder, f"imds endpoint={v1.url}"), workers=1)
        resp = get(strict)
        assert resp.status == 500, resp
        harness.wait_until(lambda: "IMDSv2 session token request answered 403" in strict.error_log(), 5,
                           "the refusal line")
        assert recorder.requests == []
        loose = make_nginx()
        start(loose, config(loose, recorder, f"imds endpoint={v1.url} imdsv1=on"), workers=1)
        harness.wait_until(lambda: get(loose).status == 200, 5, "a signed request")
        harness.check_role_signed(recorder, v1)
    finally:
        v1.close()


def test_imdsv2_token_is_required_by_the_mock(imds):
    """The mock is as strict as IMDSv2: no token, no credentials."""
    resp = harness.http_request(imds.port, "GET", "/latest/meta-data/iam/security-credentials/",
                                host="169.254.169.254")
    assert resp.status == 401


def test_service_down_keeps_the_last_good_then_fails_closed_then_recovers(nginx, recorder, obj, request):
    """The metadata service goes away: the last credentials keep signing
    until their expiration, then 500 with one line naming the source; back,
    the next attempt brings credentials and 200s without a reload."""
    mock = register(request, ImdsMock(ttl=9))
    try:
        start(nginx, config(nginx, recorder, f"imds endpoint={mock.url}"), workers=2)
        assert get(nginx).status == 200
        # the Expiration on the wire has whole seconds
        first = int(mock.issued[-1][1])
        mock.down = True
        while time.time() < first - 1:
            assert get(nginx).status == 200
            time.sleep(0.2)
        time.sleep(1.5)
        resp = get(nginx)
        assert resp.status == 500, resp
        log = nginx.error_log()
        assert "the credentials from imds (" in log and "expired at" in log, log
        assert "not refreshed" in log
        mock.down = False
        harness.wait_until(lambda: get(nginx).status == 200, 25, "credentials again")
        harness.check_role_signed(recorder, mock)
    finally:
        mock.close()


def test_hanging_service_does_not_delay_requests(nginx, recorder, obj, request):
    """The service answers nothing for 30 s: requests signed with valid
    cached credentials keep their latency while refreshes time out."""
    mock = register(request, ImdsMock(ttl=12))
    try:
        start(nginx, config(nginx, recorder, f"imds endpoint={mock.url}"), workers=2)
        assert get(nginx).status == 200
        expires = mock.issued[-1][1]

        def latencies(until: float) -> list[float]:
            out = []
            while time.time() < until:
                t = time.monotonic()
                assert get(nginx).status == 200
                out.append(time.monotonic() - t)
                time.sleep(0.02)
            return out

        before = latencies(time.time() + 3)
        mock.hang = 30
        during = latencies(expires - 1)  # refreshes start at ~8 s and time out
        assert mock.count("PUT", "/latest/api/token") >= 2  # at least one refresh attempt hung
        p99 = lambda xs: statistics.quantiles(xs, n=100)[98]
        assert p99(during) < max(0.1, 5 * p99(before)), (p99(before), p99(during))
        assert "no answer from 127.0.0.1" in nginx.error_log()
    finally:
        mock.close()


def test_reload_under_load_keeps_credentials(nginx, s3, obj, imds):
    """`nginx -s reload` every 2 s under wrk load while refreshes happen: no
    error, and the new workers sign with the zone's credentials at once (no
    burst of fetches at each reload; a refresh in flight when its worker is
    told to exit is finished, not dropped)."""
    nginx.log_level = "info"  # a debug log of 30 s of load would be huge
    start(nginx, f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        access_log off;
        aws_credentials imds endpoint={imds.url};
        aws_region {harness.REGION};
        aws_s3_bucket {BUCKET};
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port};
        }}
    }}""")
    assert get(nginx).status == 200
    total, reloads, out = harness.wrk_with_reloads(nginx, f"/{BUCKET}/{OBJ}", 20)
    assert total > 1000, out
    # 12 s credentials over ~21 s: about 3 sets, not one per reload or worker
    assert 2 <= imds.credential_fetches <= 4, (imds.credential_fetches, reloads)


@pytest.mark.parametrize("answer, line", [
    ((200, b"<html>maintenance</html>"), "not the credentials JSON"),
    ((200, b'{"Code":"AssumeRoleUnauthorizedAccess","Message":"the role cannot be assumed"}'),
     'Code "AssumeRoleUnauthorizedAccess"'),
    ((200, b'{"Code":"Success","AccessKeyId":"ASIAX","SecretAccessKey":"s","Token":"t",'
           b'"Expiration":"2020-01-01T00:00:00Z"}'), "expired"),
    ((500, b"Internal Server Error"), "answered 500"),
], ids=["not-json", "code", "expired", "500"])
def test_error_answers_fail_closed(nginx, recorder, obj, request, answer, line):
    mock = register(request, ImdsMock(ttl=20))
    mock.answer = answer
    try:
        start(nginx, config(nginx, recorder, f"imds endpoint={mock.url}"), workers=1)
        harness.wait_until(lambda: "not refreshed" in nginx.error_log(), 5, "the refresh error")
        resp = get(nginx)
        assert resp.status == 500, resp
        assert recorder.requests == []
        log = nginx.error_log()
        fetch_lines = [l for l in log.splitlines() if "aws_auth: credentials from imds" in l]
        assert fetch_lines and all(line in l for l in fetch_lines), fetch_lines
        served = [l for l in log.splitlines() if "no credentials from imds" in l]
        assert len(served) == 1, served
    finally:
        mock.close()


def test_ecs_task_role_from_the_environment(nginx, recorder, obj, request):
    """`aws_credentials ecs;` with nothing but the environment ECS sets
    (here a full URI on loopback and an authorization token), read when
    the configuration loads."""
    mock = register(request, ContainerMock(ttl=20, token="ecs-task-secret-token"))
    try:
        env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": mock.url + ContainerMock.PATH,
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ecs-task-secret-token"}
        start(nginx, config(nginx, recorder, "ecs"), workers=2, env=env)
        harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
        harness.check_role_signed(recorder, mock)
        assert mock.count("GET", ContainerMock.PATH) == 1
        assert "ecs-task-secret-token" not in nginx.error_log()
    finally:
        mock.close()


def test_eks_pod_identity_rereads_the_rotating_token_file(nginx, recorder, obj, request, tmp_path):
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text("projected-token-1\n")
    mock = register(request, ContainerMock(ttl=8, token_file=str(token_file)))
    try:
        start(nginx, config(nginx, recorder,
                            f"eks-pod-identity uri={mock.url}{ContainerMock.PATH} token_file={token_file}"),
              workers=2)
        harness.wait_until(lambda: get(nginx).status == 200, 5, "a signed request")
        token_file.write_text("projected-token-2\n")  # kubelet rotates it
        first = mock.credential_fetches
        harness.wait_until(lambda: mock.credential_fetches > first, 15, "a refresh with the new token")
        assert get(nginx).status == 200
        harness.check_role_signed(recorder, mock)
        state = nginx.request("GET", "/state").body.decode().split()
        assert state[0] == "eks-pod-identity", state
    finally:
        mock.close()
