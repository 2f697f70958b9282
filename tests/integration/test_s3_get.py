"""GET / HEAD / Range through nginx + the module to s3s-fs, for a corpus of
awkward object keys, over the whole matrix of ways nginx builds the
upstream request:

* style  -- ``vhost``: ``Host: testbucket.s3.amazonaws.com``, path ``/KEY``
            (``aws_s3_addressing virtual``; the host is an ``upstream``
            block pointing at the recorder, s3s-fs runs with
            ``--domain s3.amazonaws.com``);
            ``path``: ``Host: 127.0.0.1:PORT``, path ``/testbucket/KEY``
            (``aws_s3_addressing path``, an endpoint with a port);
* route  -- ``plain``: ``proxy_pass`` without a URI part, nginx forwards
            the client's request target byte for byte;
            ``uripart``: ``proxy_pass http://HOST/[testbucket/]``, nginx
            rebuilds the path from the decoded URI with its own escaping
            (``!$&'()*+,;=:@[]`` stay raw);
            ``rewrite``: ``rewrite ... break`` then ``proxy_pass`` without a
            URI part, the same rebuilding;
            ``vars``: ``proxy_pass http://$aws_s3_host$aws_s3_uri$is_args$args``,
            the value sent exactly as evaluated;
* mode   -- ``aws_sign`` (the module adds its headers) or ``variables``
            (``proxy_set_header ... $s3_auth_token / $aws_date /
            $aws_content_sha256``).

One nginx serves the whole matrix (a server per style and mode, a
location per route). Objects are seeded straight into s3s-fs with botocore
(not through nginx), so the body comparison checks bytes that went in by
another route. Every request that reaches s3s-fs is recorded: its path
must be the strict S3 encoding of the key (``a+b`` leaves as ``a%2Bb``,
which AWS S3 and s3s-fs both read as a plus), and its Authorization must
equal botocore's S3SigV4Auth for that exact request line and Host.
"""

from __future__ import annotations

import os
import random
import re
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest

import harness
from harness import BUCKET

# Object keys.  Each one is stored with botocore directly in s3s-fs.
KEYS = [
    "a b.txt",
    "a+b",
    "a%2Bb",
    "100%",
    "%2F inside",
    "ünïcødé/日本語.txt",
    "(paren)",
    "!*'",
    "a=b",
    "user@host",
    "a&b",
    "semi;colon",
    "co:lon",
    "com,ma",
    "dollar$",
    "tilde~",
    "[brackets]",
    "deep/a/b/c/d/e/f/g/file.txt",
    "big.bin",  # 1 MiB of random bytes
    'quote"d',
    "hash#",
    "question?mark",
    "percent%20literal",
    "emoji-😀",
    "dots..name",
    "curly{}",
    "caret^",
    "pipe|",
    "back\\slash",
    "back`tick",
    "<angle>",
    "tab\tkey",
    "trailing space ",
    "  leading spaces",
    "x%41y",
    "plus+space +.txt",
    "mixed/ü ~(1)+[2]!.txt",
    "UPPER/Case.TXT",
]
# Keys deliberately NOT in the corpus:
#   "." and ".."      -- s3s-fs 0.14.1 cannot store them (PutObject: InternalError /
#                        connection closed): they map onto the bucket directory itself.
#   "/leading"        -- s3s-fs PutObject fails with InternalError (empty first segment).
#   "dot/./seg", "dotdot/../seg", "double//slash"
#                     -- s3s-fs stores them, but nginx resolves dot segments and
#                        merges slashes when it parses the request URI, so these keys
#                        are not reachable through an nginx location that rebuilds
#                        the path; that is nginx behaviour, not the module's.
#   "nl\nkey", "ctrl\x01key"
#                     -- control characters other than TAB: kept out to keep the
#                        corpus about URI encoding, not about header/log injection.

# test_build_routes.py runs this file again in nginx built two other ways
# (--add-dynamic-module, Debian's nginx) with NGX_TEST_CORPUS=core: there
# the question is whether the module works in that nginx over every route,
# mode and style, so a few keys and queries of each kind stand for the rest.
CORE_CORPUS = os.environ.get("NGX_TEST_CORPUS") == "core"
if CORE_CORPUS:
    KEYS = [k for k in KEYS if k in (
        "a b.txt", "a+b", "a%2Bb", "%2F inside", "ünïcødé/日本語.txt", "!*'", "a&b",
        "big.bin", "question?mark", "[brackets]", "plus+space +.txt")]

MODES = ["aws_sign", "variables"]
STYLES = ["vhost", "path"]
ROUTES = ["plain", "uripart", "rewrite", "vars"]
VHOST = f"{BUCKET}.s3.amazonaws.com"



def _body_for(key: str) -> bytes:
    rnd = random.Random(key)
    if key == "big.bin":
        return rnd.randbytes(1024 * 1024)
    return b"key=" + key.encode("utf-8") + b"\n" + rnd.randbytes(rnd.randint(20, 3000))


@pytest.fixture(scope="module")
def corpus(s3) -> dict[str, bytes]:
    data = {}
    for key in KEYS:
        body = _body_for(key)
        s3.put(key, body)
        head = s3.client.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentLength"] == len(body), key
        data[key] = body
    return data


class Matrix:
    """One nginx with a server per (style, mode) and a location per route."""

    def __init__(self, ng: harness.Nginx, recorder: harness.RecordingProxy):
        self.ng = ng
        self.recorder = recorder
        self.ports = {(st, mode): harness.free_port() for st in STYLES for mode in MODES}
        self.ports[(STYLES[0], MODES[0])] = ng.port  # the port start() waits for

    def upstream_host(self, style: str) -> str:
        """The Host nginx sends upstream."""
        return VHOST if style == "vhost" else f"127.0.0.1:{self.recorder.port}"

    def config(self, signing: harness.SigningConfig) -> str:
        # keepalive: signed requests share upstream connections (vhost style)
        out = [f"upstream {VHOST} {{ server 127.0.0.1:{self.recorder.port}; keepalive 4; }}"]
        for (style, mode), port in self.ports.items():
            host = self.upstream_host(style)
            prefix = "" if style == "vhost" else f"/{BUCKET}"
            addressing = (
                "aws_s3_addressing virtual;" if style == "vhost"
                else f"aws_s3_addressing path; aws_endpoint 127.0.0.1:{self.recorder.port};"
            )
            sign = harness.sign_lines(mode)
            sign += '\n            proxy_set_header Connection "";'
            out.append(f"""
    server {{
        listen 127.0.0.1:{port};
{signing.directives(indent="        ")}
        {addressing}
        aws_forward_query_params all;
        aws_s3_listing on;
        proxy_http_version 1.1;
        location / {{
            {sign}
            proxy_pass http://{host};
        }}
        location /files/ {{
            {sign}
            proxy_pass http://{host}{prefix}/;
        }}
        location /r/ {{
            {sign}
            rewrite ^/r/(.*)$ {prefix}/$1 break;
            proxy_pass http://{host};
        }}
        location /v/ {{
            {sign}
            rewrite ^/v(/.*)$ $1 break;
            proxy_pass http://$aws_s3_host$aws_s3_uri$is_args$args;
        }}
    }}""")
        return "\n".join(out)

    def client_target(self, style: str, route: str, key_or_path: str, query: str = "") -> str:
        """What the client asks nginx for. `key_or_path` is an object key
        (encoded here) or, with a leading '/', a raw bucket-relative path."""
        if key_or_path.startswith("/"):
            rel = key_or_path
        else:
            rel = "/" + harness.s3_encode_key(key_or_path)
        if route == "plain":
            base = rel if style == "vhost" else f"/{BUCKET}{rel}"
        else:
            base = {"uripart": "/files", "rewrite": "/r", "vars": "/v"}[route] + rel
        return base + (f"?{query}" if query else "")

    def request(self, style, mode, method, target, headers=()):
        port = self.ports[(style, mode)]
        return harness.http_request(port, method, target, headers, host=f"127.0.0.1:{port}")

    def check_wire(self, style: str, method: str, wire_path: str) -> harness.RecordedRequest:
        """The last request s3s-fs got: method, exact strict-encoded path,
        Host, and a signature equal to botocore's."""
        rec = self.recorder.last()
        assert rec.method == method, rec.head_text()
        expected = wire_path if style == "vhost" else f"/{BUCKET}{wire_path}"
        assert rec.path == expected.encode("ascii"), rec.head_text()
        harness.check_signed_request(rec, expect_host=self.upstream_host(style))
        return rec


@pytest.fixture(scope="module")
def matrix(module_make_nginx, module_recorder) -> Matrix:
    ng = module_make_nginx()
    m = Matrix(ng, module_recorder)
    ng.write_config(m.config(harness.SigningConfig()))
    ng.start()
    return m


@pytest.fixture
def mx(matrix, corpus) -> Matrix:
    matrix.recorder.clear()
    return matrix


@pytest.mark.parametrize("key", KEYS, ids=[repr(k)[1:-1] for k in KEYS])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("style", STYLES)
def test_get_head_range(mx, corpus, style, mode, route, key):
    data = corpus[key]
    target = mx.client_target(style, route, key)
    wire = "/" + harness.s3_encode_key(key)

    resp = mx.request(style, mode, "GET", target)
    assert resp.status == 200, resp
    assert len(resp.body) == len(data)
    assert resp.body == data
    mx.check_wire(style, "GET", wire)

    mx.recorder.clear()
    resp = mx.request(style, mode, "HEAD", target)
    assert resp.status == 200, resp
    assert resp.header("content-length") == str(len(data))
    assert resp.body == b""
    mx.check_wire(style, "HEAD", wire)

    mx.recorder.clear()
    resp = mx.request(style, mode, "GET", target, [("Range", "bytes=0-9")])
    assert resp.status == 206, resp
    assert resp.body == data[:10]
    assert resp.header("content-range") == f"bytes 0-9/{len(data)}"
    rec = mx.check_wire(style, "GET", wire)
    assert rec.values("range") == [b"bytes=0-9"]


CLIENT_JUNK = [
    ("Authorization", "AWS4-HMAC-SHA256 Credential=EVIL/20000101/us-east-1/s3/aws4_request, "
     "SignedHeaders=host, Signature=" + "0" * 64),
    ("X-Amz-Date", "20000101T000000Z"),
    ("x-amz-foo", "bar"),
    ("X-AMZ-CONTENT-SHA256", "ab" * 32),
    ("x-amz-date", "20000102T000000Z"),
    ("x-amz-checksum-mode", "ENABLED"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("style", STYLES)
def test_client_auth_and_amz_headers_are_not_forwarded(mx, corpus, style, mode, route):
    """Client-sent Authorization / x-amz-* headers (x-amz-date repeated,
    mixed case) never reach S3 (a repeated Authorization is answered 400 by
    nginx itself, so it is sent once): exactly one Authorization, x-amz-date and
    x-amz-content-sha256 leave nginx, all of them the module's."""
    key = "a b.txt"
    target = mx.client_target(style, route, key)
    for method, extra in (("GET", []), ("HEAD", []), ("GET", [("Range", "bytes=0-9")])):
        mx.recorder.clear()
        resp = mx.request(style, mode, method, target, CLIENT_JUNK + extra)
        assert resp.status in (200, 206), resp
        if method == "GET" and not extra:
            assert resp.body == corpus[key]
        rec = mx.check_wire(style, method, "/" + harness.s3_encode_key(key))
        assert rec.values("x-amz-foo") == [], rec.head_text()
        assert "EVIL" not in rec.header("authorization")
        assert not rec.header("x-amz-date").startswith("2000")
        assert rec.header("x-amz-content-sha256") != "ab" * 32
        amz = sorted(n.lower() for n in rec.names() if n.lower().startswith("x-amz-"))
        assert amz == ["x-amz-content-sha256", "x-amz-date"], rec.head_text()


# -- query strings ----------------------------------------------------------

QUERY_KEYS = ["q/a b", "q/a+b", "q/a=b&c", "q/d/e", "q/plus+", "q/x%2By", "q/~tilde"]

# (id, bucket-relative path, query the client sends, query S3 must receive)
QUERIES = [
    ("list-v2", "/", "list-type=2&prefix=q/&delimiter=/",
     "list-type=2&prefix=q%2F&delimiter=%2F"),
    ("list-empty-values", "/", "list-type=2&prefix=&delimiter=/&start-after=",
     "list-type=2&prefix=&delimiter=%2F&start-after="),
    ("list-plus-is-space", "/", "list-type=2&prefix=q/a+b",
     "list-type=2&prefix=q%2Fa%20b"),
    ("list-%20", "/", "list-type=2&prefix=q%2Fa%20b", "list-type=2&prefix=q%2Fa%20b"),
    ("list-%2B", "/", "list-type=2&prefix=q/a%2Bb", "list-type=2&prefix=q%2Fa%2Bb"),
    ("list-%2b-lowercase", "/", "list-type=2&prefix=q%2fa%2bb", "list-type=2&prefix=q%2Fa%2Bb"),
    ("list-=&", "/", "list-type=2&prefix=q/a%3Db%26c", "list-type=2&prefix=q%2Fa%3Db%26c"),
    ("list-start-after", "/", "list-type=2&prefix=q/&start-after=q/a%2Bb",
     "list-type=2&prefix=q%2F&start-after=q%2Fa%2Bb"),
    ("list-encoding-url", "/", "list-type=2&prefix=q/&encoding-type=url&fetch-owner=true",
     "list-type=2&prefix=q%2F&encoding-type=url&fetch-owner=true"),
    ("list-unsorted", "/", "prefix=q/d&list-type=2&max-keys=5",
     "prefix=q%2Fd&list-type=2&max-keys=5"),
    ("list-v1-marker", "/", "prefix=q/&marker=q/a%20b", "prefix=q%2F&marker=q%2Fa%20b"),
    ("location", "/", "location", "location"),
    ("versionId", "/q/d/e", "versionId=null", "versionId=null"),
    ("response-headers", "/q/d/e",
     "response-content-disposition=attachment;%20filename=%22a%20b%2Bc.txt%22"
     "&response-content-type=text/plain&response-cache-control=no-cache",
     "response-content-disposition=attachment%3B%20filename%3D%22a%20b%2Bc.txt%22"
     "&response-content-type=text%2Fplain&response-cache-control=no-cache"),
    ("x-id", "/q/a%2Bb", "x-id=GetObject", "x-id=GetObject"),
    ("tagging", "/q/d/e", "tagging", "tagging"),
    ("acl", "/q/d/e", "acl", "acl"),
    ("bucket-acl", "/", "acl", "acl"),
    ("tagging-with-version", "/q/d/e", "tagging&versionId=null", "tagging&versionId=null"),
    # a name given twice goes out in the order its values are signed in
    # (s3s-fs and MinIO keep the order values come in, AWS sorts them)
    ("repeated-name", "/q/d/e", "response-cache-control=b&x-id=GetObject&response-cache-control=a",
     "response-cache-control=a&response-cache-control=b&x-id=GetObject"),
]
if CORE_CORPUS:
    QUERIES = [q for q in QUERIES if q[0] in (
        "list-v2", "list-%2B", "list-unsorted", "response-headers", "acl", "tagging-with-version")]


@pytest.fixture(scope="module")
def query_objects(s3) -> None:
    for key in QUERY_KEYS:
        s3.put(key, b"body of " + key.encode())


def direct(mx: Matrix, s3, style: str, method: str, wire_target: str) -> harness.Response:
    host = VHOST if style == "vhost" else f"127.0.0.1:{s3.port}"
    if style == "path":
        wire_target = f"/{BUCKET}{wire_target}"
    return harness.direct_s3_request(s3.port, method, host, wire_target)


def same_answer(got: harness.Response, want: harness.Response) -> None:
    """nginx's answer equals s3s-fs's own answer to the signed reference
    request: status, and the body (XML listings included) byte for byte;
    request ids aside for error bodies."""
    assert got.status == want.status, (got, want)
    if want.status < 300:
        assert got.body == want.body, (got, want)
    else:
        code = re.compile(rb"<Code>([^<]*)</Code>")
        assert code.findall(got.body) == code.findall(want.body), (got, want)


@pytest.mark.parametrize("case", QUERIES, ids=[q[0] for q in QUERIES])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("style", STYLES)
def test_query_strings(mx, s3, query_objects, style, mode, route, case):
    _, rel, client_query, wire_query = case
    resp = mx.request(style, mode, "GET", mx.client_target(style, route, rel, client_query))
    rec = mx.check_wire(style, "GET", rel)
    assert rec.target.partition(b"?")[2] == wire_query.encode(), rec.head_text()
    assert b"SignatureDoesNotMatch" not in resp.body, resp
    same_answer(resp, direct(mx, s3, style, "GET", f"{rel}?{wire_query}"))
    if case[0] == "response-headers":
        assert resp.header("content-disposition") == 'attachment; filename="a b+c.txt"'
        assert resp.header("content-type") == "text/plain"
    if case[0] == "list-plus-is-space":
        assert b"<Key>q/a b</Key>" in resp.body and b"q/a+b" not in resp.body, resp


def test_unimplemented_operations_are_still_authenticated(s3, query_objects):
    """Controls for the tagging/acl cases, which s3s-fs answers
    NotImplemented: it checks the signature first, so a wrong one is a 403
    there, and the NotImplemented through nginx proves a valid signature."""
    for query in ("tagging", "acl"):
        resp = harness.direct_s3_request(
            s3.port, "GET", f"127.0.0.1:{s3.port}", f"/{BUCKET}/q/d/e?{query}",
            secret_key="wrong" + harness.SECRET_KEY,
        )
        assert resp.status == 403 and b"SignatureDoesNotMatch" in resp.body, resp


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("style", STYLES)
def test_list_pages_with_continuation_token(mx, s3, query_objects, style, mode, route):
    """ListObjectsV2 paging: each NextContinuationToken, percent-encoded by
    the client as any SDK does, brings the next page; all pages together
    list every key once."""
    seen: list[str] = []
    token = None
    for _ in range(10):
        q = "list-type=2&max-keys=2&prefix=" + quote("q/", safe="")
        if token is not None:
            q += "&continuation-token=" + quote(token, safe="")
        resp = mx.request(style, mode, "GET", mx.client_target(style, route, "/", q))
        assert resp.status == 200, resp
        mx.check_wire(style, "GET", "/")
        root = ET.fromstring(resp.body)
        ns = {"s3": root.tag.split("}")[0][1:]} if root.tag.startswith("{") else {}
        pfx = "s3:" if ns else ""
        seen += [k.text for k in root.iterfind(f"{pfx}Contents/{pfx}Key", ns)]
        nxt = root.find(f"{pfx}NextContinuationToken", ns)
        if nxt is None:
            break
        token = nxt.text
    assert token is not None, "expected more than one page"
    assert sorted(seen) == sorted(QUERY_KEYS)


# Keys nginx would normalize in $uri: reachable with proxy_pass without a URI
# part (nginx forwards the client's raw target), which the module signs as sent.
RAW_ONLY_KEYS = ["double//slash", "dot/./seg", "dotdot/../seg"]


@pytest.fixture(scope="module")
def raw_only_objects(s3) -> None:
    for key in RAW_ONLY_KEYS:
        s3.put(key, b"raw " + key.encode())


@pytest.mark.parametrize("key", RAW_ONLY_KEYS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("style", STYLES)
def test_keys_nginx_would_normalize_pass_raw(mx, raw_only_objects, style, mode, key):
    resp = mx.request(style, mode, "GET", mx.client_target(style, "plain", key))
    assert resp.status == 200 and resp.body == b"raw " + key.encode(), resp
    mx.check_wire(style, "GET", "/" + harness.s3_encode_key(key))
