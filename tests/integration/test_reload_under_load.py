"""Key rotation under load: wrk drives signed GETs for 30 s while the key
file is replaced atomically and nginx reloaded (HUP) every 2 s. Every
response must be 2xx and no worker may crash."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import harness
from harness import BUCKET

DURATION = int(os.environ.get("RELOAD_LOAD_SECONDS", "30"))
OBJ_KEY = "load/object.bin"
OBJ_BODY = os.urandom(1024)


def write_keys(path: Path, first_offset: int) -> None:
    today = dt.datetime.now(dt.timezone.utc).date()
    lines = [f"# rotation {time.time()}"]
    for i in range(first_offset, first_offset + 4):
        d = (today + dt.timedelta(days=i)).strftime("%Y%m%d")
        cfg = harness.SigningConfig(date=d)
        lines.append(f"{cfg.scope} {cfg.signing_key_b64}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    os.replace(tmp, path)


def test_reload_every_2s_under_load(nginx, s3, tmp_path):
    wrk = shutil.which("wrk")
    if not wrk:
        pytest.fail("wrk is not installed (scripts/common.sh installs Debian's wrk)")
    s3.put(OBJ_KEY, OBJ_BODY)
    keys = tmp_path / "keys"
    write_keys(keys, -1)
    nginx.log_level = "info"  # a debug log of 30 s of load would be huge
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        access_log off;
        aws_access_key {harness.ACCESS_KEY};
        aws_signing_key_file {keys};
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{s3.port};
        }}
    }}""")
    nginx.start()
    url = f"http://127.0.0.1:{nginx.port}/{BUCKET}/{OBJ_KEY}"
    assert nginx.request("GET", f"/{BUCKET}/{OBJ_KEY}").body == OBJ_BODY
    # One request per connection: a graceful reload closes idle keep-alive
    # connections, and a client racing that close sees a read error that
    # has nothing to do with signing (HTTP keep-alive semantics).
    load = subprocess.Popen([wrk, "-t1", "-c8", f"-d{DURATION}s", "--latency",
                             "-H", "Connection: close", url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reloads = 0
    start = time.time()
    while load.poll() is None and time.time() - start < DURATION + 10:
        time.sleep(2)
        write_keys(keys, -1 if reloads % 2 else 0)
        os.kill(nginx.proc.pid, signal.SIGHUP)
        reloads += 1
    out, _ = load.communicate(timeout=DURATION + 30)
    print(f"\n{reloads} reloads\n{out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    assert total > 0, out
    assert "Non-2xx or 3xx responses" not in out, out
    assert "Socket errors" not in out, out
    assert reloads >= DURATION // 2 - 2
    log = nginx.error_log()
    assert "exited on signal" not in log and "[alert]" not in log, log[-3000:]
    assert "[emerg]" not in log, log[-3000:]
    assert nginx.request("GET", f"/{BUCKET}/{OBJ_KEY}").body == OBJ_BODY
