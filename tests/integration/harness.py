"""Helpers for the ngx_http_aws_auth_module integration tests.

Everything here is plain Python (stdlib + botocore); pytest fixtures that
wrap these helpers live in conftest.py.

Contents
--------
* free_port()                      -- an unused TCP port on 127.0.0.1
* http_request() / Response        -- raw-socket HTTP/1.1 client that sends the
                                      request target byte-for-byte
* RecordingProxy / RecordedRequest -- TCP proxy thread that records each
                                      request head and forwards bytes unchanged
* S3Server                         -- an s3s-fs process (+ botocore client)
* Nginx                            -- temp-prefix nginx: write config, -t,
                                      start, stop, error log
* SigV4 helpers                    -- derive_signing_key(), s3_encode_key(),
                                      s3_canonical_path(), check_signed_request()
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import glob
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence
from urllib.parse import unquote_to_bytes

# --------------------------------------------------------------------------
# Constants shared by the tests
# --------------------------------------------------------------------------

ACCESS_KEY = "AKIDTESTEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYTESTSECRET"
REGION = "us-east-1"
SERVICE = "s3"
BUCKET = "testbucket"
# Virtual-host base domains s3s-fs is started with (see test_c_module_readme).
VHOST_DOMAINS = ("s3.amazonaws.com", "s3.cn-north-1.amazonaws.com.cn")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODULE = os.path.join(
    REPO_ROOT, "target", "release", "libngx_http_aws_auth_module.so"
)
NGINX_GLOB = os.path.join(
    REPO_ROOT, "target", "release", "build", "nginx-sys-*", "out", "objs", "nginx"
)


def find_nginx_binary() -> str | None:
    """NGINX_BIN, else the newest nginx built by the nginx-sys crate."""
    env = os.environ.get("NGINX_BIN")
    if env:
        return env
    candidates = [p for p in glob.glob(NGINX_GLOB) if os.access(p, os.X_OK)]
    if not candidates:
        return None
    return max(candidates, key=os.path.getmtime)


def find_module() -> str:
    """NGX_MODULE, else the cargo release artefact (may not exist)."""
    return os.path.abspath(os.environ.get("NGX_MODULE", DEFAULT_MODULE))


def stop_process(proc: subprocess.Popen, *signals: int, wait: float = 5.0) -> None:
    """Send each signal in turn, waiting `wait` seconds after each; kill
    the process if it is still running after the last one."""
    for sig in signals:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} did not open within {timeout}s")
            time.sleep(0.02)


# --------------------------------------------------------------------------
# SigV4 helpers (independent of the module)
# --------------------------------------------------------------------------


def wait_until(cond, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls cond() until true; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def amz_date_to_unix(amz_date: str) -> float:
    """`YYYYMMDDTHHMMSSZ` as Unix seconds."""
    return _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc).timestamp()


def utc_today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d")


def derive_signing_key(secret: str, date: str, region: str = REGION, service: str = SERVICE) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")."""

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    k = h(("AWS4" + secret).encode("utf-8"), date)
    k = h(k, region)
    k = h(k, service)
    return h(k, "aws4_request")


@dataclass
class SigningConfig:
    """Values for the module's directives, derived for today's UTC date."""

    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    service: str = SERVICE
    date: str = field(default_factory=utc_today)

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"

    @property
    def signing_key(self) -> bytes:
        return derive_signing_key(self.secret_key, self.date, self.region, self.service)

    @property
    def signing_key_b64(self) -> str:
        return base64.b64encode(self.signing_key).decode("ascii")

    def directives(self, indent: str = "    ", bucket: str | None = BUCKET) -> str:
        lines = [
            f"aws_access_key {self.access_key};",
            f"aws_key_scope {self.scope};",
            f"aws_signing_key {self.signing_key_b64};",
        ]
        if bucket:
            lines.append(f"aws_s3_bucket {bucket};")
        return "\n".join(indent + line for line in lines)


SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLE//session+token/with=odd/chars"

# The variables form of signing, for a location block.
SIGN_VARIABLES = """
            proxy_set_header Authorization $s3_auth_token;
            proxy_set_header x-amz-date $aws_date;
            proxy_set_header x-amz-content-sha256 $aws_content_sha256;"""


def sign_lines(mode: str) -> str:
    """The directives that sign a location in `mode` ("aws_sign" or "variables")."""
    return "aws_sign;" if mode == "aws_sign" else SIGN_VARIABLES


def secret_forms(name: str, value: str | bytes) -> dict[str, str]:
    """Every form a secret could take in a log line: as it is, percent-
    encoded (upper- and lowercase hex, `+` and `/` and `=` encoded or not),
    base64 and hex."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    out = {}
    if isinstance(value, str):
        out[name] = value
    strict = s3_uri_encode(raw, keep_slash=False)
    out[f"{name} (percent-encoded)"] = strict
    out[f"{name} (percent-encoded, lowercase hex)"] = re.sub(
        r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), strict)
    out[f"{name} (base64)"] = base64.b64encode(raw).decode()
    out[f"{name} (hex)"] = raw.hex()
    out[f"{name} (HEX)"] = raw.hex().upper()
    # a form equal to the raw value adds nothing
    return {k: v for k, v in out.items() if k == name or v != value}


def known_secrets() -> dict[str, str]:
    """The secret values the tests hand to nginx, by name, in every form a
    log line could carry them (see secret_forms): the IAM secret, the
    signing keys for the days around today and the session token. None of
    them may ever appear in a log."""
    out = {}
    out.update(secret_forms("secret key", SECRET_KEY))
    out.update(secret_forms("session token", SESSION_TOKEN))
    today = _dt.datetime.now(_dt.timezone.utc).date()
    for offset in range(-2, 8):
        d = (today + _dt.timedelta(days=offset)).strftime("%Y%m%d")
        cfg = SigningConfig(date=d)
        # the key's bytes, and the base64 text nginx.conf carries
        out.update(secret_forms(f"signing key {d}", cfg.signing_key))
        out.update(secret_forms(f"signing key {d} as configured", cfg.signing_key_b64))
    return out


def s3_uri_encode(data: bytes, keep_slash: bool = True) -> str:
    """Encode every byte outside A-Za-z0-9-_.~ (and '/' if keep_slash) as %XX."""
    out = []
    for b in data:
        if b in UNRESERVED or (keep_slash and b == 0x2F):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def s3_encode_key(key: str) -> str:
    """Correctly percent-encoded path component for an object key (UTF-8)."""
    return s3_uri_encode(key.encode("utf-8"), keep_slash=True)


def s3_canonical_path(wire_path: bytes | str) -> str:
    """The S3 SigV4 canonical URI for the path actually sent on the wire:
    percent-decode it, then encode every byte outside unreserved (keeping '/')
    as uppercase %XX.  (S3 does not normalise dot segments or slashes.)"""
    if isinstance(wire_path, str):
        wire_path = wire_path.encode("latin-1")
    return s3_uri_encode(unquote_to_bytes(wire_path), keep_slash=True)


def s3_canonical_query(wire_query: bytes | str) -> str:
    """SigV4 canonical query string for the query actually sent: split on
    '&', percent-decode each name and value, re-encode them (every byte
    outside unreserved, '/' included), sort by name then value."""
    if isinstance(wire_query, str):
        wire_query = wire_query.encode("latin-1")
    if not wire_query:
        return ""
    pairs = []
    for item in wire_query.split(b"&"):
        name, _, value = item.partition(b"=")
        pairs.append(
            (
                s3_uri_encode(unquote_to_bytes(name), keep_slash=False),
                s3_uri_encode(unquote_to_bytes(value), keep_slash=False),
            )
        )
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<cred>[^,]+), SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
AMZ_DATE_RE = re.compile(r"^\d{8}T\d{6}Z$")


def parse_authorization(value: str) -> dict:
    m = AUTH_RE.match(value)
    if not m:
        raise AssertionError(f"Authorization has unexpected shape: {value!r}")
    ak, date, region, service, term = m.group("cred").split("/")
    return {
        "access_key": ak,
        "date": date,
        "region": region,
        "service": service,
        "terminator": term,
        "signed_headers": m.group("signed").split(";"),
        "signature": m.group("sig"),
    }


def botocore_authorization(
    method: str,
    host: str,
    wire_target: bytes,
    headers: Sequence[tuple[str, str]],
    amz_date: str,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
    service: str = SERVICE,
) -> tuple[str, str]:
    """Compute the Authorization botocore's S3SigV4Auth would produce for a
    request whose *wire* target is `wire_target`, carrying exactly `headers`
    (which are all signed), at time `amz_date`.

    botocore's S3SigV4Auth does not normalise or re-quote the URL path (its
    _normalize_url_path is the identity for S3), it signs
    urlsplit(url).path verbatim.  So we hand it the S3 canonical form of the
    wire path and check that the canonical request really contains it.

    Returns (authorization, canonical_request)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path, sep, query = wire_target.partition(b"?")
    canon_path = s3_canonical_path(path)
    url = f"http://{host}{canon_path}"
    canon_query = s3_canonical_query(query)
    if canon_query:
        # botocore takes the URL's query pairs as they are (no re-quoting),
        # so it is handed the canonical form, checked below.
        url += "?" + canon_query
    req = AWSRequest(method=method, url=url)
    for name, value in headers:
        req.headers[name] = value
    req.context["timestamp"] = amz_date
    auth = S3SigV4Auth(Credentials(access_key, secret_key), service, region)
    canonical = auth.canonical_request(req)
    cr_path = canonical.split("\n")[1]
    if cr_path != canon_path:
        raise AssertionError(
            f"botocore canonical path {cr_path!r} != S3 rule {canon_path!r} (wire {path!r})"
        )
    cr_query = canonical.split("\n")[2]
    if cr_query != canon_query:
        raise AssertionError(f"botocore canonical query {cr_query!r} != S3 rule {canon_query!r}")
    string_to_sign = auth.string_to_sign(req, canonical)
    signature = auth.signature(string_to_sign, req)
    signed = auth.signed_headers(auth.headers_to_sign(req))
    value = f"AWS4-HMAC-SHA256 Credential={auth.scope(req)}, SignedHeaders={signed}, Signature={signature}"
    return value, canonical


def check_signed_request(
    rec: "RecordedRequest",
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
    service: str = SERVICE,
    expect_host: str | None = None,
) -> dict:
    """Independent cross-check of a request head recorded between nginx and
    S3: exactly one Authorization / x-amz-date / x-amz-content-sha256 / Host,
    every x-amz-* header signed, and the Authorization equal byte-for-byte to
    what botocore computes for the same method, wire path, Host and date.
    Returns the parsed Authorization."""
    for name in ("authorization", "x-amz-date", "x-amz-content-sha256", "host"):
        n = len(rec.values(name))
        assert n == 1, f"{name} appears {n} times on the wire:\n{rec.head_text()}"
    authz = rec.header("authorization")
    parsed = parse_authorization(authz)
    amz_date = rec.header("x-amz-date")
    assert AMZ_DATE_RE.match(amz_date), f"bad x-amz-date {amz_date!r}"
    assert parsed["date"] == amz_date[:8], (
        f"credential scope date {parsed['date']} != x-amz-date {amz_date}"
    )
    assert parsed["access_key"] == access_key
    assert (parsed["region"], parsed["service"], parsed["terminator"]) == (
        region,
        service,
        "aws4_request",
    )
    sha = rec.header("x-amz-content-sha256")
    if rec.method in ("GET", "HEAD"):
        assert sha in (EMPTY_SHA256, "UNSIGNED-PAYLOAD"), f"x-amz-content-sha256 {sha!r}"
    signed = parsed["signed_headers"]
    assert signed == sorted(signed), f"SignedHeaders not sorted: {signed}"
    for required in ("host", "x-amz-content-sha256", "x-amz-date"):
        assert required in signed, f"{required} not in SignedHeaders {signed}"
    for name in rec.names():
        if name.lower().startswith("x-amz-"):
            assert name.lower() in signed, f"{name} sent but not signed ({signed})"
    host = rec.header("host")
    if expect_host is not None:
        assert host == expect_host, f"Host on the wire {host!r}, expected {expect_host!r}"
    headers = []
    for name in signed:
        vals = rec.values(name)
        assert len(vals) == 1, f"signed header {name} appears {len(vals)} times"
        headers.append((name, vals[0].decode("latin-1")))
    expected, canonical = botocore_authorization(
        rec.method, host, rec.target, headers, amz_date, access_key, secret_key, region, service
    )
    assert authz == expected, (
        "Authorization differs from botocore's\n"
        f"  wire:     {authz}\n  botocore: {expected}\n"
        f"botocore canonical request:\n{canonical}\n--- recorded head:\n{rec.head_text()}"
    )
    return parsed


def check_role_signed(recorder: "RecordingProxy", issuer) -> list[str]:
    """Every request `recorder` saw verifies with botocore and carries a
    session token `issuer` (a credentials mock with ``token_valid_at``)
    handed out, valid when the request was signed; returns the distinct
    tokens seen."""
    tokens = []
    for rec in recorder.requests:
        check_signed_request(rec)
        token = rec.header("x-amz-security-token")
        sent = amz_date_to_unix(rec.header("x-amz-date"))
        assert issuer.token_valid_at(token, sent), f"token not issued or expired at {sent}"
        if token not in tokens:
            tokens.append(token)
    return tokens


def send_in_pieces(handler, status: int, body: bytes, piece: int = 0, pause: float = 0.0,
                   content_type: str = "application/xml") -> None:
    """Answers from a `BaseHTTPRequestHandler` with `status` and `body`,
    written in pieces of `piece` bytes (all at once for 0), flushed and
    `pause` seconds apart: so that nginx reads the body in several
    buffers, or a client sees it arrive slowly."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    step = piece or max(len(body), 1)
    for i in range(0, len(body), step):
        handler.wfile.write(body[i:i + step])
        handler.wfile.flush()
        if pause:
            time.sleep(pause)


# --------------------------------------------------------------------------
# Raw HTTP client
# --------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str, default: str | None = None) -> str | None:
        vals = self.header_values(name)
        return vals[0] if vals else default

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self) -> str:  # shows up in assertion messages
        body = self.body if len(self.body) < 600 else self.body[:600] + b"..."
        return f"<Response {self.status} {self.reason} headers={self.headers} body={body!r}>"


def _decode_chunked(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out)
        out += data[pos : pos + size]
        pos += size + 2


def http_request(
    port: int,
    method: str,
    target: str | bytes,
    headers: Iterable[tuple[str, str | bytes]] = (),
    body: bytes | None = None,
    host: str | None = "localhost",
    timeout: float = 15.0,
    raw_body: bytes | None = None,
) -> Response:
    """Send one HTTP/1.1 request with `target` exactly as given (no quoting,
    no normalisation) and return the parsed response. `headers` may repeat
    names. A Host header is added unless host is None or headers has one.
    `raw_body` is sent as it is after the head (no Content-Length added),
    e.g. a chunked body."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    headers = list(headers)
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    if host is not None and not any(k.lower() == "host" for k, _ in headers):
        lines.append(b"Host: " + host.encode("latin-1"))
    for k, v in headers:
        if isinstance(v, str):
            v = v.encode("latin-1")
        lines.append(k.encode("latin-1") + b": " + v)
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"") + (raw_body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    data = b"".join(chunks)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise AssertionError(f"incomplete HTTP response: {data[:300]!r}")
    head, rest = data[:end], data[end + 4 :]
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    hdrs = []
    for line in header_lines:
        k, _, v = line.decode("latin-1").partition(":")
        hdrs.append((k.strip(), v.strip()))
    resp = Response(status, reason, hdrs, b"", head)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        resp.body = rest
        return resp
    te = (resp.header("transfer-encoding") or "").lower()
    if "chunked" in te:
        resp.body = _decode_chunked(rest)
    elif resp.header("content-length") is not None:
        n = int(resp.header("content-length"))
        if len(rest) < n:
            raise AssertionError(f"short body: got {len(rest)} of {n} bytes")
        resp.body = rest[:n]
    else:
        resp.body = rest
    return resp


def direct_s3_request(
    port: int,
    method: str,
    host: str,
    wire_target: str,
    headers: Sequence[tuple[str, str]] = (),
    secret_key: str = SECRET_KEY,
) -> Response:
    """Send `wire_target` (already in its strict S3 encoding) straight to
    the S3 server on `port` with `Host: host`, signed by botocore (not by
    the module): the reference a request through nginx is compared with."""
    amz_date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    signed = [("host", host), ("x-amz-content-sha256", EMPTY_SHA256), ("x-amz-date", amz_date)]
    signed += [(n.lower(), v) for n, v in headers]
    authz, _ = botocore_authorization(
        method, host, wire_target.encode("ascii"), signed, amz_date, secret_key=secret_key
    )
    send = [(n, v) for n, v in signed if n != "host"] + [("Authorization", authz)]
    return http_request(port, method, wire_target, send, host=host)


@contextlib.contextmanager
def serve_http(handler: type):
    """An http.server on 127.0.0.1 (a free port) in a background thread for
    the `with` block: a stand-in upstream whose handler class checks or
    records what nginx sends."""
    import http.server

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def silent_server():
    """A TCP server on 127.0.0.1 (a free port) that accepts connections,
    never reads or answers: yields (port, the accepted sockets)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def loop():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                conns.append(c)
            except OSError:
                continue

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], conns
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


def worker_pids(ng: "Nginx") -> list[str]:
    """The pids of an nginx's workers: the same list before and after a
    request means no worker died on it."""
    def pids() -> list[str]:
        out = subprocess.run(["pgrep", "-P", str(ng.proc.pid)], capture_output=True, text=True).stdout
        return sorted(out.split())

    # under valgrind the workers take a while to appear
    wait_until(lambda: pids(), 60, "nginx's workers")
    return pids()


def wrk_with_reloads(ng: "Nginx", path: str, seconds: int, before_reload=None) -> tuple[int, int, str]:
    """wrk drives GETs of `path` for `seconds` (8 connections, one request
    each: a graceful reload closes idle keep-alive connections, and a
    client racing that close sees an error that has nothing to do with
    signing) while nginx is reloaded every 2 s (`before_reload(n)` runs
    before the n-th). Fails when wrk saw a socket error or a non-2xx/3xx
    answer, or nginx crashed; returns (requests, reloads, wrk's output)."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise AssertionError("wrk is not installed (scripts/common.sh installs Debian's wrk)")
    load = subprocess.Popen([wrk, "-t1", "-c8", f"-d{seconds}s", "--latency", "-H", "Connection: close",
                             f"http://127.0.0.1:{ng.port}{path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reloads = 0
    t0 = time.time()
    while load.poll() is None and time.time() - t0 < seconds + 10:
        time.sleep(2)
        if before_reload is not None:
            before_reload(reloads)
        os.kill(ng.proc.pid, signal.SIGHUP)
        reloads += 1
    out, _ = load.communicate(timeout=seconds + 30)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    assert "Non-2xx or 3xx responses" not in out, out
    assert "Socket errors" not in out, out
    assert reloads >= seconds // 2 - 2, reloads
    log = ng.error_log()
    assert "exited on signal" not in log and "[alert]" not in log, log[-3000:]
    assert "[emerg]" not in log, log[-3000:]
    return total, reloads, out


# --------------------------------------------------------------------------
# Recording TCP proxy
# --------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    raw_head: bytes  # request line + headers, including the final CRLFCRLF
    method: str
    target: bytes  # raw request target as sent
    version: str
    headers: list[tuple[str, bytes]]  # (name as sent, raw value), in order

    @classmethod
    def parse(cls, raw_head: bytes) -> "RecordedRequest":
        lines = raw_head[:-4].split(b"\r\n")
        method, target, version = lines[0].split(b" ", 2)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.decode("latin-1"), v.strip(b" \t")))
        return cls(raw_head, method.decode("ascii"), target, version.decode("ascii"), headers)

    @property
    def path(self) -> bytes:
        return self.target.partition(b"?")[0]

    def names(self) -> list[str]:
        return [k for k, _ in self.headers]

    def values(self, name: str) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str:
        vals = self.values(name)
        assert len(vals) == 1, f"expected exactly one {name}, got {vals}\n{self.head_text()}"
        return vals[0].decode("latin-1")

    def head_text(self) -> str:
        return self.raw_head.decode("latin-1")


class RecordingProxy:
    """Listens on 127.0.0.1:<port>, forwards each connection to
    127.0.0.1:<target_port> unchanged and records every request head."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        # When set, the first byte of the next request body is flipped on
        # its way to the server (a body changed after it was signed).
        self.tamper_next_body = False
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"recproxy-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)

    # -- public API --
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def last(self) -> RecordedRequest:
        reqs = self.requests
        assert reqs, "no request reached the upstream"
        return reqs[-1]

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes threads blocked in recv()
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)

    # -- internals --
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
                # forget the threads that finished: a long test makes many
                self._threads = [t for t in self._threads if t.is_alive()]
            for fn, args in ((self._client_to_upstream, (client, upstream)), (self._pipe, (upstream, client))):
                t = threading.Thread(target=fn, args=args, daemon=True)
                t.start()
                with self._lock:
                    self._threads.append(t)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _client_to_upstream(self, client: socket.socket, upstream: socket.socket) -> None:
        buf = b""
        body_left = 0
        passthrough = False  # after a chunked request we stop parsing
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                if passthrough:
                    upstream.sendall(data)
                    continue
                buf += data
                while buf:
                    if body_left:
                        n = min(body_left, len(buf))
                        if self.tamper_next_body and n > 0:
                            self.tamper_next_body = False
                            buf = bytes([buf[0] ^ 0x01]) + buf[1:]
                        upstream.sendall(buf[:n])
                        buf = buf[n:]
                        body_left -= n
                        continue
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buf = buf[: end + 4], buf[end + 4 :]
                    rec = RecordedRequest.parse(head)
                    with self._lock:
                        self._requests.append(rec)
                    upstream.sendall(head)
                    te = b",".join(rec.values("transfer-encoding")).lower()
                    if b"chunked" in te:
                        passthrough = True
                        upstream.sendall(buf)
                        buf = b""
                        break
                    cl = rec.values("content-length")
                    body_left = int(cl[0]) if cl else 0
            if buf:
                upstream.sendall(buf)
        except OSError:
            pass
        finally:
            try:
                upstream.shutdown(socket.SHUT_WR)
            except OSError:
                pass


# --------------------------------------------------------------------------
# s3s-fs
# --------------------------------------------------------------------------


class S3Server:
    def __init__(
        self,
        workdir: str,
        binary: str | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        domains: Sequence[str] = VHOST_DOMAINS,
    ):
        self.binary = binary or os.environ.get("S3S_FS") or shutil.which("s3s-fs") or os.path.expanduser(
            "~/.cargo/bin/s3s-fs"
        )
        self.workdir = workdir
        self.root = os.path.join(workdir, "root")
        os.makedirs(self.root, exist_ok=True)
        self.log_path = os.path.join(workdir, "s3s-fs.log")
        self.access_key = access_key
        self.secret_key = secret_key
        self.domains = list(domains)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._client = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            self.binary,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--access-key", self.access_key,
            "--secret-key", self.secret_key,
        ]
        for d in self.domains:
            cmd += ["--domain", d]
        cmd.append(self.root)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "s3s=debug,s3s_fs=debug")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_port(self.port, timeout=10, proc=self.proc)
        except RuntimeError as e:
            raise RuntimeError(f"s3s-fs did not start: {e}\n{self.log_text()}") from None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            stop_process(self.proc, signal.SIGTERM)
        if getattr(self, "_log", None):
            self._log.close()

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    @property
    def client(self):
        """botocore S3 client talking to s3s-fs directly, path-style."""
        if self._client is None:
            import botocore.config
            import botocore.session

            session = botocore.session.get_session()
            self._client = session.create_client(
                "s3",
                region_name=REGION,
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=botocore.config.Config(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 1},
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        return self._client

    def put(self, key: str, body: bytes, bucket: str = BUCKET) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)


# --------------------------------------------------------------------------
# nginx
# --------------------------------------------------------------------------

CONF_TEMPLATE = """\
{load_module}{user}daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log {log_level};
{main}
events {{
    worker_connections 256;
}}

http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

{http}
}}
"""


class Nginx:
    """One nginx instance with its own prefix directory and listen port.

    Typical use::

        ng.write_config(f'''
            server {{
                listen 127.0.0.1:{ng.port};
                location / {{ aws_sign; proxy_pass http://127.0.0.1:{port}; }}
            }}''')
        ng.start()
        resp = ng.request("GET", "/bucket/key")
    """

    def __init__(self, binary: str, module: str | None, prefix: str):
        self.binary = binary
        self.module = module
        self.prefix = os.path.abspath(prefix)
        for sub in ("conf", "logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, sub), exist_ok=True)
        self.conf_path = os.path.join(self.prefix, "conf", "nginx.conf")
        self.error_log_path = os.path.join(self.prefix, "logs", "error.log")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.conf_text = ""

    # -- config --
    def write_config(self, http: str, main: str = "", load_module: bool = True) -> str:
        """Write conf/nginx.conf: the standard main/events skeleton, `main`
        extra main-context lines, `http` as the body of the http{} block.
        With load_module=True the module is loaded (a missing module is an
        error, not a skip)."""
        lm = ""
        if load_module:
            if not self.module or not os.path.exists(self.module):
                raise AssertionError(
                    f"module .so not found at {self.module!r} (set NGX_MODULE or build it)"
                )
            lm = f"load_module {self.module};\n"
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf_text = CONF_TEMPLATE.format(
            load_module=lm, user=user, prefix=self.prefix, main=main, http=http,
            log_level=getattr(self, "log_level", "debug"), workers=getattr(self, "workers", 1),
        )
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text)
        return self.conf_text

    def write_raw_config(self, text: str) -> None:
        self.conf_text = text
        with open(self.conf_path, "w") as f:
            f.write(text)

    def _cmd(self, *extra: str) -> list[str]:
        return [self.binary, "-p", self.prefix + "/", "-c", self.conf_path, "-e", self.error_log_path, *extra]

    def _run_cmd(self) -> list[str]:
        """The command that starts nginx: under valgrind memcheck (master and
        workers) when NGX_VALGRIND=1 (scripts/test-valgrind)."""
        if os.environ.get("NGX_VALGRIND") != "1":
            return self._cmd()
        return [
            "valgrind", "--tool=memcheck", "--trace-children=yes", "--leak-check=no",
            "--num-callers=30", f"--log-file={self.prefix}/logs/valgrind.%p.log", *self._cmd(),
        ]

    def valgrind_errors(self) -> list[str]:
        """Memory errors valgrind reported (invalid accesses, uninitialised
        values, mismatched frees), as log lines."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.prefix, "logs", "valgrind.*.log"))):
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            out += [l for l in text.splitlines()
                    if re.search(r"Invalid (read|write|free)|uninitialised|Mismatched free", l)]
        return out

    def test_config(self) -> tuple[int, str]:
        """Run `nginx -t`; returns (returncode, combined stdout+stderr)."""
        p = subprocess.run(self._cmd("-t"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    # -- lifecycle --
    def start(self, env: dict | None = None) -> None:
        """Start nginx; `env` adds environment variables (e.g. libfaketime)."""
        assert self.proc is None, "already started"
        self._stdio = open(os.path.join(self.prefix, "logs", "stderr.log"), "wb")
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(self._run_cmd(), stdout=self._stdio, stderr=subprocess.STDOUT,
                                     env=full_env)
        try:
            wait_for_port(self.port, timeout=60 if os.environ.get("NGX_VALGRIND") == "1" else 10,
                          proc=self.proc)
        except RuntimeError as e:
            self.stop()
            raise AssertionError(
                f"nginx did not start: {e}\n--- stderr:\n{self.stderr_text()}\n--- error.log (tail):\n"
                f"{self.error_log()[-4000:]}\n--- config:\n{self.conf_text}"
            ) from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, signal.SIGQUIT, signal.SIGTERM)  # graceful first
        if getattr(self, "_stdio", None):
            self._stdio.close()
            self._stdio = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs --
    def error_log(self) -> str:
        try:
            with open(self.error_log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_text(self) -> str:
        try:
            with open(os.path.join(self.prefix, "logs", "stderr.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def crash_lines(self) -> list[str]:
        """Lines that show a worker died (e.g. a Rust panic -> abort)."""
        text = self.error_log() + "\n" + self.stderr_text()
        return [
            line
            for line in text.splitlines()
            if "exited on signal" in line or "panicked" in line
        ] + self.valgrind_errors()

    # -- client --
    def request(self, method: str, target: str | bytes, headers=(), body: bytes | None = None, **kw) -> Response:
        kw.setdefault("host", f"127.0.0.1:{self.port}")
        return http_request(self.port, method, target, headers, body, **kw)
