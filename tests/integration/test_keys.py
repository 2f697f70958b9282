"""Keys that never die at midnight (issue 3): key files, coverage warnings,
the missing-key error, session tokens, the key tool's --days output, and
the switch to the next day's key at 00:00 UTC under a faked clock."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness
from harness import BUCKET

ROOT = Path(__file__).resolve().parents[2]
KEY_TOOL = ROOT / "scripts" / "generate_signing_key"
OBJ_KEY = "keys/object.txt"
OBJ_BODY = b"signed with a key from a key file\n"
OBJ_PATH = f"/{BUCKET}/{harness.s3_encode_key(OBJ_KEY)}"
TOKEN = harness.SESSION_TOKEN


@pytest.fixture(scope="module")
def obj(s3):
    s3.put(OBJ_KEY, OBJ_BODY)
    return OBJ_KEY


def day(offset: int, base: dt.date | None = None) -> str:
    base = base or dt.datetime.now(dt.timezone.utc).date()
    return (base + dt.timedelta(days=offset)).strftime("%Y%m%d")


def key_file(path: Path, days: list[str], secret: str = harness.SECRET_KEY, mode: int = 0o600) -> Path:
    lines = ["# test keys"]
    for d in days:
        cfg = harness.SigningConfig(secret_key=secret, date=d)
        lines.append(f"{cfg.scope} {cfg.signing_key_b64}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


def server(ng, directives: str, upstream_port: int, extra: str = "") -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};
        aws_access_key {harness.ACCESS_KEY};
        {directives}
        location / {{
            aws_sign;
            add_header X-Key-Days-Left "$aws_key_days_left" always;
            {extra}
            proxy_pass http://127.0.0.1:{upstream_port};
        }}
    }}"""


def test_key_file_covering_yesterday_today_tomorrow(nginx, recorder, obj, tmp_path):
    f = key_file(tmp_path / "keys", [day(-1), day(0), day(1)])
    nginx.write_config(server(nginx, f"aws_signing_key_file {f};", recorder.port))
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    assert resp.header("x-key-days-left") == "1"
    parsed = harness.check_signed_request(recorder.last())
    assert parsed["date"] == day(0)
    # one more day than today: a coverage warning at load
    assert "signing keys end 1 day(s) after today" in nginx.error_log()


def test_key_file_without_today_gives_500_naming_the_date(nginx, recorder, obj, tmp_path):
    f = key_file(tmp_path / "keys", [day(-1), day(1), day(2)])
    nginx.write_config(server(nginx, f"aws_signing_key_file {f};", recorder.port))
    nginx.start()
    log = nginx.error_log()
    assert f"no signing key for today ({day(0)})" in log and "[warn]" in log
    for _ in range(3):
        assert nginx.request("GET", OBJ_PATH).status == 500
    assert recorder.requests == [], "an unsignable request reached S3"
    errors = [l for l in nginx.error_log().splitlines() if "[error]" in l and "no signing key" in l]
    assert errors and all(day(0) in l for l in errors)
    assert len(errors) < 3 or len({l[:19] for l in errors}) == len(errors), "not rate-limited"


@pytest.mark.parametrize("content, mode, expect", [
    (None, 0o600, "cannot read"),
    ("VALID", 0o644, "readable by every user"),
    ("20261301/us-east-1/s3/aws4_request AAAA\n", 0o600, ":1:"),
    ("# only a comment\n", 0o600, "no keys"),
    ("VALID\nnot a key line at all\n", 0o600, ":3:"),
])
def test_bad_key_files_fail_nginx_t(make_nginx, tmp_path, content, mode, expect):
    ng = make_nginx()
    f = tmp_path / "keys"
    if content is not None:
        if content.startswith("VALID"):
            key_file(f, [day(0)], mode=mode)
            content = f.read_text() + content[len("VALID"):].lstrip("\n")
        f.write_text(content)
        f.chmod(mode)
    ng.write_config(server(ng, f"aws_signing_key_file {f};", 9))
    rc, out = ng.test_config()
    assert rc != 0, out
    emerg = [l for l in out.splitlines() if "[emerg]" in l]
    assert emerg and "aws_signing_key_file" in emerg[0] and str(f) in emerg[0] and expect in emerg[0], out


def test_signing_key_and_key_file_in_one_block_fail(make_nginx, tmp_path, signing):
    ng = make_nginx()
    f = key_file(tmp_path / "keys", [day(0)])
    ng.write_config(server(ng, f"aws_signing_key_file {f};\n        aws_key_scope {signing.scope};\n"
                               f"        aws_signing_key {signing.signing_key_b64};", 9))
    rc, out = ng.test_config()
    assert rc != 0 and "aws_signing_key" in out, out


def test_key_tool_days_file_signs_requests(nginx, recorder, obj, tmp_path):
    out = tmp_path / "keys"
    subprocess.run([sys.executable, str(KEY_TOOL), "-k", harness.SECRET_KEY, "-r", harness.REGION,
                    "-d", day(-1), "--days", "7", "-o", str(out)], check=True)
    nginx.write_config(server(nginx, f"aws_signing_key_file {out};", recorder.port))
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 200, resp
    assert resp.header("x-key-days-left") == "5"
    harness.check_signed_request(recorder.last())


@pytest.mark.parametrize("how", ["inline", "file"])
def test_session_token_is_sent_and_signed(nginx, recorder, signing, obj, tmp_path, how):
    if how == "inline":
        token_conf = f'aws_session_token "{TOKEN}";'
    else:
        tf = tmp_path / "token"
        tf.write_text(TOKEN + "\n")
        tf.chmod(0o600)
        token_conf = f"aws_session_token_file {tf};"
    directives = "\n        ".join([f"aws_key_scope {signing.scope};",
                                    f"aws_signing_key {signing.signing_key_b64};", token_conf])
    nginx.write_config(server(nginx, directives, recorder.port))
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH, headers=[("X-Amz-Security-Token", "client-token")])
    assert resp.status == 200, resp
    rec = recorder.last()
    assert rec.values("x-amz-security-token") == [TOKEN.encode()]
    parsed = harness.check_signed_request(rec)
    assert "x-amz-security-token" in parsed["signed_headers"]
    assert TOKEN not in nginx.error_log()


def test_security_token_variable(nginx, signing, tmp_path):
    # This test prints the token into a response on purpose; nginx's own
    # debug log would then show it (its script engine logs values), so this
    # one instance logs at info level and the log check still applies.
    nginx.log_level = "info"
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        aws_access_key {harness.ACCESS_KEY};
        aws_key_scope {signing.scope};
        aws_signing_key {signing.signing_key_b64};
        location /token {{ aws_session_token "{TOKEN}"; return 200 "[$aws_security_token]"; }}
        location /none {{ return 200 "[$aws_security_token][$aws_key_days_left]"; }}
    }}""")
    nginx.start()
    assert nginx.request("GET", "/token").body == f"[{TOKEN}]".encode()
    assert nginx.request("GET", "/none").body == b"[][0]"


class _Echo(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        _Echo.seen.append((self.requestline, dict(self.headers)))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_midnight_switches_to_next_days_key(nginx, tmp_path):
    """libfaketime starts nginx's clock 3 s before 00:00 UTC on a fixed day:
    the requests before midnight are signed with that day's key, those after
    with the next line of the key file."""
    if not os.path.exists(FAKETIME_LIB):
        pytest.fail("libfaketime is not installed (scripts/common.sh installs Debian's faketime)")
    first = dt.date(2031, 3, 14)
    d0, d1 = first.strftime("%Y%m%d"), day(1, first)
    f = key_file(tmp_path / "keys", [d0, d1])
    _Echo.seen = []
    with harness.serve_http(_Echo) as srv:
        nginx.write_config(server(nginx, f"aws_signing_key_file {f};", srv.server_address[1]))
        nginx.start(env={"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": "@2031-03-14 23:59:57",
                         "FAKETIME_DONT_RESET": "1", "TZ": "UTC"})
        dates = []
        deadline = time.time() + 15
        while time.time() < deadline:
            resp = nginx.request("GET", "/bucket/obj")
            assert resp.status == 200, resp
            amz = _Echo.seen[-1][1]["x-amz-date"]
            dates.append(amz)
            if amz[:8] == d1:
                break
            time.sleep(0.5)
        assert dates[0][:8] == d0 and dates[-1][:8] == d1, dates
        for line, headers in _Echo.seen:
            auth = headers["Authorization"]
            scope_day = auth.split("Credential=")[1].split("/")[1]
            assert scope_day == headers["x-amz-date"][:8], (auth, headers["x-amz-date"])
        # the signature of the first post-midnight request verifies with d1's key
        rec = harness.RecordedRequest.parse(
            (_Echo.seen[-1][0] + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in _Echo.seen[-1][1].items())
             + "\r\n").encode())
        harness.check_signed_request(rec)


def secret_file(path: Path, secret: str = harness.SECRET_KEY, mode: int = 0o600) -> Path:
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


def test_secret_mode_signs_and_never_logs_the_secret(nginx, recorder, obj, tmp_path):
    sf = secret_file(tmp_path / "secret")
    nginx.write_config(server(nginx, f"aws_secret_key_file {sf};\n        aws_region {harness.REGION};",
                              recorder.port))
    nginx.start()
    for _ in range(2):  # the second request uses the worker's cached key
        resp = nginx.request("GET", OBJ_PATH)
        assert resp.status == 200, resp
        assert resp.body == OBJ_BODY
        harness.check_signed_request(recorder.last())
    assert resp.header("x-key-days-left") is None or resp.header("x-key-days-left") == ""
    log = nginx.error_log()
    assert harness.SECRET_KEY not in log
    assert harness.SigningConfig().signing_key_b64 not in log


def test_secret_mode_key_equals_key_tool(nginx, tmp_path):
    """Secret mode derives exactly the key the key tool writes: two
    locations, one per mode, sign the same request identically."""
    sf = secret_file(tmp_path / "secret")
    kf = tmp_path / "keys"
    subprocess.run([sys.executable, str(KEY_TOOL), "-k", harness.SECRET_KEY, "-r", harness.REGION,
                    "-d", day(-1), "--days", "3", "-o", str(kf)], check=True)
    with harness.serve_http(_Echo) as srv:
        port = srv.server_address[1]
        nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        aws_access_key {harness.ACCESS_KEY};
        location /a/ {{ aws_secret_key_file {sf}; aws_region {harness.REGION}; aws_sign;
                        proxy_pass http://127.0.0.1:{port}/same/; }}
        location /b/ {{ aws_signing_key_file {kf}; aws_sign;
                        proxy_pass http://127.0.0.1:{port}/same/; }}
    }}""")
        nginx.start()
        for _ in range(5):
            _Echo.seen = []
            assert nginx.request("GET", "/a/x").status == 200
            assert nginx.request("GET", "/b/x").status == 200
            (la, ha), (lb, hb) = _Echo.seen
            assert la == lb
            if ha["x-amz-date"] == hb["x-amz-date"]:
                assert ha["Authorization"] == hb["Authorization"]
                break
        else:
            pytest.fail("the clock moved between the two requests five times")


@pytest.mark.parametrize("extra, expect", [
    ("", "aws_region"),
    ("aws_region us-east-1; aws_signing_key_file {kf};", "one key source"),
])
def test_secret_mode_config_errors(make_nginx, tmp_path, extra, expect):
    ng = make_nginx()
    sf = secret_file(tmp_path / "secret")
    kf = key_file(tmp_path / "keys", [day(0)])
    ng.write_config(server(ng, f"aws_secret_key_file {sf}; " + extra.format(kf=kf), 9))
    rc, out = ng.test_config()
    assert rc != 0 and expect in out, out


def test_world_readable_secret_file_fails(make_nginx, tmp_path):
    ng = make_nginx()
    sf = secret_file(tmp_path / "secret", mode=0o644)
    ng.write_config(server(ng, f"aws_secret_key_file {sf}; aws_region us-east-1;", 9))
    rc, out = ng.test_config()
    assert rc != 0 and "readable by every user" in out and str(sf) in out, out
    assert harness.SECRET_KEY not in out
