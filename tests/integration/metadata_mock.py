"""Loopback stand-ins for the services that hand out a role's credentials,
as strict as the real ones where it matters:

* ``ImdsMock``: EC2 instance metadata. IMDSv2: ``PUT /latest/api/token``
  with ``X-aws-ec2-metadata-token-ttl-seconds`` (1..21600) gives a token;
  every GET must carry a valid ``X-aws-ec2-metadata-token`` or gets 401,
  unless the mock plays an IMDSv1-only service (``v1_only``: the PUT is
  refused with 403, tokenless GETs are answered).
* ``ContainerMock``: the ECS / EKS Pod Identity container endpoint. The
  ``Authorization`` header must equal the expected token (a fixed value,
  or the current content of a token file, which tests rotate), else 401.

Both hand out the test S3 server's real access key and secret with a fresh
session token and an ``Expiration`` ``ttl`` seconds ahead, count what they
are asked, and can be made to fail: ``down`` (close the connection
without answering), ``hang`` (answer nothing for that many seconds) or
``answer`` (a fixed ``(status, body)``)."""

from __future__ import annotations

import datetime as _dt
import http.server
import json
import secrets
import threading
import time

import harness


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Base:
    def __init__(self, ttl: float = 20.0):
        self.ttl = ttl
        self.lock = threading.Lock()
        self.credential_fetches = 0  # answers that carried credentials
        self.requests: list[tuple[float, str, str, dict]] = []  # (time, method, path, headers)
        self.issued: list[tuple[str, float]] = []  # (session token, expiration)
        self.down = False
        self.hang = 0.0
        self.answer: tuple[int, bytes] | None = None
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _go(self, method: str):
                with mock.lock:
                    mock.requests.append((time.time(), method, self.path, dict(self.headers)))
                if mock.hang:
                    time.sleep(mock.hang)
                if mock.down:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, body, ctype = mock.handle(method, self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._go("GET")

            def do_PUT(self):
                self._go("PUT")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.hang = 0
        self.server.shutdown()
        self.server.server_close()

    def credentials(self) -> bytes:
        """A fresh set: the S3 test server's key, a new token."""
        if self.answer is not None:
            return self.answer[1]
        expiration = time.time() + self.ttl
        token = "IQoJTESTTOKEN/" + secrets.token_urlsafe(24) + "+=="
        with self.lock:
            self.credential_fetches += 1
            self.issued.append((token, expiration))
        return json.dumps({
            "Code": "Success", "LastUpdated": _iso(time.time()), "Type": "AWS-HMAC",
            "AccessKeyId": harness.ACCESS_KEY, "SecretAccessKey": harness.SECRET_KEY,
            "Token": token, "Expiration": _iso(expiration),
        }).encode()

    def token_valid_at(self, token: str, t: float) -> bool:
        """The token was issued here and had not expired at time `t` (the
        Expiration on the wire has whole seconds, x-amz-date too)."""
        with self.lock:
            return any(tok == token and t <= int(exp) for tok, exp in self.issued)

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for _, m, p, _ in self.requests if m == method and p.startswith(prefix))


class ImdsMock(_Base):
    ROLE = "nginx-s3-reader"

    def __init__(self, ttl: float = 20.0, v1_only: bool = False):
        self.v1_only = v1_only
        self.tokens: set[str] = set()
        super().__init__(ttl)

    def handle(self, method, path, headers):
        if method == "PUT":
            if path != "/latest/api/token":
                return 405, b"", "text/plain"
            if self.v1_only:
                return 403, b"Forbidden", "text/plain"
            ttl = headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return 400, b"Bad Request", "text/plain"
            token = "AQAEA" + secrets.token_urlsafe(32)
            with self.lock:
                self.tokens.add(token)
            return 200, token.encode(), "text/plain"
        token = headers.get("X-aws-ec2-metadata-token")
        if not self.v1_only and token not in self.tokens:
            return 401, b"Unauthorized", "text/plain"
        base = "/latest/meta-data/iam/security-credentials/"
        if path == base:
            return 200, self.ROLE.encode(), "text/plain"
        if path == base + self.ROLE:
            if self.answer is not None:
                return self.answer[0], self.answer[1], "text/plain"
            return 200, self.credentials(), "text/plain"
        return 404, b"Not Found", "text/plain"


class ContainerMock(_Base):
    PATH = "/v2/credentials/task-1234"

    def __init__(self, ttl: float = 20.0, token: str | None = None, token_file: str | None = None):
        self.token = token
        self.token_file = token_file
        super().__init__(ttl)

    def expected_token(self) -> str | None:
        if self.token_file:
            with open(self.token_file) as f:
                return f.read().strip()
        return self.token

    def handle(self, method, path, headers):
        if method != "GET" or path != self.PATH:
            return 404, b"{}", "application/json"
        want = self.expected_token()
        if want is not None and headers.get("Authorization") != want:
            return 401, b'{"message":"bad token"}', "application/json"
        if self.answer is not None:
            return self.answer[0], self.answer[1], "application/json"
        return 200, self.credentials(), "application/json"
