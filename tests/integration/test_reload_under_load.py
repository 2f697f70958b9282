"""Key rotation under load: wrk drives signed GETs for 20 s while the key
file is replaced atomically and nginx reloaded (HUP) every 2 s. Every
response must be 2xx and no worker may crash."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import harness
from harness import BUCKET

DURATION = int(os.environ.get("RELOAD_LOAD_SECONDS", "20"))
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
    assert nginx.request("GET", f"/{BUCKET}/{OBJ_KEY}").body == OBJ_BODY
    total, reloads, out = harness.wrk_with_reloads(
        nginx, f"/{BUCKET}/{OBJ_KEY}", DURATION, lambda n: write_keys(keys, -1 if n % 2 else 0))
    print(f"\n{reloads} reloads\n{out}")
    assert total > 0, out
    assert nginx.request("GET", f"/{BUCKET}/{OBJ_KEY}").body == OBJ_BODY
