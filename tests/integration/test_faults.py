"""Faults around the module: S3 unreachable or silent (nginx's own 502 and
504 come through, the module adds nothing), a key file replaced by garbage
before a reload (the running configuration keeps serving, the reload is
refused with an [emerg]), and a clock that jumps (requests are signed
with the time they are made)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import harness
from harness import BUCKET
from test_keys import day, key_file


@pytest.fixture(scope="module")
def obj(s3):
    s3.put("faults/ok.txt", b"still here\n")


def test_s3_down_gives_nginx_502(nginx, signing, free_port):
    dead = free_port()
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{ aws_sign; proxy_pass http://127.0.0.1:{dead}; }}
    }}""")
    nginx.start()
    resp = nginx.request("GET", f"/{BUCKET}/faults/ok.txt")
    assert resp.status == 502, resp
    log = nginx.error_log()
    assert "connect() failed" in log
    assert not [l for l in log.splitlines() if "aws_auth" in l and "[error]" in l]


@pytest.fixture
def silent_server():
    """Accepts connections, reads, never answers."""
    with harness.silent_server() as (port, _):
        yield port


def test_s3_silent_gives_nginx_504(nginx, signing, silent_server):
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            aws_sign;
            proxy_read_timeout 1s;
            proxy_pass http://127.0.0.1:{silent_server};
        }}
    }}""")
    nginx.start()
    t0 = time.monotonic()
    resp = nginx.request("GET", f"/{BUCKET}/faults/ok.txt")
    assert resp.status == 504, resp
    assert time.monotonic() - t0 < 10
    assert "upstream timed out" in nginx.error_log()


def test_garbage_key_file_on_reload_keeps_the_old_configuration(nginx, recorder, obj, tmp_path):
    keys = key_file(tmp_path / "aws-keys", [day(0), day(1)])
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        aws_access_key {harness.ACCESS_KEY};
        aws_signing_key_file {keys};
        location / {{ aws_sign; proxy_pass http://127.0.0.1:{recorder.port}; }}
    }}""")
    nginx.start()
    assert nginx.request("GET", f"/{BUCKET}/faults/ok.txt").status == 200
    keys.write_text("this is not a key file\n\x00\xff garbage\n")
    os.kill(nginx.proc.pid, signal.SIGHUP)
    harness.wait_until(lambda: "[emerg]" in nginx.error_log() and "aws_signing_key_file" in nginx.error_log(),
                       what="the reload's [emerg] about the key file")
    for _ in range(5):
        resp = nginx.request("GET", f"/{BUCKET}/faults/ok.txt")
        assert resp.status == 200 and resp.body == b"still here\n", resp
    harness.check_signed_request(recorder.last())
    assert nginx.running


def test_clock_jump_signs_with_the_new_time(nginx, recorder, signing, obj, tmp_path):
    """libfaketime moves nginx's clock 2 hours mid-run, ahead in the first
    half of the UTC day and back in the second, so the key's day stays the
    same: every request carries
    the time it was made, which s3s-fs accepts only within 15 minutes of its
    own clock, so the jump shows as a 403 RequestTimeTooSkewed, and
    the signature still matches the request."""
    lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    if not os.path.exists(lib):
        pytest.fail("libfaketime missing (scripts/test installs the faketime package)", pytrace=False)
    step = 2 if time.gmtime().tm_hour < 12 else -2
    stamp = tmp_path / "faketime"
    stamp.write_text("+0\n")
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{ aws_sign; proxy_pass http://127.0.0.1:{recorder.port}; }}
    }}""", main="env FAKETIME_TIMESTAMP_FILE;\nenv FAKETIME_NO_CACHE;\nenv FAKETIME_DONT_FAKE_MONOTONIC;")
    # (nginx clears the workers' environment but for TZ and `env` names)
    nginx.start(env={"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(stamp),
                     "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    assert nginx.request("GET", f"/{BUCKET}/faults/ok.txt").status == 200
    before = recorder.last().header("x-amz-date")
    stamp.write_text(f"{step:+d}h\n")
    time.sleep(1.2)  # nginx's cached time is refreshed by the next event
    recorder.clear()
    resp = nginx.request("GET", f"/{BUCKET}/faults/ok.txt")
    assert resp.status == 403 and b"RequestTimeTooSkewed" in resp.body, resp
    rec = recorder.last()
    after = rec.header("x-amz-date")
    assert after[:8] == before[:8] and int(after[9:11]) - int(before[9:11]) in (step - 1, step, step + 1), (
        before, after)
    harness.check_signed_request(rec)
