"""Signing for a service other than S3 (`es`): generic SigV4 rules
(normalized, double-encoded path; SHA-256 of the body; no
x-amz-content-sha256 unless asked for). Every request of the aws-c-auth
v4 suite is sent through nginx to an upstream that verifies the signature
it receives with botocore's SigV4Auth, an independent implementation."""

from __future__ import annotations

import http.server
import os

import pytest

import harness

SERVICE = "es"
DATA = os.path.join(harness.REPO_ROOT, "signer", "tests", "data")
SUITE = os.path.join(DATA, "aws-c-auth", "v4")
# Every request of both AWS suites: aws-c-auth's request.txt files and the
# classic suite's .req files.
CASES = sorted(
    os.path.join(SUITE, d, "request.txt") for d in os.listdir(SUITE)
    if os.path.isfile(os.path.join(SUITE, d, "request.txt"))
) + sorted(
    os.path.join(root, f) for root, _, files in os.walk(os.path.join(DATA, "classic"))
    for f in files if f.endswith(".req")
)


def case_id(path: str) -> str:
    rel = os.path.relpath(path, DATA)
    return rel.replace("/request.txt", "").replace(".req", "")


class Verifier(http.server.BaseHTTPRequestHandler):
    """Answers 200 when the request's Authorization is botocore's for the
    request as received, 403 with botocore's canonical request otherwise."""

    protocol_version = "HTTP/1.1"
    seen: list = []

    def handle_one(self):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        authz = self.headers.get("Authorization", "")
        parsed = harness.parse_authorization(authz)
        path, _, query = self.path.partition("?")
        host = self.headers["Host"]
        req = AWSRequest(method=self.command, url=f"http://{host}{path}" + (f"?{query}" if query else ""),
                         data=body)
        for name in parsed["signed_headers"]:
            values = self.headers.get_all(name) or []
            req.headers[name] = ",".join(v.strip() for v in values)
        req.context["timestamp"] = self.headers["X-Amz-Date"]
        token = self.headers.get("X-Amz-Security-Token")
        auth = SigV4Auth(Credentials(harness.ACCESS_KEY, harness.SECRET_KEY, token), SERVICE, harness.REGION)
        canonical = auth.canonical_request(req)
        expected = auth.signature(auth.string_to_sign(req, canonical), req)
        ok = expected == parsed["signature"] and parsed["service"] == SERVICE
        type(self).seen.append((self.command, self.path, dict(self.headers), body, ok))
        out = b"verified\n" if ok else canonical.encode()
        self.send_response(200 if ok else 403)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_one

    def do_HEAD(self):
        self.handle_one()

    def log_message(self, *args):
        pass


@pytest.fixture
def verifier():
    Verifier.seen = []
    with harness.serve_http(Verifier) as srv:
        yield srv


def es_nginx(ng, verifier, extra=""):
    cfg = harness.SigningConfig(service=SERVICE)
    ng.write_config(f"""
    server {{
        listen 127.0.0.1:{ng.port};
{cfg.directives("        ", bucket=None)}
        aws_sign_methods GET HEAD POST PUT DELETE PATCH OPTIONS;
        client_max_body_size 1m;
        {extra}
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{verifier.server_address[1]};
        }}
    }}""")
    ng.start()


def parse_vector(path: str):
    with open(path, "rb") as f:
        text = f.read().replace(b"\r\n", b"\n")
    head, _, body = text.partition(b"\n\n")
    lines = head.split(b"\n")
    method, rest = lines[0].split(b" ", 1)
    # As an HTTP client sends it: bytes outside printable ASCII (UTF-8, a
    # space) percent-encoded, everything else as the suite has it.
    target = b"".join(b if 0x21 <= b[0] <= 0x7E else b"%%%02X" % b[0]
                      for b in (bytes([c]) for c in rest.rsplit(b" ", 1)[0]))
    headers = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[:1] in (b" ", b"\t"):  # folded continuation: unfold
            k, v = headers[-1]
            headers[-1] = (k, v + b" " + line.strip())
            continue
        k, _, v = line.partition(b":")
        headers.append((k.decode(), v.strip()))
    return method.decode(), target, headers, body


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_vector_request_through_nginx_verifies(nginx, verifier, case):
    method, target, headers, body = parse_vector(case)
    # nginx adds its own Host (the verifier's), Date and x-amz-date are the module's
    send = [(k, v) for k, v in headers if k.lower() not in ("host", "content-length", "x-amz-date")]
    es_nginx(nginx, verifier)
    resp = nginx.request(method, target, send, body=body if body or method in ("POST", "PUT") else None)
    assert Verifier.seen, f"nothing reached the verifier: {resp}"
    *_, ok = Verifier.seen[-1]
    assert resp.status == 200 and ok, (resp, Verifier.seen[-1])
    _, _, got_headers, got_body, _ = Verifier.seen[-1]
    names = {k.lower() for k in got_headers}
    assert "x-amz-content-sha256" not in names
    assert got_body == body


def test_content_sha256_header_on_and_unsigned_payload(nginx, verifier):
    es_nginx(nginx, verifier, "aws_content_sha256_header on;")
    resp = nginx.request("POST", "/index/_doc", [("Content-Type", "application/json")], body=b'{"a": 1}')
    assert resp.status == 200, resp
    _, _, headers, _, ok = Verifier.seen[-1]
    assert ok
    import hashlib
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()


def test_awkward_query_is_sent_as_signed(nginx, verifier):
    """`+`, lowercase and needless escapes, UTF-8 and bare keys in a query:
    the module sends the strict form it signs, so any verifier agrees."""
    es_nginx(nginx, verifier)
    resp = nginx.request("GET", "/idx/_search?q=a+b&x=%2f&y=%C3%BC&z=%7E&pretty&e=")
    assert resp.status == 200, (resp, Verifier.seen[-1])
    _, path, _, _, ok = Verifier.seen[-1]
    assert ok and path == "/idx/_search?q=a%20b&x=%2F&y=%C3%BC&z=~&pretty&e=", path
