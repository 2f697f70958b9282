"""Every config in examples/ passes `nginx -t` with the module."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.conf"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("conf", EXAMPLES, ids=lambda p: p.name)
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
