"""Signing allocates nothing (issue 15): the module built with the cargo
feature `count-allocations` counts every heap allocation of its Rust code
(`$aws_heap_allocations`, per worker). After a warm-up, thousands of
signed requests in each mode must leave the count where it was.

scripts/test builds that module apart (target/count-allocations) and
passes it in NGX_COUNTING_MODULE."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[2]
COUNTING = os.environ.get(
    "NGX_COUNTING_MODULE",
    str(ROOT / "target" / "count-allocations" / "release" / "libngx_http_aws_auth_module.so"),
)
BODY = os.urandom(1024)
TARGET = "/photos/2026/11/cat%20%281%29.jpg?response-cache-control=no-cache&x-id=GetObject"


@pytest.fixture
def counting_nginx(nginx_bin, tmp_path):
    if not os.path.exists(COUNTING):
        pytest.fail(f"the counting module is not built ({COUNTING}): scripts/test builds it "
                    "(cargo build --release --features count-allocations)", pytrace=False)
    ng = harness.Nginx(nginx_bin, COUNTING, str(tmp_path / "nginx"))
    yield ng
    ng.stop()
    assert ng.crash_lines() == []


def test_signing_allocates_nothing(counting_nginx, tmp_path):
    ng = counting_nginx
    html = tmp_path / "html" / "photos" / "2026" / "11"
    html.mkdir(parents=True)
    (html / "cat (1).jpg").write_bytes(BODY)
    secret = tmp_path / "secret"
    secret.write_text(harness.SECRET_KEY + "\n")
    secret.chmod(0o600)
    cfg = harness.SigningConfig()
    up = ng.port
    ports = {m: harness.free_port() for m in ("aws_sign", "variables", "token", "listed")}
    static = (f"aws_access_key {cfg.access_key}; aws_key_scope {cfg.scope}; "
              f"aws_signing_key {cfg.signing_key_b64};")
    query = "aws_forward_query_params response-cache-control x-id;"
    ng.log_level = "info"
    ng.write_config(f"""
    upstream up {{ server 127.0.0.1:{up}; keepalive 8; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    log_format signed "$http_authorization";
    server {{
        listen 127.0.0.1:{up};
        root {tmp_path}/html;
        access_log {tmp_path}/up.log signed;
        location = /allocations {{ return 200 "$aws_heap_allocations"; }}
        location = /presigned {{
            {static} aws_s3_bucket photos;
            return 200 "$aws_presigned_url";
        }}
    }}
    server {{
        listen 127.0.0.1:{ports['aws_sign']};
        {static} {query}
        location / {{ aws_sign; proxy_pass http://up; }}
    }}
    server {{
        listen 127.0.0.1:{ports['variables']};
        {static} {query}
        location / {{ {harness.SIGN_VARIABLES} proxy_pass http://up; }}
    }}
    server {{
        listen 127.0.0.1:{ports['token']};
        aws_access_key {cfg.access_key}; aws_secret_key_file {secret};
        aws_region {cfg.region}; aws_session_token {harness.SESSION_TOKEN}; {query}
        location / {{ aws_sign; proxy_pass http://up; }}
    }}
    server {{
        listen 127.0.0.1:{ports['listed']};
        {static} aws_forward_query_params all; aws_forward_amz_headers x-amz-meta-a x-amz-request-payer;
        location / {{ aws_sign; proxy_pass http://up; }}
    }}
""")
    ng.start()
    harness.wait_for_port(up)

    def count() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", up, timeout=10)
        conn.request("GET", "/allocations")
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        assert resp.status == 200 and text.isdigit(), text
        return int(text)

    headers = {
        "listed": {"X-Amz-Meta-A": "a  b", "x-amz-request-payer": "requester",
                   "x-amz-date": "1999", "Authorization": "client"},
    }

    def run(mode: str, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[mode], timeout=10)
        for i in range(n):
            method = "HEAD" if i % 5 == 4 else "GET"
            conn.request(method, TARGET, headers=headers.get(mode, {}))
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (mode, resp.status, body[:300])
            assert method == "HEAD" or body == BODY
        conn.close()

    n = {"aws_sign": 10_000, "variables": 3_000, "token": 3_000, "listed": 2_000}
    for mode in n:
        run(mode, 300)  # the worker's buffers grow to their size
    before = count()
    for mode, requests in n.items():
        run(mode, requests)
        assert count() == before, f"{mode}: {count() - before} allocations over {requests} signed requests"
    # every request went out signed, the token mode's with its token
    lines = (tmp_path / "up.log").read_text().splitlines()
    signed = [l for l in lines if "AWS4-HMAC-SHA256 Credential=" in l]
    assert len(signed) == sum(n.values()) + 4 * 300, (len(signed), lines[-3:])
    assert sum("x-amz-security-token" in l for l in signed) == n["token"] + 300
    assert sum("x-amz-meta-a;x-amz-request-payer" in l for l in signed) == n["listed"] + 300
    # and the counter counts: a presigned URL is a string of its own
    conn = http.client.HTTPConnection("127.0.0.1", up, timeout=10)
    conn.request("GET", "/presigned")
    resp = conn.getresponse()
    assert resp.status == 200 and b"X-Amz-Signature=" in resp.read()
    conn.close()
    assert count() > before
    log = ng.error_log()
    assert "[error]" not in log and "[alert]" not in log, log[-2000:]
