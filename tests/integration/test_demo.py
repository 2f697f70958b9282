"""`scripts/demo`, the README's first command, does what it says: a direct
request to the private bucket is refused, the same object through nginx is
served, and nginx has nothing to warn about in the demo's configuration."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_serves_the_private_object_through_nginx():
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.expanduser("~/.cargo/bin"), env.get("PATH", "")])
    # one stream, in order: the script's own lines go to stderr, curl's to stdout
    p = subprocess.run([str(ROOT / "scripts" / "demo")], cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    out = p.stdout
    assert p.returncode == 0, out
    lines = out.splitlines()
    direct = lines.index("==> direct, unsigned request to s3s-fs (expected: 403):")
    assert lines[direct + 1].strip() == "HTTP 403", out
    assert lines[-1].startswith("Hello from a private S3 bucket, signed by nginx ("), out
    for level in ("[warn]", "[error]", "[crit]", "[alert]", "[emerg]"):
        assert level not in out, out
