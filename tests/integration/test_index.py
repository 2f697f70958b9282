"""`aws_s3_index`: a GET or HEAD of a "directory" (a URI ending in `/`)
gets its index object, through the same location matching, signing and
caching as any object; other methods and URIs are untouched; `off` turns
it off below; without it, a directory is what it was (S3's own answer).
Every request that reached S3 is checked against botocore."""

from __future__ import annotations

import pytest

import harness
from harness import BUCKET

MODES = ["aws_sign", "variables"]
PAGES = {
    "site/index.html": b"<h1>home</h1>\n",
    "site/docs/index.html": b"<h1>docs</h1>\n",
    "site/a b+c/index.html": b"<h1>odd dir</h1>\n",
    "site/plain/other.html": b"no index here\n",
    "site/custom/home.htm": b"custom name\n",
}


@pytest.fixture(scope="module")
def pages(s3):
    for key, body in PAGES.items():
        s3.put(key, body)


def config(ng, signing, recorder, mode: str) -> str:
    up = recorder.port
    return f"""
    proxy_cache_path {ng.prefix}/cache levels=1:2 keys_zone=pages:1m max_size=8m;
    server {{
        listen 127.0.0.1:{ng.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        aws_s3_index index.html;
        location / {{
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up};
        }}
        location /www/ {{
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/site/;
        }}
        location /custom/ {{
            aws_s3_index home.htm;
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/site/custom/;
        }}
        location /noindex/ {{
            aws_s3_index off;
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/site/;
        }}
        location /cached/ {{
            proxy_cache pages;
            proxy_cache_valid 200 1h;
            add_header X-Cache $upstream_cache_status;
            {harness.sign_lines(mode)}
            proxy_pass http://127.0.0.1:{up}/{BUCKET}/site/;
        }}
    }}"""


def checked(recorder, s3):
    for rec in recorder.requests:
        harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")
    return recorder.requests


@pytest.mark.parametrize("mode", MODES)
def test_directories_get_their_index(nginx, s3, signing, recorder, pages, mode):
    nginx.write_config(config(nginx, signing, recorder, mode))
    nginx.start()
    cases = [
        (f"/{BUCKET}/site/", PAGES["site/index.html"], f"/{BUCKET}/site/index.html"),
        (f"/{BUCKET}/site/docs/", PAGES["site/docs/index.html"], f"/{BUCKET}/site/docs/index.html"),
        (f"/{BUCKET}/site/a%20b+c/", PAGES["site/a b+c/index.html"],
         f"/{BUCKET}/site/a%20b%2Bc/index.html"),
        ("/www/", PAGES["site/index.html"], f"/{BUCKET}/site/index.html"),
        ("/www/docs/?x=1", PAGES["site/docs/index.html"], f"/{BUCKET}/site/docs/index.html"),
        ("/custom/", PAGES["site/custom/home.htm"], f"/{BUCKET}/site/custom/home.htm"),
    ]
    for target, body, wire in cases:
        recorder.clear()
        r = nginx.request("GET", target)
        assert r.status == 200 and r.body == body, (target, r)
        sent = checked(recorder, s3)
        assert [rec.path.decode() for rec in sent] == [wire], (target, sent)
        r = nginx.request("HEAD", target)
        assert r.status == 200 and r.body == b"" and int(r.header("Content-Length")) == len(body)
    # no index object: S3's own 404 (NoSuchKey)
    recorder.clear()
    r = nginx.request("GET", "/www/plain/")
    assert r.status == 404, r
    assert [rec.path for rec in checked(recorder, s3)] == [f"/{BUCKET}/site/plain/index.html".encode()]
    # objects are objects; other methods are not redirected
    assert nginx.request("GET", "/www/plain/other.html").body == PAGES["site/plain/other.html"]
    recorder.clear()
    r = nginx.request("DELETE", "/www/docs/")
    assert r.status == 405, r
    assert recorder.requests == []
    # off: the directory itself goes to S3, as an object key ending in /
    # (AWS answers 404; s3s-fs, whose keys are files, 500)
    recorder.clear()
    r = nginx.request("GET", "/noindex/docs/")
    assert r.status in (404, 500) and b"docs" not in r.body, r
    assert [rec.path for rec in checked(recorder, s3)] == [f"/{BUCKET}/site/docs/".encode()]


@pytest.mark.parametrize("mode", MODES)
def test_index_pages_are_cached_under_the_directory(nginx, s3, signing, recorder, pages, mode):
    nginx.write_config(config(nginx, signing, recorder, mode))
    nginx.start()
    r = nginx.request("GET", "/cached/docs/")
    assert r.status == 200 and r.body == PAGES["site/docs/index.html"], r
    assert r.header("X-Cache") == "MISS", r
    recorder.clear()
    r = nginx.request("GET", "/cached/docs/")
    assert r.status == 200 and r.body == PAGES["site/docs/index.html"], r
    assert r.header("X-Cache") == "HIT", r
    assert recorder.requests == []
    # the default proxy_cache_key is the URI sent upstream: the object
    # under its own name is the same cache entry
    r = nginx.request("GET", "/cached/docs/index.html")
    assert r.status == 200 and r.body == PAGES["site/docs/index.html"] and r.header("X-Cache") == "HIT"
    assert recorder.requests == []


def test_without_credentials_nothing_changes(nginx):
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        aws_s3_index index.html;
        location / {{ return 200 "uri $uri\\n"; }}
    }}""")
    nginx.start()
    r = nginx.request("GET", "/dir/")
    assert r.status == 200 and r.body == b"uri /dir/\n", r
