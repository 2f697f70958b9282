"""Hostile requests through nginx with the module signing, in front of a
two-server upstream: each is either signed correctly (and answered by
s3s-fs) or refused with a 4xx; never a 5xx, never a crash, the worker pid
stays the same, and after each one other clients' GETs are all answered,
by both servers (nothing marked an upstream server failed)."""

from __future__ import annotations

import pytest

import harness
from harness import BUCKET


@pytest.fixture(scope="module")
def obj(s3):
    s3.put("bad/ok.txt", b"fine\n")


def many_args(n: int) -> str:
    return "&".join(f"a{i}=v{i}" for i in range(n))


# (id, request target, extra headers)
CASES = [
    ("nul-in-path", f"/{BUCKET}/bad/a%00b", []),
    ("nul-in-query", f"/{BUCKET}/bad/ok.txt?x=%00", []),
    ("invalid-utf8-path", f"/{BUCKET}/bad/%FF%FE", []),
    ("raw-invalid-utf8-path", f"/{BUCKET}/bad/\xff\xfe".encode("latin-1"), []),
    ("overlong-percent", f"/{BUCKET}/bad/%C0%AF..%C0%AFetc", []),
    ("truncated-percent", f"/{BUCKET}/bad/ok.txt%", []),
    ("bad-hex-percent", f"/{BUCKET}/bad/%zz%4", []),
    ("percent-in-query-key", f"/{BUCKET}/bad/ok.txt?%=1&%%=2&%4=3", []),
    ("8k-path", f"/{BUCKET}/bad/" + "x" * 8000, []),
    ("10000-query-args", f"/{BUCKET}/bad/ok.txt?" + many_args(10000), []),
    ("duplicate-query-keys", f"/{BUCKET}/bad/ok.txt?a=2&a=1&a=&a", []),
    ("empty-query-keys", f"/{BUCKET}/bad/ok.txt?=&=x&&&", []),
    ("only-question-mark", f"/{BUCKET}/bad/ok.txt?", []),
    ("plus-and-space-query", f"/{BUCKET}/bad/ok.txt?q=a+b%20c", []),
    ("dot-segments", f"/{BUCKET}/bad/../bad/./ok.txt", []),
    ("control-char-header", f"/{BUCKET}/bad/ok.txt", [("x-custom", "a\x01b\x7fc")]),
    ("tab-in-header", f"/{BUCKET}/bad/ok.txt", [("x-custom", "a\tb")]),
    ("amz-header-control-chars", f"/{BUCKET}/bad/ok.txt", [("x-amz-meta-x", "\x02\x03")]),
    ("huge-header", f"/{BUCKET}/bad/ok.txt", [("x-big", "y" * 7000)]),
    ("many-headers", f"/{BUCKET}/bad/ok.txt", [(f"x-h{i}", "v") for i in range(90)]),
    ("duplicate-host-like", f"/{BUCKET}/bad/ok.txt", [("X-Forwarded-Host", "evil")]),
    ("bucket-listing", f"/{BUCKET}/?list-type=2", []),
    ("bucket-policy", f"/{BUCKET}?policy", []),
    ("another-bucket", "/another-bucket/ok.txt", []),
    ("dot-climb", f"/{BUCKET}/../another-bucket/ok.txt", []),
    ("encoded-dot-climb", f"/{BUCKET}/%2e%2e%2fanother-bucket/ok.txt", []),
    ("raw-fragment", f"/{BUCKET}/bad/ok.txt#/../../x", []),
    ("x-amz-query", f"/{BUCKET}/bad/ok.txt?X-Amz-Signature=0&X-Amz-Expires=604800", []),
    ("response-override", f"/{BUCKET}/bad/ok.txt?response-content-type=text/html", []),
    ("client-authorization", f"/{BUCKET}/bad/ok.txt", [("Authorization", "AWS4-HMAC-SHA256 x")]),
]


@pytest.mark.parametrize("mode", ["aws_sign", "variables"])
def test_hostile_requests(nginx, recorder, recorder2, signing, obj, mode):
    sign = harness.sign_lines(mode)
    nginx.write_config(f"""
    large_client_header_buffers 4 16k;
    upstream pair {{
        server 127.0.0.1:{recorder.port} max_fails=1 fail_timeout=60s;
        server 127.0.0.1:{recorder2.port} max_fails=1 fail_timeout=60s;
    }}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            {sign}
            proxy_set_header Host 127.0.0.1;
            proxy_pass http://pair;
        }}
    }}""")
    nginx.start()
    pids = harness.worker_pids(nginx)
    for name, target, headers in CASES:
        recorder.clear()
        recorder2.clear()
        resp = nginx.request("GET", target, headers)
        assert resp.status < 500, (name, resp)
        for rec in recorder.requests + recorder2.requests:
            # whatever reached S3 was signed, and signed right
            harness.check_signed_request(rec, expect_host="127.0.0.1")
            assert b"AWS4-HMAC-SHA256 x" not in rec.raw_head
            assert b"X-Amz-Signature" not in rec.target and b"response-content-type" not in rec.target
        if resp.status in (200, 206):
            assert recorder.requests or recorder2.requests, name
        assert harness.worker_pids(nginx) == pids, f"worker restarted after {name}"
        # other clients: all answered, by both servers
        served = (len(recorder.requests), len(recorder2.requests))
        for _ in range(2):
            ok = nginx.request("GET", f"/{BUCKET}/bad/ok.txt")
            assert ok.status == 200 and ok.body == b"fine\n", (name, ok)
        assert (len(recorder.requests) - served[0], len(recorder2.requests) - served[1]) == (1, 1), name
    log = nginx.error_log()
    assert "upstream server temporarily disabled" not in log and "no live upstreams" not in log
    # a refusal says why in one line; nothing else goes wrong
    errors = [l for l in log.splitlines() if "aws_auth" in l and "[error]" in l and "refused" not in l]
    assert errors == [], errors
