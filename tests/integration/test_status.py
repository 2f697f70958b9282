"""`aws_auth_status`: counters shared by all workers, in the Prometheus text
format, checked against the requests made.

A known mix goes through two workers (one connection per request, so both
serve): signed with `aws_sign`, through the variables, presigned; refused
for each reason a client can cause; answered by S3 with 200, 403
(a wrong key: SignatureDoesNotMatch) and 404, or not at all (a closed
port). The scrape must hold exactly those counts; after a reload the
counts go on from where they were.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

import harness
from harness import BUCKET

OBJ = "status/object.txt"
BODY = b"counted\n"

# one sample line: name{label="value"} integer
SAMPLE = re.compile(r'^([a-z_]+)\{([a-z_]+)="((?:[^"\\\n]|\\.)*)"\} (-?\d+)$')


def scrape(ng) -> dict[tuple[str, str], int]:
    """The counters, parsed strictly: every line is a HELP, a TYPE or a
    sample; every sample's family was declared first, once."""
    resp = ng.request("GET", "/metrics")
    assert resp.status == 200, resp
    assert resp.header("Content-Type", "").startswith("text/plain; version=0.0.4"), resp
    text = resp.body.decode()
    assert text.endswith("\n")
    declared: dict[str, str] = {}
    out: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in declared, line
            declared[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, line
        name, _label, value, n = m.groups()
        assert name in declared, line
        assert (name, value) not in out, line
        out[(name, value)] = int(n)
    return out


def signed(c, mode):
    return c[("aws_auth_signed_requests_total", mode)]


def refused(c, reason):
    return c[("aws_auth_refused_requests_total", reason)]


def upstream(c, status):
    return c[("aws_auth_upstream_responses_total", status)]


def reload(ng) -> None:
    """SIGHUP, then wait until only the new workers are left."""
    old = set(harness.worker_pids(ng))
    os.kill(ng.proc.pid, signal.SIGHUP)
    harness.wait_until(lambda: (pids := set(harness.worker_pids(ng))) and not pids & old
                       and len(pids) == 2, 15, "the new workers")


@pytest.fixture
def obj(s3):
    s3.put(OBJ, BODY)


def config(ng, s3, signing, closed_port: int, silent_port: int) -> str:
    wrong = harness.SigningConfig(secret_key="not-the-secret-key-at-all")
    return f"""
    log_format counted "$pid $status $request_uri";
    server {{
        # reuseport: each worker has its own socket, connections are spread
        listen 127.0.0.1:{ng.port} reuseport;
        access_log {ng.prefix}/logs/counted.log counted;
{signing.directives("        ")}
        aws_s3_addressing path;
        aws_payload_max_size 16;
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port};
        }}
        location /vars/ {{
            proxy_set_header Authorization $s3_auth_token;
            proxy_set_header x-amz-date $aws_date;
            proxy_set_header x-amz-content-sha256 $aws_content_sha256;
            proxy_pass http://127.0.0.1:{s3.port}/;
        }}
        location /presign/ {{
            return 302 $aws_presigned_url;
        }}
        location /inj/ {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port}$uri;
        }}
        location /silent/ {{
            aws_sign;
            proxy_read_timeout 1s;
            proxy_pass http://127.0.0.1:{silent_port}/;
        }}
        location /wrong/ {{
{wrong.directives("            ")}
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port}/;
        }}
        location /put/ {{
            aws_sign;
            aws_sign_methods PUT;
            aws_payload signed;
            proxy_pass http://127.0.0.1:{s3.port}/;
        }}
        location /closed/ {{
            aws_sign;
            proxy_connect_timeout 2s;
            proxy_pass http://127.0.0.1:{closed_port}/;
        }}
        location = /metrics {{
            aws_auth_status;
        }}
    }}"""


def make_mix(ng, rounds: int) -> dict[str, int]:
    """Each round: 3 aws_sign GETs (200), 2 variables GETs (200), 1 GET of
    a missing key (404), 1 with the wrong key (403), 1 to a server that
    never answers (504: signed, no answer), 1 to a closed port (502: no
    connection, so nothing signed), 2 presigned URLs; refused: a DELETE
    (method), another bucket (bucket), a body over the limit
    (body_too_large), a head line decoded from the URI (injected)."""
    for _ in range(rounds):
        for _ in range(3):
            r = ng.request("GET", f"/{BUCKET}/{OBJ}")
            assert r.status == 200 and r.body == BODY, r
        for _ in range(2):
            r = ng.request("GET", f"/vars/{BUCKET}/{OBJ}")
            assert r.status == 200 and r.body == BODY, r
        assert ng.request("GET", f"/{BUCKET}/status/missing").status == 404
        assert ng.request("GET", f"/wrong/{BUCKET}/{OBJ}").status == 403
        assert ng.request("GET", f"/silent/{BUCKET}/{OBJ}").status == 504
        assert ng.request("GET", f"/closed/{BUCKET}/{OBJ}").status == 502
        for _ in range(2):
            r = ng.request("GET", f"/presign/{OBJ}")
            assert r.status == 302 and "X-Amz-Signature=" in r.header("Location", ""), r
        assert ng.request("DELETE", f"/{BUCKET}/{OBJ}").status == 405
        assert ng.request("GET", f"/otherbucket/{OBJ}").status == 403
        r = ng.request("PUT", f"/put/{BUCKET}/status/big", body=b"x" * 64)
        assert r.status == 413, r
        r = ng.request("GET", f"/inj/{BUCKET}/a%0D%0Ax-amz-acl:%20public-read")
        assert r.status == 400, r
    per_round = {
        "header": 3 + 1 + 1 + 1, "variables": 2, "presigned": 2,
        "2xx": 5, "403": 1, "4xx": 1, "none": 1,
        "method": 1, "bucket": 1, "body_too_large": 1, "injected": 1,
    }
    return {k: v * rounds for k, v in per_round.items()}


def test_counters_match_the_requests_across_workers_and_a_reload(nginx, s3, signing, obj):
    nginx.workers = 2
    closed = harness.free_port()
    with harness.silent_server() as (silent, _conns):
        nginx.write_config(config(nginx, s3, signing, closed, silent))
        nginx.start()
        before = scrape(nginx)
        assert before and all(v == 0 for v in before.values()), before
        want = make_mix(nginx, 3)
        got = scrape(nginx)
        check(got, want)
        reload(nginx)
        assert scrape(nginx) == got, "a reload keeps the counts"
        more = make_mix(nginx, 2)
        check(scrape(nginx), {k: want[k] + more[k] for k in want})
    # the counts are the sum over workers: signed requests were served by
    # both workers of each generation
    with open(f"{nginx.prefix}/logs/counted.log") as f:
        served = [l.split(" ", 2) for l in f.read().splitlines()]
    signers = {pid for pid, status, uri in served if status == "200" and uri.startswith(f"/{BUCKET}/")}
    assert len(signers) >= 3, served
    # nothing of a request or a credential is in the page
    text = nginx.request("GET", "/metrics").body.decode()
    for name, form in harness.known_secrets().items():
        assert form not in text, name
    assert signing.access_key not in text
    assert OBJ not in text and BUCKET not in text and "otherbucket" not in text
    log = nginx.error_log()
    assert "[alert]" not in log and "exited on signal" not in log


def check(c: dict, want: dict) -> None:
    assert signed(c, "header") == want["header"], c
    assert signed(c, "variables") == want["variables"], c
    assert signed(c, "presigned") == want["presigned"], c
    assert upstream(c, "2xx") == want["2xx"], c
    assert upstream(c, "403") == want["403"], c
    assert upstream(c, "4xx") == want["4xx"], c
    assert upstream(c, "none") == want["none"], c
    assert upstream(c, "3xx") == 0 and upstream(c, "5xx") == 0, c
    for reason in ("method", "bucket", "body_too_large", "injected"):
        assert refused(c, reason) == want[reason], (reason, c)
    for reason in ("head", "no_credentials", "body", "unsignable_upstream", "presign", "listing"):
        assert refused(c, reason) == 0, (reason, c)
    assert c[("aws_auth_credential_refreshes_total", "ok")] == 0
    assert c[("aws_auth_credential_refreshes_total", "failed")] == 0


def test_status_location_answers_get_and_head_only(nginx, s3, signing):
    """GET and HEAD only; the type is sent whole and matched as text/plain
    (gzip_types); inside a page (an SSI include) the page goes on after it;
    a refusal is counted once per request, however often a variable that
    refuses is evaluated."""
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        gzip on;
        gzip_types text/plain;
        gzip_min_length 1;
        location = /metrics {{ aws_auth_status; }}
        location = /page {{
            ssi on;
            default_type text/html;
            return 200 'BEGIN <!--# include virtual="/metrics" --> END';
        }}
        location /twice/ {{
{signing.directives("            ", bucket=None)}
            return 200 "[$aws_presigned_url][$aws_presigned_url]";
        }}
    }}""")
    nginx.start()
    r = nginx.request("HEAD", "/metrics")
    assert r.status == 200 and r.body == b"", r
    assert int(r.header("Content-Length")) > 100
    assert r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8", r
    assert nginx.request("POST", "/metrics", body=b"x").status == 405
    r = nginx.request("GET", "/metrics", [("Accept-Encoding", "gzip")])
    assert r.header("Content-Encoding") == "gzip", r
    r = nginx.request("GET", "/page")
    assert r.status == 200 and r.body.startswith(b"BEGIN # HELP ") and r.body.endswith(b" END"), r
    # no aws_s3_bucket: no presigned URL, one refusal per request
    for _ in range(3):
        r = nginx.request("GET", "/twice/key")
        assert r.status == 200 and r.body == b"[][]", r
    c = scrape(nginx)
    assert refused(c, "presign") + refused(c, "no_credentials") + refused(c, "bucket") == 3, c
    assert signed(c, "header") == 0 and signed(c, "presigned") == 0


def signing_server(ng, s3, credentials: str) -> str:
    """One server: `credentials`, an aws_sign location to s3s-fs (path
    style) and the status location."""
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};{credentials}
        aws_s3_bucket {BUCKET};
        aws_s3_addressing path;
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port};
        }}
        location = /metrics {{ aws_auth_status; }}
    }}"""


def test_credential_refreshes_and_expiry_are_counted(nginx, s3, obj, request):
    """Role credentials: failed fetches and the one good fetch (one for the
    whole nginx, not one per worker) are counted; the gauge gives the
    seconds until the credentials expire; a request refused for want of
    credentials is counted as such."""
    from metadata_mock import ImdsMock

    mock = ImdsMock(ttl=60)
    # the teardown looks for the tokens it hands out in the error log
    request.node.__dict__.setdefault("aws_mocks", []).append(mock)
    mock.answer = (500, b"Internal Server Error")
    try:
        nginx.workers = 2
        nginx.write_config(signing_server(nginx, s3, f"""
        aws_credentials imds endpoint={mock.url};
        aws_region {harness.REGION};"""))
        nginx.start()
        failed = ("aws_auth_credential_refreshes_total", "failed")
        ok = ("aws_auth_credential_refreshes_total", "ok")
        harness.wait_until(lambda: scrape(nginx)[failed] >= 1, 10, "a failed refresh")
        c = scrape(nginx)
        assert c[ok] == 0, c
        assert not any(k[0] == "aws_auth_credentials_expire_in_seconds" for k in c), c
        harness.wait_until(lambda: nginx.request("GET", f"/{BUCKET}/{OBJ}").status == 500, 5,
                           "the first-fetch wait to end")
        assert refused(scrape(nginx), "no_credentials") >= 1
        mock.answer = None
        harness.wait_until(lambda: scrape(nginx)[ok] == 1, 30, "a good refresh")
        assert nginx.request("GET", f"/{BUCKET}/{OBJ}").status == 200
        c = scrape(nginx)
        assert c[ok] == 1 == mock.credential_fetches, (c, mock.credential_fetches)
        # failures: every failed attempt of the one worker holding the lease
        assert c[failed] >= 1
        gauges = {k[1]: v for k, v in c.items() if k[0] == "aws_auth_credentials_expire_in_seconds"}
        assert len(gauges) == 1, c
        (source, seconds), = gauges.items()
        assert source.startswith("imds") and 50 <= seconds <= 60, gauges
        assert signed(c, "header") == 1 and upstream(c, "2xx") == 1, c
        text = nginx.request("GET", "/metrics").body.decode()
        token, _ = mock.issued[-1]
        assert token not in text
    finally:
        mock.close()


def test_key_file_expiry_is_a_gauge(nginx, s3, obj, tmp_path):
    """The seconds until an aws_signing_key_file's last key ends: the
    midnight (UTC) after its last day; the path is the label."""
    import calendar
    import datetime as dt

    today = dt.datetime.now(dt.timezone.utc).date()
    days = [(today + dt.timedelta(days=i)).strftime("%Y%m%d") for i in range(3)]
    keys = tmp_path / "aws keys \"q\""
    keys.write_text("".join(
        f"{harness.SigningConfig(date=d).scope} {harness.SigningConfig(date=d).signing_key_b64}\n"
        for d in days))
    keys.chmod(0o600)
    nginx.write_config(signing_server(nginx, s3, f"""
        aws_access_key {harness.ACCESS_KEY};
        aws_signing_key_file '{keys}';"""))
    nginx.start()
    assert nginx.request("GET", f"/{BUCKET}/{OBJ}").status == 200
    c = scrape(nginx)
    end = calendar.timegm((today + dt.timedelta(days=3)).timetuple())
    gauges = {k[1]: v for k, v in c.items() if k[0] == "aws_auth_key_file_expire_in_seconds"}
    label = str(keys).replace("\\", "\\\\").replace('"', '\\"')
    assert list(gauges) == [label], gauges
    import time
    assert abs(gauges[label] - (end - time.time())) <= 3, gauges
    assert signed(c, "header") == 1
