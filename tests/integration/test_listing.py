"""`aws_s3_autoindex`: a GET of a "directory" lists the objects and common
prefixes under it, from ListObjectsV2 requests the module builds and signs,
following every continuation token, as HTML (like nginx's autoindex) or
JSON. Keys are attacker-controlled text: the HTML is parsed (not grepped),
no key may become markup, and following each link must fetch exactly that
key's bytes. S3's errors pass through; a later page that fails ends the
response short; the listing stays refused where the directive is off."""

from __future__ import annotations

import concurrent.futures
import html.parser
import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest

import harness
from harness import BUCKET

ODD = [
    "<script>alert(1)<script>.html",
    "<a href=x>.txt",
    "a&b.txt",
    'quote"s.txt',
    "it's.txt",
    "sp ace.txt",
    "plus+sign.txt",
    "ünïcødé-日本.txt",
    "100%.txt",
    "%41.txt",
    "hash#tag.txt",
    "q?uery.txt",
    "semi;colon:.txt",
    "..dots",
    "~tilde",
    "=eq&amp;.txt",
    "javascript:alert(1)",
    "<img src=x onerror=alert(1)>",
]
DIRS = ["sub dir", "<b>", "a+b"]
N_FILES = 2500


def body_of(key: str) -> bytes:
    return key.encode() + b"\n"


@pytest.fixture(scope="module")
def listed(s3):
    names = [f"file-{i:04d}.txt" for i in range(N_FILES - len(ODD))] + ODD
    keys = [f"big/{n}" for n in names] + [f"big/{d}/inner.txt" for d in DIRS]
    keys += ["small/one.txt", "small/two words.txt", "small/deeper/three.txt"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put(k, body_of(k)), keys))
    return names


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.title = ""
        self._in_a: str | None = None
        self._in_title = False
        self._text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "a":
            self._in_a = dict(attrs)["href"]
            self._text = ""
        if tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "a" and self._in_a is not None:
            self.links.append((self._in_a, self._text))
            self._in_a = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_a is not None:
            self._text += data
        if self._in_title:
            self.title += data


def parse(body: bytes) -> Links:
    p = Links()
    p.feed(body.decode("utf-8"))
    p.close()
    return p


def config(ng, signing, recorder, mode: str = "aws_sign") -> str:
    up = recorder.port
    sign = harness.sign_lines(mode)
    return f"""
    proxy_cache_path {ng.prefix}/cache levels=1:2 keys_zone=lists:1m max_size=16m;
    server {{
        listen 127.0.0.1:{ng.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        location / {{
            {sign}
            proxy_pass http://127.0.0.1:{up};
        }}
        location /list/ {{
            aws_s3_autoindex on;
            {sign}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location /json/ {{
            aws_s3_autoindex on;
            aws_s3_autoindex_format json;
            {sign}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location /few/ {{
            aws_s3_autoindex on;
            aws_s3_autoindex_max_entries 1500;
            {sign}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location /cached/ {{
            aws_s3_autoindex on;
            proxy_cache lists;
            proxy_cache_valid 200 1h;
            add_header X-Cache $upstream_cache_status;
            {sign}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location /nobucket/ {{
            aws_s3_autoindex on;
            aws_s3_bucket {BUCKET} no-such-bucket;
            {sign}
            proxy_pass http://127.0.0.1:{up}/no-such-bucket/;
        }}
    }}"""


def list_requests(recorder) -> list:
    return [r for r in recorder.requests if b"list-type=2" in r.target]


def check_signed(recorder):
    for rec in recorder.requests:
        harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")


def test_html_listing_of_2500_keys_every_link_fetches_its_object(nginx, s3, signing, recorder, listed):
    nginx.write_config(config(nginx, signing, recorder))
    nginx.start()
    r = nginx.request("GET", "/list/big/")
    assert r.status == 200, r
    assert r.header("Content-Type") == "text/html; charset=utf-8", r
    assert r.header("Content-Length") is None and r.header("ETag") is None
    page = parse(r.body)
    assert page.title == "Index of /list/big/"
    # nothing in a key became markup
    assert set(page.tags) <= {"html", "head", "title", "body", "h1", "hr", "pre", "a"}, set(page.tags)
    assert page.links[0] == ("../", "../")
    entries = page.links[1:]
    shown = [text for _, text in entries]
    want = sorted(listed) + [d + "/" for d in DIRS]
    assert sorted(shown) == sorted(want)
    assert len(entries) == N_FILES + len(DIRS)
    # three ListObjectsV2 requests (pages of 1000), each signed as sent
    lists = list_requests(recorder)
    assert len(lists) == 3, [x.target for x in lists]
    assert b"continuation-token=" not in lists[0].target
    assert all(b"continuation-token=" in x.target for x in lists[1:])
    assert all(x.target.startswith(f"/{BUCKET}/?".encode()) for x in lists)
    assert all(b"prefix=big%2F" in x.target and b"delimiter=%2F" in x.target for x in lists)
    check_signed(recorder)
    # every link, resolved as a browser does, fetches its own object
    base = "/list/big/"
    targets = [(urllib.parse.urljoin(base, href), text) for href, text in entries]

    def fetch(item):
        target, text = item
        got = nginx.request("GET", target)
        return target, text, got

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for target, text, got in pool.map(fetch, targets):
            if text.endswith("/"):
                assert got.status == 200, (target, got)
                sub = parse(got.body)
                assert [t for _, t in sub.links] == ["../", "inner.txt"], (target, got)
            else:
                assert got.status == 200 and got.body == body_of("big/" + text), (target, text, got)


def test_json_listing(nginx, s3, signing, recorder, listed):
    nginx.write_config(config(nginx, signing, recorder, "variables"))
    nginx.start()
    r = nginx.request("GET", "/json/big/")
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r
    items = json.loads(r.body)
    files = {i["name"]: i for i in items if i["type"] == "file"}
    dirs = {i["name"] for i in items if i["type"] == "directory"}
    assert dirs == set(DIRS)
    assert set(files) == set(listed)
    for name, item in files.items():
        assert item["size"] == len(body_of("big/" + name)), item
        assert item["mtime"].endswith(" GMT")
    assert len(list_requests(recorder)) == 3
    check_signed(recorder)
    # a small one, and HEAD
    r = nginx.request("GET", "/json/small/")
    items = json.loads(r.body)
    for i in items:
        i.pop("mtime", None)
    assert sorted(items, key=lambda i: i["name"]) == [
        {"name": "deeper", "type": "directory"},
        {"name": "one.txt", "type": "file", "size": len(body_of("small/one.txt"))},
        {"name": "two words.txt", "type": "file", "size": len(body_of("small/two words.txt"))},
    ], r
    r = nginx.request("HEAD", "/json/small/")
    assert r.status == 200 and r.body == b"" and r.header("Content-Type") == "application/json", r


def test_most_entries(nginx, s3, signing, recorder, listed):
    nginx.write_config(config(nginx, signing, recorder))
    nginx.start()
    r = nginx.request("GET", "/few/big/")
    assert r.status == 200, r
    page = parse(r.body)
    assert len(page.links) == 1 + 1500
    assert b"Only the first 1500 entries are listed." in r.body
    # no page asked for more than was left
    lists = list_requests(recorder)
    assert len(lists) == 2 and b"max-keys=1000" in lists[0].target and b"max-keys=1000" in lists[1].target


def test_cached_listing_is_the_same(nginx, s3, signing, recorder, listed):
    nginx.write_config(config(nginx, signing, recorder))
    nginx.start()
    first = nginx.request("GET", "/cached/big/")
    assert first.status == 200 and first.header("X-Cache") == "MISS", first
    assert len(list_requests(recorder)) == 3
    recorder.clear()
    again = nginx.request("GET", "/cached/big/")
    assert again.status == 200 and again.header("X-Cache") == "HIT", again
    assert recorder.requests == []
    assert again.body == first.body


def test_a_background_cache_update_of_a_listing_lists(nginx, s3, signing, recorder, listed):
    # proxy_cache_background_update refreshes a stale page in a subrequest
    # that starts at the content phase: it must fetch the listing again,
    # not the object named like the directory (whose 404 would then be
    # cached under the listing's key)
    up = recorder.port
    start_path_style(nginx, signing, f"""
        location /bg/ {{
            aws_s3_autoindex on;
            proxy_cache bg;
            proxy_cache_valid 200 404 1s;
            proxy_cache_use_stale updating;
            proxy_cache_background_update on;
            add_header X-Cache $upstream_cache_status;
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}""", f"proxy_cache_path {nginx.prefix}/cache-bg levels=1:2 keys_zone=bg:1m max_size=16m;")
    first = nginx.request("GET", "/bg/small/")
    assert first.status == 200 and first.header("X-Cache") == "MISS", first
    want = sorted(href for href, _ in parse(first.body).links)
    assert "one.txt" in want and "deeper/" in want, want
    time.sleep(3)
    recorder.clear()
    stale = nginx.request("GET", "/bg/small/")
    assert stale.status == 200 and stale.header("X-Cache") == "STALE", (stale.status, stale.headers)
    assert sorted(href for href, _ in parse(stale.body).links) == want
    deadline = time.time() + 5
    while time.time() < deadline and not recorder.requests:
        time.sleep(0.05)
    time.sleep(0.3)
    # the refresh asked for the listing, signed
    assert [r.target for r in recorder.requests] and all(
        b"list-type=2" in r.target for r in recorder.requests
    ), [r.target for r in recorder.requests]
    check_signed(recorder)
    fresh = nginx.request("GET", "/bg/small/")
    assert fresh.status == 200 and fresh.header("X-Cache") == "HIT", fresh
    assert sorted(href for href, _ in parse(fresh.body).links) == want


def test_errors_pass_through_and_listing_stays_off_elsewhere(nginx, s3, signing, recorder, listed):
    nginx.write_config(config(nginx, signing, recorder))
    nginx.start()
    r = nginx.request("GET", "/nobucket/big/")
    assert r.status == 404 and b"NoSuchBucket" in r.body, r
    assert r.header("Content-Type") != "text/html; charset=utf-8"
    # nothing under a prefix: no such directory, 404 as nginx's autoindex
    # answers for one (the page still says what was looked for); the same
    # for an object's name with a slash, and in JSON
    for target in ["/list/nothing-here/", "/list/small/one.txt/", "/list/small/deeper/none/"]:
        r = nginx.request("GET", target)
        assert r.status == 404 and [t for _, t in parse(r.body).links] == ["../"], (target, r)
        assert r.header("Content-Type") == "text/html; charset=utf-8", r
    r = nginx.request("GET", "/json/nothing-here/")
    assert r.status == 404 and json.loads(r.body) == [], r
    # a directory with one key in it exists
    r = nginx.request("GET", "/list/small/deeper/")
    assert r.status == 200 and [t for _, t in parse(r.body).links] == ["../", "three.txt"], r
    # objects are objects
    r = nginx.request("GET", "/list/small/one.txt")
    assert r.status == 200 and r.body == body_of("small/one.txt")
    # where the directive is off, the bucket itself stays refused and a
    # directory is an object key
    recorder.clear()
    r = nginx.request("GET", f"/{BUCKET}/")
    assert r.status == 403, r
    assert recorder.requests == []
    r = nginx.request("GET", f"/{BUCKET}/big/")
    assert r.status != 200 and b"file-0001" not in r.body, r
    assert list_requests(recorder) == []


class FlakyS3(BaseHTTPRequestHandler):
    """Answers page 1 of a listing (truncated), then fails page 2."""

    protocol_version = "HTTP/1.1"
    calls: list[str] = []

    def do_GET(self):
        FlakyS3.calls.append(self.path)
        if "continuation-token" not in self.path:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
                "<Prefix>d/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>"
                "<IsTruncated>true</IsTruncated><Contents><Key>d/first.txt</Key>"
                "<LastModified>2026-12-02T10:11:12.000Z</LastModified><Size>3</Size></Contents>"
                "<NextContinuationToken>next+page/=</NextContinuationToken></ListBucketResult>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
        else:
            body = b"<Error><Code>InternalError</Code></Error>"
            self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def start_path_style(nginx, signing, locations: str, http: str = "") -> None:
    """Starts nginx with one path-style server holding `locations` (after
    `http`, directives of the http block)."""
    nginx.write_config(f"""
    {http}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing path;{locations}
    }}""")
    nginx.start()


def start_listing(nginx, signing, port: int, locations: dict[str, str]) -> None:
    """Starts nginx with a listing location for each of `locations` (with
    its extra directives), each proxied to d/ of a stand-in S3 at `port`."""
    blocks = "".join(f"""
        location {loc} {{
            aws_s3_autoindex on;
            {extra}
            aws_sign;
            proxy_pass http://127.0.0.1:{port}/{BUCKET}/d/;
        }}""" for loc, extra in locations.items())
    start_path_style(nginx, signing, blocks)


@pytest.mark.parametrize("error_page", [False, True], ids=["plain", "error_page"])
def test_a_failed_later_page_ends_the_response_short(nginx, signing, error_page):
    """With error_page for 5xx too (as nginx's stock configuration has it):
    the error page of a later page is not spliced into the listing."""
    extra = ('error_page 500 502 503 504 /50x.html;\n'
             '            proxy_intercept_errors on;') if error_page else ""
    with harness.serve_http(FlakyS3) as srv:
        port = srv.server_address[1]
        start_listing(nginx, signing, port, {"/d/": extra, "= /50x.html": "return 200 SPLICED;"})
        FlakyS3.calls.clear()
        head, body = fetch_raw(nginx.port, "/d/")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"first.txt" in body and b"SPLICED" not in body, body
        assert not body.endswith(b"0\r\n\r\n"), body  # no last chunk: cut short
        assert len(FlakyS3.calls) == 2
        assert "continuation-token=next%2Bpage%2F%3D" in FlakyS3.calls[1], FlakyS3.calls


def send_listing(handler: BaseHTTPRequestHandler, parts: list[str], piece: int = 0,
                 pause: float = 0.0) -> None:
    """Answers 200 with a ListBucketResult made of `parts` (its opening
    tag included) and its closing tag (in pieces: see
    `harness.send_in_pieces`)."""
    body = ("".join(parts) + "</ListBucketResult>").encode()
    harness.send_in_pieces(handler, 200, body, piece, pause)


class Paged(BaseHTTPRequestHandler):
    """A stand-in S3 listing `total` keys under the prefix asked for,
    `per_page` a page (the continuation token is the index of the next
    key), or, with `same_token`, the same token on every page."""

    protocol_version = "HTTP/1.1"
    total = 5
    per_page = 2
    same_token = False
    calls: list[str] = []

    def do_GET(self):
        Paged.calls.append(self.path)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        prefix = q["prefix"][0]
        token = q.get("continuation-token", [None])[0]
        start = int(token) if token and not self.same_token else 0
        n = min(self.per_page, self.total - start)
        more = start + n < self.total
        esc = prefix.replace("&", "&amp;").replace("<", "&lt;")
        parts = [f"<ListBucketResult><Prefix>{esc}</Prefix><KeyCount>{n}</KeyCount>"]
        if token:
            parts.append(f"<ContinuationToken>{token}</ContinuationToken>")
        parts.append(f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>")
        for i in range(start, start + n):
            parts.append(f"<Contents><Key>{esc}k{i:07d}</Key><Size>1</Size></Contents>")
        if more:
            nxt = "same" if self.same_token else str(start + n)
            parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
        send_listing(self, parts)

    def log_message(self, *a):
        pass


def fetch_raw(port: int, target: str) -> tuple[bytes, bytes]:
    """The head and body of a GET, read until nginx closes or ends it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


class SlowS3(BaseHTTPRequestHandler):
    """A listing of 300 keys under the prefix asked for (none under
    `empty/`), sent in pieces of 4,000 bytes a tenth of a second apart."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        prefix = q["prefix"][0]
        n = 0 if prefix.endswith("empty/") else 300
        parts = [f"<ListBucketResult><Prefix>{prefix}</Prefix><KeyCount>{n}</KeyCount>"
                 "<IsTruncated>false</IsTruncated>"]
        parts += [f"<Contents><Key>{prefix}k{i:04d}.txt</Key><Size>3</Size></Contents>"
                  for i in range(n)]
        send_listing(self, parts, piece=4000, pause=0.1)

    def log_message(self, *a):
        pass


def test_a_held_header_that_goes_out_without_a_body_is_all_that_goes_out(nginx, signing):
    # the listing's header waits for its first entry; when it then goes
    # out as a 304 (a cached page, If-None-Match: *), the rest of S3's
    # answer must not follow it on the keep-alive connection
    with harness.serve_http(SlowS3) as srv:
        start_path_style(nginx, signing, f"""
        location /d/ {{
            aws_s3_autoindex on;
            proxy_cache slow;
            proxy_cache_valid 200 1h;
            aws_sign;
            proxy_pass http://127.0.0.1:{srv.server_address[1]}/{BUCKET}/d/;
        }}""", f"proxy_cache_path {nginx.prefix}/cache-slow levels=1:2 keys_zone=slow:1m;")
        s = socket.create_connection(("127.0.0.1", nginx.port), timeout=10)
        s.sendall(b"GET /d/big/ HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n")
        time.sleep(2.5)
        s.sendall(b"GET /d/empty/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        first, _, rest = data.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 304"), data[:300]
        # nothing between the 304 and the next response
        assert rest.startswith(b"HTTP/1.1 404"), rest[:300]
        assert b"k0001.txt" not in rest
        # and without the condition, the whole listing
        r = nginx.request("GET", "/d/big/")
        assert r.status == 200 and r.body.count(b'href="k') == 300, r


def test_a_server_that_pages_forever_is_not_followed_forever(nginx, signing, monkeypatch):
    monkeypatch.setattr(Paged, "total", 10**9)
    monkeypatch.setattr(Paged, "per_page", 1)
    with harness.serve_http(Paged) as srv:
        start_listing(nginx, signing, srv.server_address[1], {
            "/d/": "aws_s3_autoindex_max_entries 2500;",
        })
        # the same token back: the listing ends short at the second page
        monkeypatch.setattr(Paged, "same_token", True)
        Paged.calls.clear()
        head, body = fetch_raw(nginx.port, "/d/")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert b"k0000000" in body and not body.endswith(b"0\r\n\r\n"), body
        assert len(Paged.calls) == 2, Paged.calls
        # a new token each time, one key a page: no more pages than 2,500
        # entries take at 1,000 a page, and one more; the page says it is cut
        monkeypatch.setattr(Paged, "same_token", False)
        Paged.calls.clear()
        r = nginx.request("GET", "/d/")
        assert r.status == 200, r
        assert len(Paged.calls) == 1 + 4, Paged.calls
        names = [t for _, t in parse(r.body).links]
        assert names == ["../"] + [f"k{i:07d}" for i in range(5)], names
        assert b"Only the first 5 entries are listed." in r.body


def test_every_page_of_a_directory_with_odd_characters(nginx, signing, monkeypatch):
    """Later pages of a directory whose name holds `#`, `?`, `%`, `+` and a
    space are signed and listed like the first."""
    monkeypatch.setattr(Paged, "total", 5)
    monkeypatch.setattr(Paged, "per_page", 2)
    with harness.serve_http(Paged) as srv:
        start_listing(nginx, signing, srv.server_address[1], {"/d/": ""})
        Paged.calls.clear()
        r = nginx.request("GET", "/d/a%23b%3Fc%25d%2Be%20f/")
        assert r.status == 200, r
        names = [t for _, t in parse(r.body).links]
        assert names == ["../"] + [f"k{i:07d}" for i in range(5)], (names, Paged.calls)
        assert b"Only the first" not in r.body
        assert len(Paged.calls) == 3, Paged.calls
        for c in Paged.calls:
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(c).query)
            assert q["prefix"] == ["d/a#b?c%d+e f/"], c


def test_index_object_else_the_listing(nginx, s3, signing, recorder, listed):
    s3.put("small/deeper/index.html", b"<h1>deeper</h1>\n")
    up = recorder.port
    nginx.write_config(f"""
    proxy_cache_path {nginx.prefix}/cache levels=1:2 keys_zone=site:1m max_size=16m;
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        location /site/ {{
            aws_s3_index index.html;
            aws_s3_autoindex on;
            aws_sign;
            proxy_cache site;
            proxy_cache_valid 200 404 1h;
            add_header X-Cache $upstream_cache_status;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    # an index object: it is the answer
    r = nginx.request("GET", "/site/small/deeper/")
    assert r.status == 200 and r.body == b"<h1>deeper</h1>\n", r
    assert list_requests(recorder) == []
    # none: S3's 404 for it becomes the directory's listing
    for attempt in ("MISS", "HIT"):
        recorder.clear()
        r = nginx.request("GET", "/site/small/")
        assert r.status == 200, r
        assert r.header("Content-Type") == "text/html; charset=utf-8", r
        assert r.header("X-Cache") == attempt, r
        page = parse(r.body)
        assert page.title == "Index of /site/small/"
        assert sorted(t for _, t in page.links) == sorted(["../", "deeper/", "one.txt", "two words.txt"])
        if attempt == "MISS":
            paths = [rec.target for rec in recorder.requests]
            assert paths[0] == f"/{BUCKET}/small/index.html".encode(), paths
            assert len(list_requests(recorder)) == 1, paths
            check_signed(recorder)
        else:
            assert recorder.requests == []
    r = nginx.request("HEAD", "/site/small/")
    assert r.status == 200 and r.body == b"" and r.header("Content-Type") == "text/html; charset=utf-8", r
    # the index of a big directory falls back to its three pages
    r = nginx.request("GET", "/site/big/")
    assert r.status == 200 and len(parse(r.body).links) == 1 + N_FILES + len(DIRS), r
    # an object that does not exist stays a 404
    r = nginx.request("GET", "/site/small/nothing.txt")
    assert r.status == 404, r


def test_a_listing_subrequest_lists_only_where_its_location_says(nginx, signing, recorder, listed):
    """The listing after a missing index object is a subrequest for the
    directory: it lists only if the location it lands in has
    aws_s3_autoindex on, whatever the index object's location says."""
    up = recorder.port
    start_path_style(nginx, signing, f"""
        location / {{
            aws_s3_index index.html;
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location ~ \\.html$ {{
            aws_s3_index index.html;
            aws_s3_autoindex on;
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}$uri;
        }}""")
    recorder.clear()
    # refused when signed: no listing goes out (nginx closes the connection)
    head, body = fetch_raw(nginx.port, "/small/")
    assert b"one.txt" not in body and b"Index of" not in body, (head, body)
    assert list_requests(recorder) == [], [rec.target for rec in recorder.requests]
    assert "a listing in a location without aws_s3_autoindex on" in nginx.error_log()


class ManyKeys(BaseHTTPRequestHandler):
    """A stand-in S3 with 100,000 keys under d/, listed 1000 at a time (the
    continuation token is the index of the next key)."""

    protocol_version = "HTTP/1.1"
    total = 100_000
    pages = 0

    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        start = int(q.get("continuation-token", ["0"])[0])
        n = min(int(q["max-keys"][0]), self.total - start)
        ManyKeys.pages += 1
        parts = ['<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name>'
                 f"<Prefix>d/</Prefix><KeyCount>{n}</KeyCount><MaxKeys>1000</MaxKeys>"]
        if start:
            parts.append(f"<ContinuationToken>{start}</ContinuationToken>")
        more = start + n < self.total
        parts.append(f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>")
        for i in range(start, start + n):
            parts.append(f"<Contents><Key>d/key-{i:06d}-&amp;-&lt;x&gt;.bin</Key>"
                         "<LastModified>2026-12-02T10:11:12.000Z</LastModified>"
                         f"<Size>{i}</Size><StorageClass>STANDARD</StorageClass></Contents>")
        if more:
            parts.append(f"<NextContinuationToken>{start + n}</NextContinuationToken>")
        send_listing(self, parts)

    def log_message(self, *a):
        pass


def worker_hwm_kib(ng) -> int:
    [pid] = harness.worker_pids(ng)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_stays_bounded_for_100000_keys(nginx, signing):
    """100 pages of 1000 keys stream through one worker to a slow client:
    its peak RSS grows by a few MiB (the pages' subrequests), not with the
    14 MB of HTML; the next page is asked for once the client has taken
    the one before."""
    with harness.serve_http(ManyKeys) as srv:
        port = srv.server_address[1]
        start_listing(nginx, signing, port, {"/d/": "aws_s3_autoindex_max_entries 1000000;",
                                             "/small/": "aws_s3_autoindex_max_entries 1000;"})
        assert nginx.request("GET", "/small/").status == 200  # warm the worker
        before = worker_hwm_kib(nginx)
        ManyKeys.pages = 0
        # a slow client: a small receive window, nothing read for a while
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(60)
        s.connect(("127.0.0.1", nginx.port))
        s.sendall(b"GET /d/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(2)
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        after = worker_hwm_kib(nginx)
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        page = harness._decode_chunked(body)
        links = parse(page).links
        assert len(links) == 1 + 100_000
        assert links[1] == ("key-000000-%26-%3Cx%3E.bin", "key-000000-&-<x>.bin")
        assert links[-1][1] == "key-099999-&-<x>.bin"
        assert ManyKeys.pages == 100
        growth = (after - before) / 1024
        print(f"\nworker VmHWM before {before} KiB, after {after} KiB, growth {growth:.1f} MiB "
              f"for a listing of 100000 keys, {len(page)} bytes of HTML")
        assert growth < 8, growth


class MiniS3(BaseHTTPRequestHandler):
    """Path-style GET of objects and ListObjectsV2 over a few keys, as AWS
    S3 answers them (a key that is only a prefix is a 404 NoSuchKey; s3s-fs,
    whose keys are files, answers 500 for it)."""

    protocol_version = "HTTP/1.1"
    keys = {"small/one.txt": b"one\n", "small/deeper/three.txt": b"three\n",
            "odd/a?b%c #d/x.txt": b"x\n"}

    def do_GET(self):
        self._answer(head=False)

    def do_HEAD(self):
        self._answer(head=True)

    def _answer(self, head):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        assert path.startswith(f"/{BUCKET}/") or path == f"/{BUCKET}"
        key = path[len(BUCKET) + 2:]
        q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if not key and q.get("list-type") == ["2"]:
            prefix = q["prefix"][0]
            entries = []
            for k in sorted(self.keys):
                if k.startswith(prefix):
                    rest = k[len(prefix):]
                    entries.append(prefix + rest.split("/")[0] + "/" if "/" in rest else k)
            entries = sorted(set(entries))[: int(q["max-keys"][0])]
            xml = "".join(
                f"<CommonPrefixes><Prefix>{e}</Prefix></CommonPrefixes>" if e.endswith("/")
                else f"<Contents><Key>{e}</Key><Size>1</Size></Contents>" for e in entries)
            body = (f"<ListBucketResult><Prefix>{prefix}</Prefix><KeyCount>{len(entries)}</KeyCount>"
                    f"<IsTruncated>false</IsTruncated>{xml}</ListBucketResult>").encode()
            status = 200
        elif key in self.keys:
            body, status = self.keys[key], 200
        else:
            body = b"<Error><Code>NoSuchKey</Code><Key>" + key.encode() + b"</Key></Error>"
            status = 404
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_append_slash(nginx, signing, request):
    with harness.serve_http(MiniS3) as srv:
        recorder = harness.RecordingProxy(srv.server_address[1])
        request.node.__dict__.setdefault("aws_recorders", []).append(recorder)
        try:
            append_slash(nginx, signing, recorder)
        finally:
            recorder.close()


def append_slash(nginx, signing, recorder):
    up = recorder.port
    nginx.write_config(f"""
    proxy_cache_path {nginx.prefix}/cache levels=1:2 keys_zone=slash:1m max_size=16m;
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        location /site/ {{
            aws_s3_append_slash on;
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location /cached/ {{
            aws_s3_append_slash on;
            aws_sign;
            proxy_cache slash;
            proxy_cache_valid 200 404 1h;
            add_header X-Cache $upstream_cache_status always;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
        location /plain/ {{
            aws_sign;
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    base = f"http://127.0.0.1:{nginx.port}"
    # a "directory" without its slash: 301 to it, arguments kept
    for method in ("GET", "HEAD"):
        recorder.clear()
        r = nginx.request(method, "/site/small")
        assert r.status == 301 and r.header("Location") == base + "/site/small/", r
        targets = [rec.target for rec in recorder.requests]
        assert targets == [f"/{BUCKET}/small".encode(),
                           f"/{BUCKET}/?delimiter=%2F&list-type=2&max-keys=1&prefix=small%2F".encode()], targets
        check_signed(recorder)
    r = nginx.request("GET", "/site/small?x=1&y=2")
    assert r.status == 301 and r.header("Location") == base + "/site/small/?x=1&y=2", r
    # a name with `?`, `%`, a space and `#`: the Location names that directory
    r = nginx.request("GET", "/site/odd/a%3Fb%25c%20%23d")
    assert r.status == 301 and r.header("Location") == base + "/site/odd/a%3Fb%25c%20%23d/", r
    # a nested one
    r = nginx.request("GET", "/site/small/deeper")
    assert r.status == 301 and r.header("Location") == base + "/site/small/deeper/", r
    # nothing there: S3's 404, whole
    r = nginx.request("GET", "/site/small/nothing")
    assert r.status == 404 and b"NoSuchKey" in r.body, r
    assert int(r.header("Content-Length")) == len(r.body)
    r = nginx.request("HEAD", "/site/small/nothing")
    assert r.status == 404 and r.body == b"", r
    # objects are objects
    r = nginx.request("GET", "/site/small/one.txt")
    assert r.status == 200 and r.body == b"one\n", r
    # with a cache: the same answers, the second time from it
    for attempt in ("MISS", "HIT"):
        recorder.clear()
        r = nginx.request("GET", "/cached/small")
        assert r.status == 301 and r.header("Location") == base + "/cached/small/", r
        r = nginx.request("GET", "/cached/small/nothing")
        assert r.status == 404 and b"NoSuchKey" in r.body and r.header("X-Cache") == attempt, r
        if attempt == "HIT":
            assert recorder.requests == []
    # off by default
    r = nginx.request("GET", "/plain/small")
    assert r.status == 404, r


def test_a_raw_dot_segment_target_is_no_way_around_the_listing_rules(nginx, signing, recorder, listed):
    # `GET /bucket/x/..`: nginx's $uri is `/bucket/`, a listing page, but
    # the proxy sends the client's target as it is, and a server that
    # resolves dot segments reads the bucket itself. Without
    # aws_s3_listing on, it is refused, not sent.
    start_path_style(nginx, signing, f"""
        location /{BUCKET}/ {{
            aws_s3_autoindex on;
            aws_sign;
            proxy_pass http://127.0.0.1:{recorder.port};
        }}""")
    for target in [f"/{BUCKET}/x/..", f"/{BUCKET}/x/%2E%2E", f"/{BUCKET}/."]:
        head, _ = fetch_raw(nginx.port, target)
        assert head.startswith(b"HTTP/1.1 403"), (target, head)
    assert recorder.requests == []
    # the listing itself, and an object, still go
    head, body = fetch_raw(nginx.port, f"/{BUCKET}/")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert list_requests(recorder)
    check_signed(recorder)
