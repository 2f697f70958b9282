"""Hostile requests through nginx with the module signing: each is either
signed correctly (and answered by s3s-fs) or refused with a 4xx; never a
5xx from the module, never a crash, and the worker pid stays the same."""

from __future__ import annotations

import subprocess

import pytest

import harness
from harness import BUCKET


@pytest.fixture(scope="module")
def obj(s3):
    s3.put("bad/ok.txt", b"fine\n")


def worker_pids(ng: harness.Nginx) -> list[str]:
    out = subprocess.run(["pgrep", "-P", str(ng.proc.pid)], capture_output=True, text=True).stdout
    return sorted(out.split())


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
]


@pytest.mark.parametrize("mode", ["aws_sign", "variables"])
def test_hostile_requests(nginx, recorder, signing, obj, mode):
    sign = harness.sign_lines(mode)
    nginx.write_config(f"""
    large_client_header_buffers 4 16k;
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            {sign}
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
    }}""")
    nginx.start()
    pids = worker_pids(nginx)
    for name, target, headers in CASES:
        recorder.clear()
        resp = nginx.request("GET", target, headers)
        assert resp.status < 500, (name, resp)
        for rec in recorder.requests:
            # whatever reached S3 was signed, and signed right
            harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")
        if resp.status in (200, 206):
            assert recorder.requests, name
        assert worker_pids(nginx) == pids, f"worker restarted after {name}"
    errors = [l for l in nginx.error_log().splitlines() if "aws_auth" in l and "[error]" in l]
    assert errors == [], errors
