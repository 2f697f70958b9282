"""Self-tests of the test harness itself.  None of these load the module:
they prove that the helpers the module tests rely on (signing-key
derivation, S3 canonical path rule, botocore cross-check, recording proxy,
raw HTTP client, nginx runner) are right, so a module test failure points at
the module and not at the harness."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

import harness
from harness import BUCKET, EMPTY_SHA256


def test_signing_key_matches_aws_documented_example():
    # "Examples of how to derive a signing key for Signature Version 4" (AWS docs).
    key = harness.derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    cfg = harness.SigningConfig()
    assert cfg.date == dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    assert cfg.scope == f"{cfg.date}/us-east-1/s3/aws4_request"
    assert len(cfg.signing_key) == 32


@pytest.mark.parametrize(
    "wire, canonical",
    [
        ("/b/plain.txt", "/b/plain.txt"),
        ("/b/a%20b", "/b/a%20b"),
        ("/b/a b", "/b/a%20b"),
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/a%2bb", "/b/a%2Bb"),  # hex case normalised
        ("/b/(x)!*'", "/b/%28x%29%21%2A%27"),
        ("/b/%C3%BC/%E6%97%A5", "/b/%C3%BC/%E6%97%A5"),
        ("/b/~-_.", "/b/~-_."),
        ("/b/%252F", "/b/%252F"),  # one decode only
        ("/b/a%2Fb", "/b/a/b"),  # S3 rule: decoded '/' stays '/'
        ("/b//x/./y", "/b//x/./y"),  # no dot-segment / slash normalisation
    ],
)
def test_s3_canonical_path_rule(wire, canonical):
    assert harness.s3_canonical_path(wire) == canonical


@pytest.mark.parametrize(
    "wire, canonical",
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("x-id=GetObject&response-content-type=text%2fplain", "response-content-type=text%2Fplain&x-id=GetObject"),
        ("response-content-disposition=a b;c", "response-content-disposition=a%20b%3Bc"),
        ("acl", "acl="),
        ("k=2&k=1", "k=1&k=2"),
    ],
)
def test_s3_canonical_query_rule(wire, canonical):
    assert harness.s3_canonical_query(wire) == canonical


def test_s3_encode_key():
    assert harness.s3_encode_key("ü/日 +") == "%C3%BC/%E6%97%A5%20%2B"
    assert harness.s3_encode_key("a~b-c_d.e") == "a~b-c_d.e"


def test_botocore_signs_canonical_path_verbatim():
    """botocore's S3SigV4Auth does not re-quote: if it did, an already
    encoded path would be double-encoded and botocore_authorization raises."""
    _, canonical = harness.botocore_authorization(
        "GET",
        "127.0.0.1:1",
        b"/b/a%20b(1)",
        [("host", "127.0.0.1:1"), ("x-amz-date", "20240101T000000Z"), ("x-amz-content-sha256", EMPTY_SHA256)],
        "20240101T000000Z",
    )
    assert canonical.split("\n")[1] == "/b/a%20b%281%29"


CROSS_CHECK_KEYS = ["plain.txt", "a b+c", "(p)!*'", "ünï/日本.txt", "100%", "x%41y"]


def test_cross_check_accepts_botocore_client_requests(s3, recorder):
    """Requests produced by botocore's own S3 client (captured by the
    recording proxy) must pass check_signed_request; a single flipped
    signature character must not."""
    import botocore.config
    import botocore.session

    session_client = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{recorder.port}",
        aws_access_key_id=harness.ACCESS_KEY,
        aws_secret_access_key=harness.SECRET_KEY,
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    for key in CROSS_CHECK_KEYS:
        s3.put(key, b"cross-check " + key.encode())
    for key in CROSS_CHECK_KEYS:
        recorder.clear()
        body = session_client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body == b"cross-check " + key.encode()
        rec = recorder.last()
        assert rec.path == f"/{BUCKET}/{harness.s3_encode_key(key)}".encode()
        # botocore adds its own headers (amz-sdk-*, user-agent...); the check
        # uses exactly the SignedHeaders list.
        harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")
        authz = rec.header("authorization")
        flipped = authz[:-1] + ("0" if authz[-1] != "0" else "1")
        bad = harness.RecordedRequest.parse(rec.raw_head.replace(authz.encode(), flipped.encode()))
        with pytest.raises(AssertionError):
            harness.check_signed_request(bad)


def _reference_signed_get(port: int, wire_path: bytes, host: str):
    amz_date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = [("host", host), ("x-amz-content-sha256", EMPTY_SHA256), ("x-amz-date", amz_date)]
    authz, _ = harness.botocore_authorization("GET", host, wire_path, headers, amz_date)
    return harness.http_request(
        port,
        "GET",
        wire_path,
        [("Host", host), ("X-Amz-Content-Sha256", EMPTY_SHA256), ("X-Amz-Date", amz_date), ("Authorization", authz)],
    )


@pytest.mark.parametrize(
    "key, wire_key",
    [
        ("(p)!*'", b"(p)!*'"),  # raw sub-delims, as nginx sends them after re-escaping
        ("a b+c", b"a%20b+c"),
        ("ünï/日本.txt", b"%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC.txt"),
        ("semi;co:lon@x=y&z,w$", b"semi;co:lon@x=y&z,w$"),
    ],
)
def test_raw_wire_path_signed_with_s3_rule_is_accepted(s3, recorder, key, wire_key):
    """A request whose wire path is not in canonical form, signed with the S3
    canonical-path rule, is accepted by s3s-fs and passes the cross-check;
    the raw client sends the target without re-encoding."""
    s3.put(key, b"raw " + key.encode())
    wire = f"/{BUCKET}/".encode() + wire_key
    host = f"127.0.0.1:{recorder.port}"
    resp = _reference_signed_get(recorder.port, wire, host)
    assert resp.status == 200, resp
    assert resp.body == b"raw " + key.encode()
    rec = recorder.last()
    assert rec.target == wire
    harness.check_signed_request(rec, expect_host=host)


def test_unsigned_request_is_rejected_by_s3s(s3):
    s3.put("unsigned.txt", b"x")
    resp = harness.http_request(s3.port, "GET", f"/{BUCKET}/unsigned.txt")
    assert resp.status == 403
    assert b"AccessDenied" in resp.body


def test_virtual_host_addressing_in_s3s(s3):
    """s3s-fs --domain s3.amazonaws.com resolves bucket.s3.amazonaws.com
    (no port in Host) to the bucket; used by test_c_module_readme."""
    s3.put("vhost/check.txt", b"vhost ok")
    for domain in harness.VHOST_DOMAINS:
        host = f"{BUCKET}.{domain}"
        resp = _reference_signed_get(s3.port, b"/vhost/check.txt", host)
        assert resp.status == 200, (domain, resp)
        assert resp.body == b"vhost ok"


def test_nginx_runner_without_module(make_nginx, recorder, s3):
    """The Nginx helper: config writing, -t, start, proxying (plain nginx,
    no module), error log access."""
    s3.put("plain/nomod.txt", b"nomod")
    ng = make_nginx(load_module=False)
    ng.write_config(
        f"""
    server {{
        listen 127.0.0.1:{ng.port};
        location / {{ proxy_pass http://127.0.0.1:{recorder.port}; }}
    }}""",
        load_module=False,
    )
    rc, out = ng.test_config()
    assert rc == 0, out
    assert "test is successful" in out
    ng.start()
    resp = ng.request("GET", f"/{BUCKET}/plain/nomod.txt", [("x-test", "1")])
    assert resp.status == 403  # unsigned: s3s-fs refuses
    rec = recorder.last()
    assert rec.target == f"/{BUCKET}/plain/nomod.txt".encode()
    assert rec.values("x-test") == [b"1"]
    assert "start worker process" in ng.error_log()


def test_nginx_t_reports_emerg(make_nginx):
    ng = make_nginx(load_module=False)
    ng.write_config("server { listen 127.0.0.1:1; no_such_directive on; }", load_module=False)
    rc, out = ng.test_config()
    assert rc != 0
    assert "[emerg]" in out and "no_such_directive" in out
