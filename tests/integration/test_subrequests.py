"""Every path through nginx that makes upstream requests other than the
plain one: slice subrequests with proxy_cache, proxy_cache's HEAD-to-GET
conversion, try_files and error_page internal redirects, auth_request
beside signing, mirror subrequests and upstream retries.  Each request
that reaches s3s-fs is checked: signed once, with botocore's signature
for the exact request line and Host that went out."""

from __future__ import annotations

import http.server
import os
import random

import pytest

import harness
from harness import BUCKET

MODES = ["aws_sign", "variables"]
MIB = 1024 * 1024
BIG = random.Random(10).randbytes(10 * MIB)


@pytest.fixture(scope="module")
def objects(s3):
    s3.put("sub/big10.bin", BIG)
    for name in ("a+b", "fallback.txt", "cached.txt", "cached2.txt", "mirror.txt", "retry.txt"):
        s3.put(f"sub/{name}", f"object {name}\n".encode())


def server(ng: harness.Nginx, signing: harness.SigningConfig, body: str) -> str:
    return f"""
    log_format up '$uri $upstream_status';
    proxy_cache_path {ng.prefix}/cache levels=1:2 keys_zone=s3cache:1m max_size=64m;
    server {{
        listen 127.0.0.1:{ng.port};
{signing.directives(indent="        ")}
        aws_s3_addressing path;
{body}
    }}"""


def checked(recorder: harness.RecordingProxy, upstream_port: int) -> list[harness.RecordedRequest]:
    reqs = recorder.requests
    for rec in reqs:
        harness.check_signed_request(rec, expect_host=f"127.0.0.1:{upstream_port}")
    return reqs


@pytest.mark.parametrize("mode", MODES)
def test_slice_and_proxy_cache_10mib_in_1mib_slices(nginx, recorder, signing, objects, mode):
    up = recorder.port
    nginx.write_config(server(nginx, signing, f"""
        location /sliced/ {{
            slice 1m;
            proxy_cache s3cache;
            proxy_cache_key $uri$is_args$args$slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_set_header Range $slice_range;
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}"""))
    nginx.start()

    resp = nginx.request("GET", "/sliced/big10.bin")
    assert resp.status == 200, resp
    assert resp.body == BIG
    reqs = checked(recorder, up)
    ranges = sorted(r.header("range") for r in reqs)
    assert ranges == sorted(f"bytes={i * MIB}-{(i + 1) * MIB - 1}" for i in range(10)), ranges
    assert all(r.method == "GET" and r.path == f"/{BUCKET}/sub/big10.bin".encode() for r in reqs)

    # Everything is cached now: neither a GET, a client Range nor a HEAD
    # goes upstream again.
    recorder.clear()
    resp = nginx.request("GET", "/sliced/big10.bin", [("Range", "bytes=3145720-3145740")])
    assert resp.status == 206, resp
    assert resp.body == BIG[3145720:3145741]
    resp = nginx.request("HEAD", "/sliced/big10.bin")
    assert resp.status == 200, resp
    assert resp.header("content-length") == str(len(BIG))
    assert nginx.request("GET", "/sliced/big10.bin").body == BIG
    assert recorder.requests == []


@pytest.mark.parametrize("mode", MODES)
def test_proxy_cache_head_is_sent_and_signed_as_get(nginx, recorder, signing, objects, mode):
    """proxy_cache_convert_head on (the default) turns a client HEAD into
    an upstream GET: the GET is what gets signed. With it off, HEAD goes
    out, signed as HEAD."""
    up = recorder.port
    nginx.write_config(server(nginx, signing, f"""
        location /cached/ {{
            proxy_cache s3cache;
            proxy_cache_valid 200 1h;
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}
        location /cached-head/ {{
            proxy_cache s3cache;
            proxy_cache_convert_head off;
            proxy_cache_key $request_method$proxy_host$request_uri;
            proxy_cache_valid 200 1h;
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}"""))
    nginx.start()
    body = b"object cached.txt\n"

    resp = nginx.request("HEAD", "/cached/cached.txt")
    assert resp.status == 200 and resp.header("content-length") == str(len(body)), resp
    [rec] = checked(recorder, up)
    assert rec.method == "GET"
    recorder.clear()
    resp = nginx.request("GET", "/cached/cached.txt")
    assert resp.status == 200 and resp.body == body, resp
    assert recorder.requests == [], "the GET should come from the cache"
    resp = nginx.request("HEAD", "/cached/cached.txt")
    assert resp.status == 200 and resp.header("content-length") == str(len(body)), resp
    assert recorder.requests == []

    resp = nginx.request("HEAD", "/cached-head/cached2.txt")
    assert resp.status == 200, resp
    [rec] = checked(recorder, up)
    assert rec.method == "HEAD"


@pytest.mark.parametrize("mode", MODES)
def test_try_files_and_error_page_redirects(nginx, recorder, signing, objects, mode):
    up = recorder.port
    html = f"{nginx.prefix}/html"
    os.makedirs(f"{html}/tf", exist_ok=True)
    with open(f"{html}/tf/local.txt", "w") as f:
        f.write("local\n")
    nginx.write_config(server(nginx, signing, f"""
        location /tf/ {{
            root {html};
            try_files $uri @s3;
        }}
        location @s3 {{
            {harness.sign_lines(mode)}
            rewrite ^/tf/(.*)$ /{BUCKET}/sub/$1 break;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /ep/ {{
            {harness.sign_lines(mode)}
            proxy_intercept_errors on;
            error_page 404 = /fallback/fallback.txt;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}
        location /fallback/ {{
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}"""))
    nginx.start()

    resp = nginx.request("GET", "/tf/local.txt")
    assert resp.status == 200 and resp.body == b"local\n", resp
    assert recorder.requests == []

    resp = nginx.request("GET", "/tf/a%2Bb")
    assert resp.status == 200 and resp.body == b"object a+b\n", resp
    [rec] = checked(recorder, up)
    assert rec.path == f"/{BUCKET}/sub/a%2Bb".encode()

    recorder.clear()
    resp = nginx.request("GET", "/ep/no-such-key")
    assert resp.status == 200 and resp.body == b"object fallback.txt\n", resp
    first, second = checked(recorder, up)
    assert first.path == f"/{BUCKET}/sub/no-such-key".encode()
    assert second.path == f"/{BUCKET}/sub/fallback.txt".encode()
    assert first.header("authorization") != second.header("authorization")


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).seen.append(dict(self.headers))
        ok = self.headers.get("X-Token") == "let-me-in"
        self.send_response(204 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def auth_server():
    _AuthHandler.seen = []
    with harness.serve_http(_AuthHandler) as srv:
        yield srv


@pytest.mark.parametrize("where", ["location", "server"])
def test_auth_request_beside_signing(nginx, recorder, signing, objects, auth_server, where):
    """auth_request decides; only the S3 request is signed. With aws_sign
    at server level the auth location says aws_sign off. A refused client
    gets 401 and nothing reaches S3; the auth service never sees AWS
    headers."""
    up = recorder.port
    auth_port = auth_server.server_address[1]
    server_sign = "aws_sign;" if where == "server" else ""
    loc_sign = "" if where == "server" else "aws_sign;"
    nginx.write_config(server(nginx, signing, f"""
        {server_sign}
        location /ar/ {{
            auth_request /auth;
            {loc_sign}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}
        location = /auth {{
            internal;
            aws_sign off;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_pass http://127.0.0.1:{auth_port}/check;
        }}"""))
    nginx.start()

    resp = nginx.request("GET", "/ar/a%2Bb")
    assert resp.status == 401, resp
    assert recorder.requests == []

    resp = nginx.request("GET", "/ar/a%2Bb", [("X-Token", "let-me-in")])
    assert resp.status == 200 and resp.body == b"object a+b\n", resp
    [rec] = checked(recorder, up)
    assert rec.path == f"/{BUCKET}/sub/a%2Bb".encode()
    for headers in _AuthHandler.seen:
        names = {k.lower() for k in headers}
        assert not any(n.startswith("x-amz-") for n in names), headers
        assert "authorization" not in names, headers


def test_mirror_subrequest_is_signed_too(nginx, recorder, signing, objects):
    up = recorder.port
    nginx.write_config(server(nginx, signing, f"""
        location /mi/ {{
            mirror /mirror;
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/;
        }}
        location = /mirror {{
            internal;
            log_subrequest on;
            access_log {nginx.prefix}/logs/mirror.log up;
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/sub/mirror.txt;
        }}"""))
    nginx.start()
    resp = nginx.request("GET", "/mi/a%2Bb")
    assert resp.status == 200 and resp.body == b"object a+b\n", resp
    harness.wait_until(lambda: len(recorder.requests) == 2, what="the mirror request")
    reqs = checked(recorder, up)
    assert sorted(r.path for r in reqs) == sorted(
        [f"/{BUCKET}/sub/a%2Bb".encode(), f"/{BUCKET}/sub/mirror.txt".encode()]
    )
    harness.wait_until(lambda: "/mirror 200" in open(f"{nginx.prefix}/logs/mirror.log").read(),
                       what="s3s-fs's 200 for the mirror request")


@pytest.mark.parametrize("mode", MODES)
def test_retry_on_next_upstream_sends_the_signed_head_once(nginx, recorder, signing, objects,
                                                            free_port, mode):
    """The first server refuses the connection; nginx retries on the next
    one with the same request buffer, which must still carry one signature."""
    up = recorder.port
    dead = free_port()
    nginx.write_config(server(nginx, signing, f"""
        location /retry/ {{
            {harness.sign_lines(mode)}
            proxy_set_header Host 127.0.0.1:{up};
            proxy_pass http://s3pool/{BUCKET}/sub/;
        }}""") + f"""
    upstream s3pool {{
        server 127.0.0.1:{dead};
        server 127.0.0.1:{up} backup;
    }}""")
    nginx.start()
    for _ in range(3):
        resp = nginx.request("GET", "/retry/retry.txt")
        assert resp.status == 200 and resp.body == b"object retry.txt\n", resp
    reqs = checked(recorder, up)
    assert len(reqs) == 3
    assert "connect() failed" in nginx.error_log()
