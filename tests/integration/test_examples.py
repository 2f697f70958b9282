"""Every config in examples/ passes `nginx -t` with the module."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").rglob("*.conf"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("conf", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_passes_nginx_t(conf, nginx_bin, module_path, tmp_path):
    text = conf.read_text()
    assert "modules/ngx_http_aws_auth_module.so" in text
    text = text.replace("modules/ngx_http_aws_auth_module.so", module_path)
    text = text.replace("/var/cache/nginx/", f"{tmp_path}/cache/")
    (tmp_path / "logs").mkdir()
    (tmp_path / "cache").mkdir()
    if "aws_signing_key_file aws-keys;" in text:
        # made the way the example's comment says
        subprocess.run([str(ROOT / "scripts" / "generate_signing_key"), "-k", "EXAMPLESECRET",
                        "-r", "eu-west-1", "--days", "3", "-o", str(tmp_path / "aws-keys")],
                       check=True, capture_output=True, timeout=30)
    target = tmp_path / conf.name
    target.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n" + text)
    p = subprocess.run([nginx_bin, "-p", str(tmp_path), "-c", str(target), "-t"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "test is successful" in p.stderr
    # an example is a configuration to copy: nothing in it for nginx to warn about
    assert "[warn]" not in p.stderr, p.stderr


def test_key_rotation_script_writes_a_week_of_keys_and_reloads(tmp_path):
    """examples/key-rotation/aws-keys-rotate.sh with the repository's key
    tool and a stand-in nginx that records its calls."""
    import datetime as dt

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "nginx-calls"
    (bin_dir / "nginx").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "nginx").chmod(0o755)
    secret = tmp_path / "aws-secret"
    secret.write_text("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n")
    key_file = tmp_path / "aws-keys"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AWS_SECRET_FILE": str(secret),
        "AWS_REGION": "eu-west-1",
        "KEY_FILE": str(key_file),
        "KEYTOOL": str(ROOT / "scripts" / "generate_signing_key"),
    }
    script = ROOT / "examples" / "key-rotation" / "aws-keys-rotate.sh"
    p = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = key_file.read_text().split("\n")
    scopes = [l.split()[0] for l in lines if l.strip() and not l.startswith("#")]
    today = dt.datetime.now(dt.timezone.utc).date()
    want = [(today + dt.timedelta(days=d)).strftime("%Y%m%d") + "/eu-west-1/s3/aws4_request"
            for d in range(-1, 7)]
    assert scopes == want
    assert key_file.stat().st_mode & 0o004 == 0
    assert calls.read_text().splitlines() == ["-t -q", "-s reload"]
