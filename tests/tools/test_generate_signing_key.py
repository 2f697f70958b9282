"""scripts/generate_signing_key: the C project's CLI and output."""

import base64
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "scripts" / "generate_signing_key"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, check=True)


def test_known_vector():
    out = run("-k", SECRET, "-r", "us-east-1", "-d", "20160902").stdout.splitlines()
    assert out == ["L4vRLWAO92X5L3Sqk5QydUSdB0nC9+1wfqLMOKLbRp4=", "20160902/us-east-1/s3/aws4_request"]


def test_service_and_hex():
    out = run("-k", SECRET, "-r", "us-east-1", "-s", "service", "-d", "20150830", "--no-base64").stdout.splitlines()
    assert out[1] == "20150830/us-east-1/service/aws4_request"
    # The C module's own test key is this derivation, base64-encoded.
    assert base64.b64encode(bytes.fromhex(out[0])).decode() == "k4EntTNoEN22pdavRF/KyeNx+e1BjtOGsCKu2CkBvnU="


def test_days_file(tmp_path):
    target = tmp_path / "keys"
    run("-k", SECRET, "-r", "us-east-1", "-d", "20160901", "--days", "3", "-o", str(target))
    lines = [l for l in target.read_text().splitlines() if not l.startswith("#")]
    assert [l.split()[0] for l in lines] == [f"2016090{d}/us-east-1/s3/aws4_request" for d in (1, 2, 3)]
    assert lines[1].split()[1] == "L4vRLWAO92X5L3Sqk5QydUSdB0nC9+1wfqLMOKLbRp4="
    assert target.stat().st_mode & 0o777 == 0o640


def test_bad_date_is_refused():
    p = subprocess.run([sys.executable, str(TOOL), "-k", "x", "-r", "us-east-1", "-d", "20161301"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "YYYYMMDD" in p.stderr
