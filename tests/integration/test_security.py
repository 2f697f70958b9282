"""What a hostile client can make nginx sign, and what one bad request does
to everyone else (issue "safe to put on the internet").

* a refused request gets its own status and never marks an upstream
  server failed: two-server upstreams, both modes;
* object reads only by default: client query parameters are dropped
  unless forwarded, the bucket itself is refused unless listing is on,
  client X-Amz-* parameters never go out;
* no head a client can write: a CR/LF decoded from the URI, through
  `$uri` in `proxy_pass` or in `proxy_set_header`, with and without
  aws_s3_bucket;
* the bucket check is exact: Host and path, several buckets, dot segments;
* never unsigned: aws_sign with Host, Content-Length and
  Transfer-Encoding all overridden, aws_sign in front of a FastCGI server;
* a location that does not sign is not touched: a chunked body streams.
"""

from __future__ import annotations

import http.server
import socket
import time

import pytest

import harness
from harness import BUCKET

OK_KEY = "sec/ok.txt"
OK_BODY = b"an object anyone may read\n"


@pytest.fixture(scope="module")
def objects(s3):
    s3.put(OK_KEY, OK_BODY)
    s3.put("sec/a+b.txt", b"plus\n")
    try:
        s3.client.create_bucket(Bucket="second")
    except Exception:  # already there from another test
        pass
    s3.put("k.txt", b"in the second bucket\n", bucket="second")


# --------------------------------------------------------------------------
# 1. Refusals never take the upstream down
# --------------------------------------------------------------------------

# (name, method, target, headers, body, expected status, modes)
REFUSALS = [
    ("method", "PUT", f"/{BUCKET}/sec/x", [], b"x", 405, ("aws_sign", "variables")),
    ("listing", "GET", f"/{BUCKET}/", [], None, 403, ("aws_sign", "variables")),
    ("listing-query", "GET", f"/{BUCKET}?list-type=2", [], None, 403, ("aws_sign", "variables")),
    ("other-bucket", "GET", "/other-bucket/k", [], None, 403, ("aws_sign", "variables")),
    ("climb", "GET", f"/{BUCKET}/../other-bucket/k", [], None, 403, ("aws_sign", "variables")),
    ("host-of-another-bucket", "GET", "/hosthdr/sec/ok.txt", [("Host", "other-bucket.s3.amazonaws.com")], None, 403,
     ("aws_sign", "variables")),
    ("injected-lines", "GET", "/inj/x%20HTTP/1.1%0d%0aHost:%20evil%0d%0a%0d%0a", [], None, 400,
     ("aws_sign", "variables")),
    ("raw-fragment", "GET", f"/{BUCKET}/sec/ok.txt#/../../other/k", [], None, 400, ("aws_sign", "variables")),
    ("other-body", "PUT", "/body/sec/y", [], b"y" * 100, 500, ("aws_sign", "variables")),
    ("streamed-chunked", "PUT", "/stream/sec/z", [("Transfer-Encoding", "chunked")], None, 500,
     ("variables",)),
]


@pytest.mark.parametrize("mode", ["aws_sign", "variables"])
def test_refusals_never_mark_the_upstream_down(nginx, recorder, recorder2, signing, objects, mode):
    """A two-server upstream (max_fails=1, as AWS names resolving to
    several addresses give): after each refused request, other clients'
    GETs are all 200, served by both servers; the refused request reached
    neither and got its own status."""
    # the path-style Host (an address: never a bucket's virtual host), in
    # every location (a location's proxy_set_header replaces the server's)
    sign = harness.sign_lines(mode) + "\n            proxy_set_header Host 127.0.0.1;"
    nginx.write_config(f"""
    upstream pair {{
        server 127.0.0.1:{recorder.port} max_fails=1 fail_timeout=60s;
        server 127.0.0.1:{recorder2.port} max_fails=1 fail_timeout=60s;
    }}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        location / {{
            {sign}
            proxy_pass http://pair;
        }}
        location /hosthdr/ {{
            {harness.sign_lines(mode)}
            proxy_set_header Host $http_host;
            proxy_pass http://pair/{BUCKET}/;
        }}
        location /inj/ {{
            {sign}
            proxy_pass http://pair$uri;
        }}
        location /body/ {{
            aws_payload signed;
            aws_sign_methods PUT;
            proxy_set_body "not the client's body";
            {sign}
            proxy_pass http://pair/{BUCKET}/;
        }}
        location /stream/ {{
            proxy_request_buffering off;
            proxy_http_version 1.1;
            {sign}
            proxy_pass http://pair/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    pids = harness.worker_pids(nginx)

    def others_all_fine():
        before = (len(recorder.requests), len(recorder2.requests))
        for _ in range(4):
            resp = nginx.request("GET", f"/{BUCKET}/{OK_KEY}")
            assert resp.status == 200 and resp.body == OK_BODY, resp
        # round robin over two live servers: each got two of the four
        assert (len(recorder.requests) - before[0], len(recorder2.requests) - before[1]) == (2, 2)

    others_all_fine()
    for name, method, target, headers, body, status, modes in REFUSALS:
        if mode not in modes:
            continue
        counts = (len(recorder.requests), len(recorder2.requests))
        if name == "streamed-chunked":
            with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
                sock.sendall(f"PUT {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                             "Connection: close\r\n\r\n3\r\nabc\r\n".encode())
                time.sleep(0.3)
                sock.sendall(b"0\r\n\r\n")
                answer = sock.recv(65536)
            got = int(answer.split(b" ", 2)[1])
        else:
            host = None if any(k.lower() == "host" for k, _ in headers) else f"127.0.0.1:{nginx.port}"
            got = nginx.request(method, target, headers, body=body, host=host).status
        assert got == status, (name, got)
        assert (len(recorder.requests), len(recorder2.requests)) == counts, f"{name} reached an upstream"
        others_all_fine()
        assert harness.worker_pids(nginx) == pids, f"worker restarted after {name}"
    for rec in recorder.requests + recorder2.requests:
        harness.check_signed_request(rec, expect_host="127.0.0.1")
    log = nginx.error_log()
    assert "upstream server temporarily disabled" not in log
    assert "no live upstreams" not in log


# --------------------------------------------------------------------------
# 2. Object reads only, unless the operator says more
# --------------------------------------------------------------------------


def query_server(ng, signing, port, extra="") -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        aws_endpoint 127.0.0.1:{port};
        {extra}
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{port};
        }}
        location /versions/ {{
            aws_sign;
            aws_forward_query_params versionId response-content-disposition;
            proxy_pass http://127.0.0.1:{port}/{BUCKET}/;
        }}
        location /api/ {{
            aws_sign;
            aws_forward_query_params all;
            aws_s3_listing on;
            proxy_pass http://127.0.0.1:{port}/;
        }}
        location /vars/ {{
            {harness.SIGN_VARIABLES}
            proxy_pass http://127.0.0.1:{port}/{BUCKET}/;
        }}
    }}"""


def test_client_query_is_dropped_by_default(nginx, recorder, signing, objects):
    """`location / { aws_sign; }` reads objects: a listing, an ACL, a
    policy, another version, an override of the response type are not the
    client's to ask for; a cache-buster still gets the object."""
    nginx.write_config(query_server(nginx, signing, recorder.port))
    nginx.start()
    for query in ["v=123", "acl", "versionId=abc", "response-content-type=text/html",
                  "tagging", "x-id=GetObject&partNumber=1", "X-Amz-Expires=1"]:
        recorder.clear()
        resp = nginx.request("GET", f"/{BUCKET}/{OK_KEY}?{query}")
        assert resp.status == 200 and resp.body == OK_BODY, (query, resp)
        assert (resp.header("content-type") or "") != "text/html"
        rec = recorder.last()
        assert rec.target == f"/{BUCKET}/{OK_KEY}".encode(), rec.target
        harness.check_signed_request(rec)
    # the same in variables mode
    recorder.clear()
    resp = nginx.request("GET", f"/vars/{OK_KEY}?response-content-type=text/html&acl")
    assert resp.status == 200 and resp.body == OK_BODY, resp
    assert recorder.last().target == f"/{BUCKET}/{OK_KEY}".encode()


def test_bucket_requests_are_refused_unless_listing(nginx, recorder, signing, objects):
    nginx.write_config(query_server(nginx, signing, recorder.port))
    nginx.start()
    for target in [f"/{BUCKET}", f"/{BUCKET}/", f"/{BUCKET}/?list-type=2", f"/{BUCKET}?policy",
                   f"/{BUCKET}?versions", f"/{BUCKET}/?acl", "/vars/", "/vars/?list-type=2"]:
        resp = nginx.request("GET", target)
        assert resp.status == 403, (target, resp)
    assert recorder.requests == []
    # where listing is on (and its parameters forwarded) it works
    resp = nginx.request("GET", f"/api/{BUCKET}?list-type=2&prefix=sec/")
    assert resp.status == 200 and b"<Key>sec/ok.txt</Key>" in resp.body, resp
    harness.check_signed_request(recorder.last())


def test_forwarded_parameters_and_never_x_amz(nginx, recorder, signing, objects):
    nginx.write_config(query_server(nginx, signing, recorder.port))
    nginx.start()
    resp = nginx.request(
        "GET", f"/versions/{OK_KEY}?response-content-disposition=attachment&response-content-type=text/html"
        "&acl&X-Amz-Credential=AKID%2F20200101%2Fus-east-1%2Fs3%2Faws4_request&x-amz-signature=00")
    assert resp.status == 200 and resp.body == OK_BODY, resp
    assert resp.header("content-disposition") == "attachment"
    rec = recorder.last()
    assert rec.target == f"/{BUCKET}/{OK_KEY}?response-content-disposition=attachment".encode()
    harness.check_signed_request(rec)
    # "all" forwards every parameter but the X-Amz-* ones
    resp = nginx.request("GET", f"/api/{BUCKET}/{OK_KEY}?response-content-type=text/x-test"
                         "&X-Amz-Date=20200101T000000Z&X-Amz-SignedHeaders=host")
    assert resp.status == 200 and resp.header("content-type") == "text/x-test", resp
    rec = recorder.last()
    assert rec.target == f"/{BUCKET}/{OK_KEY}?response-content-type=text%2Fx-test".encode()
    harness.check_signed_request(rec)


def test_bucket_level_writes_are_refused(nginx, recorder, signing, objects):
    """With writes and listing on, the bucket itself still only lists:
    DELETE /?publicAccessBlock, PUT /?policy and PUT / (CreateBucket) are
    refused; an object's ACL can't be set through a query that is not
    forwarded: the write is refused (400), not sent as an overwrite of the
    object with the ACL's XML."""
    nginx.write_config(query_server(nginx, signing, recorder.port,
                                    "aws_sign_methods GET HEAD PUT DELETE;"))
    nginx.start()
    for method, target in [("DELETE", f"/api/{BUCKET}?publicAccessBlock"), ("PUT", f"/api/{BUCKET}?policy"),
                           ("PUT", f"/api/{BUCKET}/"), ("DELETE", f"/{BUCKET}/?publicAccessBlock")]:
        resp = nginx.request(method, target, body=b"{}" if method == "PUT" else None)
        assert resp.status == 403, (method, target, resp)
    assert recorder.requests == []
    resp = nginx.request("PUT", f"/{BUCKET}/sec/acl-test?acl", body=b"<AccessControlPolicy/>")
    assert resp.status == 400, resp
    assert recorder.requests == []


# --------------------------------------------------------------------------
# 3. No head a client can write
# --------------------------------------------------------------------------

INJECTIONS = [
    # the client's Host, then nginx's real head as a second request
    "/x%20HTTP/1.1%0d%0aHost:%20other.localhost%0d%0a%0d%0a",
    # a header line only
    "/x%0d%0aX-Injected:%201",
    # a whole second request
    "/x%0d%0a%0d%0aGET%20/other%20HTTP/1.1%0d%0aHost:%20b%0d%0a%0d%0a",
    # a bare LF
    "/x%0aHost:%20evil.example",
    # framing: a request body the upstream would read from the next request
    "/x%0d%0aContent-Length:%2040",
]


@pytest.mark.parametrize("bucket", [True, False], ids=["bucket", "no_bucket"])
@pytest.mark.parametrize("where", ["proxy_pass", "proxy_set_header"])
@pytest.mark.parametrize("mode", ["aws_sign", "variables"])
def test_client_cannot_write_head_lines(nginx, recorder, signing, objects, bucket, where, mode):
    sign = harness.sign_lines(mode)
    if where == "proxy_pass":
        route = f"proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET}$uri;"
    else:
        route = f"proxy_set_header X-Orig $uri;\n            proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET}/;"
    # nginx's own debug lines print decoded values over several lines; the
    # levels an operator runs with must show every line as a line
    nginx.log_level = "info"
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ", bucket=BUCKET if bucket else None)}
        location / {{
            {sign}
            {route}
        }}
    }}""")
    nginx.start()
    resp = nginx.request("GET", "/" + OK_KEY)
    assert resp.status == 200 and resp.body == OK_BODY, resp
    recorder.clear()
    for target in INJECTIONS:
        resp = nginx.request("GET", target)
        assert resp.status == 400, (target, resp)
        assert recorder.requests == [], (target, recorder.requests[0].head_text())
        time.sleep(1.05)  # one log line per second and reason
    # one line each, the client's line breaks escaped: no forged line
    lines = [l for l in nginx.error_log().splitlines() if "aws_auth: refused" in l]
    assert len(lines) == len(INJECTIONS), lines
    log = nginx.error_log()
    for forged in ("Host: other.localhost", "X-Injected: 1", "Host: evil.example", "GET /other"):
        assert not any(l.startswith(forged) for l in log.splitlines()), forged


# --------------------------------------------------------------------------
# 4. The bucket check, exact
# --------------------------------------------------------------------------


def test_bucket_check_is_exact(nginx, recorder, signing, objects):
    vhost_evil = f"{BUCKET}.s3.amazonaws.com.evil.example"
    nginx.write_config(f"""
    upstream {vhost_evil} {{ server 127.0.0.1:{recorder.port}; }}
    upstream {BUCKET}.s3.amazonaws.com {{ server 127.0.0.1:{recorder.port}; }}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ", bucket=None)}
        aws_s3_bucket {BUCKET} second;
        location / {{
            aws_sign;
            aws_s3_addressing path;
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        location /hosthdr/ {{
            aws_sign;
            aws_s3_addressing path;
            proxy_set_header Host $http_host;
            proxy_pass http://127.0.0.1:{recorder.port}/;
        }}
        location /prefix-host/ {{
            aws_sign;
            aws_s3_addressing virtual;
            proxy_pass http://{vhost_evil}/;
        }}
        location /vhost/ {{
            aws_sign;
            aws_s3_addressing virtual;
            proxy_pass http://{BUCKET}.s3.amazonaws.com/;
        }}
    }}""")
    nginx.start()
    # several buckets: each of them, and nothing else
    assert nginx.request("GET", f"/{BUCKET}/{OK_KEY}").body == OK_BODY
    assert nginx.request("GET", "/second/k.txt").body == b"in the second bucket\n"
    assert nginx.request("GET", "/third/k.txt").status == 403
    assert nginx.request("GET", f"/{BUCKET}x/k.txt").status == 403
    # path style: the Host must not name another bucket (S3 and MinIO route by Host)
    resp = nginx.request("GET", f"/hosthdr/{BUCKET}/{OK_KEY}", host="other-bucket.s3.amazonaws.com")
    assert resp.status == 403, resp
    resp = nginx.request("GET", f"/hosthdr/{BUCKET}/{OK_KEY}", host=f"127.0.0.1:{recorder.port}")
    assert resp.status == 200, resp
    # virtual-host style: exactly bucket.endpoint, not a name that starts with it
    assert nginx.request("GET", f"/prefix-host/{OK_KEY}").status == 403
    assert nginx.request("GET", f"/vhost/{OK_KEY}").status == 200
    # dot segments a normalizing server would follow into another bucket
    recorder.clear()
    for target in [f"/{BUCKET}/../second/k.txt", f"/{BUCKET}/sec/../../second/k.txt",
                   f"/{BUCKET}/%2E%2E/second/k.txt", f"/{BUCKET}/..%2Fsecond/k.txt"]:
        assert nginx.request("GET", target).status == 403, target
    assert recorder.requests == []
    for rec in recorder.requests:
        harness.check_signed_request(rec)


def test_a_host_that_is_the_bucket_name_must_also_pass_as_path_style(nginx, recorder, signing, s3, objects):
    # `Host: bucket` is a CNAME bucket to AWS, but a server that routes by
    # path (s3s-fs here, MinIO without a domain, moto) reads the first path
    # segment as the bucket: without aws_s3_addressing, the request must
    # pass as path style too, or a client picks the bucket
    nginx.write_config(f"""
    upstream {BUCKET} {{ server 127.0.0.1:{recorder.port}; }}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ", bucket=None)}
        aws_s3_bucket {BUCKET};
        aws_sign_methods GET HEAD PUT DELETE;
        location / {{
            aws_sign;
            proxy_pass http://{BUCKET};
        }}
        location /cname/ {{
            aws_sign;
            aws_s3_addressing virtual;
            proxy_pass http://{BUCKET}/;
        }}
    }}""")
    nginx.start()
    # signed and sent as is (s3s-fs, run with a domain, reads such a Host
    # as AWS does: its answer does not matter here)
    nginx.request("GET", f"/{BUCKET}/{OK_KEY}")
    assert recorder.last().target == f"/{BUCKET}/{OK_KEY}".encode()
    assert recorder.last().header("host") == BUCKET
    harness.check_signed_request(recorder.last())
    recorder.clear()
    for method, target in [("GET", "/second/k.txt"), ("DELETE", "/second/k.txt"),
                           ("GET", f"/{BUCKET}/"), ("GET", f"/{BUCKET}"), ("DELETE", f"/{BUCKET}/"),
                           ("GET", "/second/"), ("GET", f"/{BUCKET}/sec/.."),
                           ("GET", f"/{BUCKET}/../second/k.txt"), ("GET", f"/{OK_KEY}")]:
        resp = nginx.request(method, target)
        assert resp.status == 403, (method, target, resp)
    assert recorder.requests == []
    # the other bucket's object is still there
    assert s3.client.get_object(Bucket="second", Key="k.txt")["Body"].read() == b"in the second bucket\n"
    # with aws_s3_addressing virtual the Host is the bucket, as AWS reads it
    resp = nginx.request("GET", f"/cname/{OK_KEY}")
    assert resp.status == 200 and resp.body == OK_BODY, resp
    assert recorder.last().target == f"/{OK_KEY}".encode()
    harness.check_signed_request(recorder.last())


# --------------------------------------------------------------------------
# 5. Presigned URLs and the token variable
# --------------------------------------------------------------------------


def test_presigned_url_only_for_the_configured_bucket(nginx, signing, s3, objects):
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ", bucket=None)}
        aws_s3_addressing path;
        aws_endpoint 127.0.0.1:{s3.port};
        aws_presign_scheme http;
        location /nobucket/ {{
            return 200 "[$aws_presigned_url]";
        }}
        location / {{
            aws_s3_bucket {BUCKET} second;
            return 200 "[$aws_presigned_url]";
        }}
    }}""")
    nginx.start()
    # without aws_s3_bucket the client's path would choose the bucket
    assert nginx.request("GET", f"/nobucket/{BUCKET}/{OK_KEY}").body == b"[]"
    url = nginx.request("GET", f"/second/k.txt?v=1").body.decode()[1:-1]
    assert url.startswith(f"http://127.0.0.1:{s3.port}/second/k.txt?X-Amz-Algorithm="), url
    assert nginx.request("GET", "/third/k.txt").body == b"[]"
    assert nginx.request("GET", "/second/").body == b"[]"
    assert nginx.request("GET", f"/{BUCKET}/../second/k.txt").body != b"[]"  # nginx normalized it
    log = nginx.error_log()
    assert "needs aws_s3_bucket" in log


# --------------------------------------------------------------------------
# 7. Never unsigned
# --------------------------------------------------------------------------


def test_aws_sign_with_every_hook_header_overridden_still_signs(nginx, recorder, signing, objects):
    """Host, Content-Length and Transfer-Encoding all set by
    proxy_set_header: none of the proxy's own variables runs, the request
    is signed all the same (and the client's Authorization never goes out)."""
    nginx.write_config(f"""
    upstream s3up {{ server 127.0.0.1:{recorder.port}; }}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            aws_sign;
            proxy_set_header Host 127.0.0.1:{recorder.port};
            proxy_set_header Content-Length "";
            proxy_set_header Transfer-Encoding "";
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        location /up/ {{
            aws_sign;
            proxy_set_header Host 127.0.0.1:{recorder.port};
            proxy_set_header Content-Length "";
            proxy_set_header Transfer-Encoding "";
            proxy_pass http://s3up/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    for target in (f"/{BUCKET}/{OK_KEY}", f"/up/{OK_KEY}"):
        resp = nginx.request("GET", target, [("Authorization", "AWS4-HMAC-SHA256 Credential=client")])
        assert resp.status == 200 and resp.body == OK_BODY, resp
        rec = recorder.last()
        harness.check_signed_request(rec)
        assert b"client" not in rec.raw_head


def test_aws_sign_in_front_of_another_protocol_is_refused(nginx, signing):
    """aws_sign cannot sign a FastCGI request: 500 before any connection,
    never an unsigned request."""
    with harness.silent_server() as (port, connections):
        nginx.write_config(f"""
        server {{
            listen 127.0.0.1:{nginx.port};
{signing.directives("            ")}
            location / {{
                aws_sign;
                fastcgi_pass 127.0.0.1:{port};
            }}
        }}""")
        nginx.start()
        resp = nginx.request("GET", f"/{BUCKET}/{OK_KEY}")
        assert resp.status == 500, resp
        assert connections == []
        assert 'cannot sign a "fastcgi://" upstream' in nginx.error_log()


# --------------------------------------------------------------------------
# 0. Where it does not sign, the module is not there
# --------------------------------------------------------------------------


def test_unsigned_location_streams_chunked_bodies(nginx, recorder, signing):
    """Credentials in scope, no aws_sign: a chunked body goes out chunked,
    as soon as it arrives, as plain nginx sends it (the module once read it
    whole first)."""
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
    }}""")
    nginx.start()
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(f"PUT /{BUCKET}/sec/streamed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     "Connection: close\r\n\r\n3\r\nabc\r\n".encode())
        # the head went upstream before the body is complete
        harness.wait_until(lambda: recorder.requests, 5, "the head upstream before the body ends")
        sock.sendall(b"0\r\n\r\n")
        sock.recv(65536)
    rec = recorder.last()
    assert rec.values("transfer-encoding") == [b"chunked"]
    assert rec.values("authorization") == [] and rec.values("x-amz-date") == []


# --------------------------------------------------------------------------
# 6/8. Logs: rate-limited, escaped, nothing secret
# --------------------------------------------------------------------------


def test_refusal_lines_are_rate_limited(nginx, recorder, signing, objects):
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            {harness.SIGN_VARIABLES}
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
    }}""")
    nginx.start()
    # aligned at the start of a second, 20 refused requests take well under one
    time.sleep(1 - time.time() % 1 + 0.01)
    for i in range(20):
        assert nginx.request("GET", f"/other-bucket/k{i}").status == 403
    lines = [l for l in nginx.error_log().splitlines() if "aws_auth: refused" in l]
    assert 1 <= len(lines) <= 2, lines


def test_key_file_with_swapped_columns_does_not_print_the_key(nginx, signing, tmp_path):
    keys = tmp_path / "aws-keys"
    keys.write_text(f"{signing.signing_key_b64} {signing.scope}\n")
    keys.chmod(0o600)
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        aws_access_key {signing.access_key};
        aws_signing_key_file {keys};
        location / {{ aws_sign; proxy_pass http://127.0.0.1:1; }}
    }}""")
    rc, out = nginx.test_config()
    assert rc != 0 and "aws_signing_key_file" in out and "invalid key scope" in out, out
    for name, value in harness.known_secrets().items():
        assert value not in out, name


class EchoesCanonicalRequest(http.server.BaseHTTPRequestHandler):
    """Answers like S3 to a signature it cannot verify: 403
    SignatureDoesNotMatch with the canonical request, in text and in spaced
    hex, token included; written in small pieces (so that nginx reads it
    in several buffers)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        token = self.headers.get("x-amz-security-token", "")
        canonical = (f"GET\n{self.path}\n\nhost:{self.headers.get('host')}\n"
                     f"x-amz-security-token:{token}\n\nhost;x-amz-security-token\nUNSIGNED-PAYLOAD")
        status = 200 if self.path.endswith("/fine") else 403
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
                f"<CanonicalRequest>{canonical}</CanonicalRequest><CanonicalRequestBytes>"
                f"{' '.join(f'{b:02x}' for b in canonical.encode())}</CanonicalRequestBytes>"
                "</Error>").encode()
        harness.send_in_pieces(self, status, body, piece=700, pause=0.01)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("buffering", ["on", "off", "cached"])
def test_an_error_answer_does_not_hand_the_session_token_to_the_client(nginx, signing, buffering):
    token = harness.SESSION_TOKEN
    token_hex = " ".join(f"{b:02x}" for b in token.encode())
    cache = ""
    if buffering == "cached":
        buffering = "on"
        cache = "proxy_cache errors; proxy_cache_valid any 1m; add_header X-Cache $upstream_cache_status;"
    with harness.serve_http(EchoesCanonicalRequest) as srv:
        port = srv.server_address[1]
        nginx.write_config(f"""
    proxy_cache_path {nginx.prefix}/cache keys_zone=errors:1m;
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_session_token {token};
        aws_s3_addressing path;
        location / {{
            aws_sign;
            proxy_buffering {buffering};
            proxy_buffer_size 1k;
            proxy_buffers 8 1k;
            {cache}
            proxy_pass http://127.0.0.1:{port};
        }}
    }}""")
        nginx.start()
        for _ in range(2):
            resp = nginx.request("GET", f"/{BUCKET}/k")
            assert resp.status == 403, resp
            # an answer blanked for one request is not kept for others
            assert resp.header("x-cache") in (None, "MISS"), resp
        text = resp.body.decode()
        assert int(resp.header("content-length")) == len(resp.body)
        assert "<Code>SignatureDoesNotMatch</Code>" in text
        # the canonical request's elements are blanked whole, whatever
        # they hold (nothing a client puts there tells what was blanked)
        for tag in ("CanonicalRequest", "CanonicalRequestBytes"):
            inner = text.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]
            assert inner and set(inner) == {"*"}, text
        # not 8 characters of the token, in text or in hex
        for i in range(len(token) - 8):
            assert token[i:i + 8] not in text, text
        for i in range(0, len(token_hex) - 24, 3):
            assert token_hex[i:i + 24] not in text, text
        # a successful answer is not touched
        fine = nginx.request("GET", f"/{BUCKET}/fine")
        assert fine.status == 200 and token in fine.body.decode(), fine
