"""A loopback AWS STS over TLS, a test certificate authority and a small
DNS server, for the STS credential sources (``aws_credentials
web-identity``, ``aws_assume_role``).

``StsMock`` checks what real STS checks before it hands out credentials:

* ``POST /`` with a form body (``application/x-www-form-urlencoded``),
  each parameter once, ``Version=2011-06-15``, a known ``Action``, the
  expected ``RoleArn`` (else ``AccessDenied``), a valid
  ``RoleSessionName`` and ``DurationSeconds``, the ``Host`` the client
  was pointed at;
* ``AssumeRoleWithWebIdentity``: unsigned, and ``WebIdentityToken`` equal
  to the current content of the token file (a token the mock was told is
  expired gets ``ExpiredTokenException``, any other
  ``InvalidIdentityToken``);
* ``AssumeRole``: the SigV4 ``Authorization`` recomputed with botocore's
  ``SigV4Auth`` against the base credentials the access key names (their
  secret, and their session token, which must be valid when the call was
  signed), ``x-amz-date`` within five minutes, scope ``REGION/sts``, and
  ``ExternalId`` equal to what the trust policy asks for.

It answers with the test S3 server's key, a fresh session token and an
``Expiration`` ``ttl`` seconds ahead, in STS's XML. It can be made to fail:
``answer`` (a fixed ``(status, body)``), ``throttle`` (that many
``Throttling`` answers), ``down`` (close without answering)."""

from __future__ import annotations

import datetime as _dt
import http.server
import re
import secrets
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import harness

ROLE_ARN = "arn:aws:iam::111122223333:role/s3-reader"
VERSION = "2011-06-15"
SESSION_RE = re.compile(r"^[\w+=,.@-]{2,64}$")


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class TestCA:
    """A certificate authority made for the test run, and certificates it
    issues. ``self_signed`` makes one no CA vouches for."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = str(self.dir / "ca.pem")
        self.key = str(self.dir / "ca.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "2",
                 "-subj", "/CN=ngx_aws_auth test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, sans: list[str] | None = None) -> tuple[str, str]:
        """A server certificate for ``name`` (and ``sans``, e.g.
        ``IP:127.0.0.1``); returns (certificate, key) paths."""
        base = self.dir / name.replace("/", "_")
        key, csr, cert = f"{base}.key", f"{base}.csr", f"{base}.pem"
        ext = self.dir / f"{name}.ext"
        alt = ",".join([f"DNS:{name}"] + (sans or []))
        ext.write_text(f"subjectAltName={alt}\nextendedKeyUsage=serverAuth\n"
                       "basicConstraints=CA:FALSE\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", str(ext))
        return cert, key

    def self_signed(self, name: str) -> tuple[str, str]:
        base = self.dir / f"self-{name}"
        key, cert = f"{base}.key", f"{base}.pem"
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                 "-addext", f"subjectAltName=DNS:{name}")
        return cert, key


class BaseKey:
    """Credentials that may sign ``AssumeRole``: a secret, and either a
    fixed session token, none, or a check of issued ones."""

    def __init__(self, secret: str, token: str | None = None, token_valid=None):
        self.secret = secret
        self.token = token
        self.token_valid = token_valid  # (token, unix time) -> bool

    def token_ok(self, token: str | None, at: float) -> bool:
        if self.token_valid is not None:
            return token is not None and self.token_valid(token, at)
        return token == self.token


class StsMock:
    HOST = "sts.test"

    def __init__(self, cert: tuple[str, str], ttl: float = 20.0, region: str = harness.REGION,
                 role_arn: str = ROLE_ARN, token_file: str | None = None,
                 base_keys: dict[str, BaseKey] | None = None, external_id: str | None = None,
                 host: str = HOST):
        self.host = host
        self.ttl = ttl
        self.region = region
        self.role_arn = role_arn
        self.token_file = token_file
        self.base_keys = base_keys or {}
        self.external_id = external_id
        self.expired_tokens: set[str] = set()
        self.lock = threading.Lock()
        self.calls: list[dict] = []  # every request that got an HTTP answer
        self.issued: list[tuple[str, float]] = []  # (session token, expiration)
        self.secrets: list[str] = []  # what no log may hold besides issued tokens
        self.answer: tuple[int, bytes] | None = None
        self.throttle = 0
        self.down = False
        self.handshake_errors = 0
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(n)
                if mock.down:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, answer = mock.handle(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self):
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                # the handshake runs in the request's thread, not the
                # accept loop's
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                with mock.lock:
                    mock.handshake_errors += 1

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------

    def count(self, action: str | None = None, ok: bool | None = None) -> int:
        with self.lock:
            return sum(1 for c in self.calls
                       if (action is None or c["action"] == action)
                       and (ok is None or (c["status"] == 200) == ok))

    def token_valid_at(self, token: str, t: float) -> bool:
        with self.lock:
            return any(tok == token and t <= int(exp) for tok, exp in self.issued)

    @staticmethod
    def error(status: int, code: str, message: str, kind: str = "Sender") -> tuple[int, bytes]:
        return status, (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>").encode()

    def handle(self, path: str, headers, body: bytes) -> tuple[int, bytes]:
        call = {"time": time.time(), "headers": dict(headers), "action": None, "status": 0,
                "form": {}, "why": ""}
        status, answer = self._check(path, headers, body, call)
        call["status"] = status
        with self.lock:
            self.calls.append(call)
        return status, answer

    def _check(self, path, headers, body, call) -> tuple[int, bytes]:
        bad = lambda why, code="InvalidParameterValue": (call.__setitem__("why", why),
                                                        self.error(400, code, why))[1]
        if path != "/":
            return bad(f"path {path!r}")
        if headers.get("Host") != f"{self.host}:{self.port}":
            return bad(f"Host {headers.get('Host')!r}")
        ctype = headers.get("Content-Type", "")
        if not ctype.startswith("application/x-www-form-urlencoded"):
            return bad(f"Content-Type {ctype!r}")
        try:
            pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True,
                                           strict_parsing=True)
        except ValueError as e:
            return bad(f"form: {e}", "MalformedQueryString")
        form = dict(pairs)
        call["form"] = form
        if len(form) != len(pairs):
            return bad("a parameter given twice")
        action = form.get("Action")
        call["action"] = action
        if form.get("Version") != VERSION:
            return bad(f"Version {form.get('Version')!r}", "InvalidAction")
        if action not in ("AssumeRole", "AssumeRoleWithWebIdentity"):
            return bad(f"Action {action!r}", "InvalidAction")
        session = form.get("RoleSessionName", "")
        if not SESSION_RE.match(session):
            return bad(f"RoleSessionName {session!r}", "ValidationError")
        duration = form.get("DurationSeconds")
        if duration is not None and not (duration.isdigit() and 900 <= int(duration) <= 43200):
            return bad(f"DurationSeconds {duration!r}", "ValidationError")
        allowed = {"Action", "Version", "RoleArn", "RoleSessionName", "DurationSeconds"}
        if action == "AssumeRoleWithWebIdentity":
            allowed.add("WebIdentityToken")
            if "Authorization" in headers or "X-Amz-Security-Token" in headers:
                return bad("AssumeRoleWithWebIdentity is not signed", "IncompleteSignature")
            token = form.get("WebIdentityToken", "")
            current = Path(self.token_file).read_text().strip() if self.token_file else None
            if token in self.expired_tokens:
                return self.error(400, "ExpiredTokenException", "Token expired: current date/time "
                                  "is after the exp claim")
            if token != current:
                call["why"] = "token is not the token file's"
                return self.error(400, "InvalidIdentityToken", "Couldn't retrieve verification key "
                                  "from your identity provider")
        else:
            allowed.add("ExternalId")
            why = self._check_signature(headers, body)
            if why:
                call["why"] = why
                return self.error(403, "SignatureDoesNotMatch", "The request signature we "
                                  "calculated does not match the signature you provided.")
        extra = set(form) - allowed
        if extra:
            return bad(f"unknown parameters {sorted(extra)}")
        if form.get("RoleArn") != self.role_arn:
            call["why"] = "role"
            return self.error(403, "AccessDenied", "Not authorized to perform sts:" + action)
        if action == "AssumeRole" and form.get("ExternalId") != self.external_id:
            call["why"] = "external id"
            return self.error(403, "AccessDenied", "Not authorized to perform sts:AssumeRole")
        if self.throttle > 0:
            self.throttle -= 1
            call["why"] = "throttled"
            return self.error(400, "Throttling", "Rate exceeded")
        if self.answer is not None:
            return self.answer
        return 200, self._credentials(action, session)

    def _check_signature(self, headers, body: bytes) -> str:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        authz = headers.get("Authorization")
        if not authz:
            return "not signed"
        if len(headers.get_all("Authorization")) != 1:
            return "Authorization twice"
        parsed = harness.parse_authorization(authz)
        key = self.base_keys.get(parsed["access_key"])
        if key is None:
            return f"unknown access key {parsed['access_key']}"
        amz_date = headers.get("X-Amz-Date", "")
        if not harness.AMZ_DATE_RE.match(amz_date):
            return f"x-amz-date {amz_date!r}"
        signed_at = harness.amz_date_to_unix(amz_date)
        if abs(signed_at - time.time()) > 300:
            return "x-amz-date is more than 5 minutes off"
        if (parsed["date"], parsed["region"], parsed["service"], parsed["terminator"]) != (
                amz_date[:8], self.region, "sts", "aws4_request"):
            return f"scope {parsed}"
        token = headers.get("X-Amz-Security-Token")
        if not key.token_ok(token, signed_at):
            return "session token not valid"
        signed = parsed["signed_headers"]
        for required in ("host", "x-amz-date"):
            if required not in signed:
                return f"{required} not signed"
        if token is not None and "x-amz-security-token" not in signed:
            return "the session token is not signed"
        req = AWSRequest(method="POST", url=f"https://{headers['Host']}/", data=body)
        for name in signed:
            values = headers.get_all(name) or []
            if len(values) != 1:
                return f"signed header {name} appears {len(values)} times"
            req.headers[name] = values[0]
        req.context["timestamp"] = amz_date
        auth = SigV4Auth(Credentials(parsed["access_key"], key.secret, token), "sts", self.region)
        canonical = auth.canonical_request(req)
        signature = auth.signature(auth.string_to_sign(req, canonical), req)
        expected = (f"AWS4-HMAC-SHA256 Credential={auth.scope(req)}, "
                    f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(req))}, "
                    f"Signature={signature}")
        if authz != expected:
            return f"signature: sent {authz!r}, botocore {expected!r}\n{canonical}"
        return ""

    def _credentials(self, action: str, session: str) -> bytes:
        expiration = time.time() + self.ttl
        token = "FwoGZXIvYXdzEXAMPLE/" + secrets.token_urlsafe(32) + "=="
        with self.lock:
            self.issued.append((token, expiration))
        extra = ("<SubjectFromWebIdentityToken>system:serviceaccount:default:nginx"
                 "</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>"
                 if action == "AssumeRoleWithWebIdentity" else "")
        return (
            f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<{action}Result>{extra}"
            f"<AssumedRoleUser><AssumedRoleId>AROA3XFRBF535PLBIFPI4:{session}</AssumedRoleId>"
            f"<Arn>arn:aws:sts::111122223333:assumed-role/s3-reader/{session}</Arn>"
            "</AssumedRoleUser>"
            f"<Credentials><AccessKeyId>{harness.ACCESS_KEY}</AccessKeyId>"
            f"<SecretAccessKey>{harness.SECRET_KEY}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken>"
            f"<Expiration>{_iso(expiration)}</Expiration></Credentials>"
            f"<PackedPolicySize>6</PackedPolicySize></{action}Result>"
            f"<ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata>"
            f"</{action}Response>").encode()


class DnsMock:
    """A UDP DNS server on loopback answering A queries for ``names`` with
    127.0.0.1 (NXDOMAIN for others, no records for other types)."""

    def __init__(self, names: set[str]):
        self.names = {n.lower() for n in names}
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            try:
                data, peer = self.sock.recvfrom(512)
            except (socket.timeout, OSError):
                continue
            answer = self._answer(data)
            if answer:
                self.sock.sendto(answer, peer)

    def _answer(self, q: bytes) -> bytes | None:
        if len(q) < 12:
            return None
        ident, _flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            return None
        labels, i = [], 12
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        question = q[12:i + 5]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        if name not in self.names:
            return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
        if qtype != 1:
            return struct.pack("!HHHHHH", ident, 0x8180, 1, 0, 0, 0) + question
        record = struct.pack("!HHHIH", 0xC00C, 1, 1, 30, 4) + socket.inet_aton("127.0.0.1")
        return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + record

    def close(self):
        self.running = False
        self.thread.join(1)
        self.sock.close()
