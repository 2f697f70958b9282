"""Behaviour of the module beyond plain GETs: wrong keys, methods, access
phase interplay, rewrites, unsigned locations, aws_sign off, variables."""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import unquote_to_bytes

import pytest

import harness
from harness import BUCKET

OBJ_KEY = "behaviour/object (1).txt"
OBJ_BODY = b"behaviour test object\n" * 50


@pytest.fixture(scope="module")
def obj(s3):
    s3.put(OBJ_KEY, OBJ_BODY)
    s3.put("behaviour/public/open.txt", b"public?\n")
    return OBJ_KEY


OBJ_PATH = f"/{BUCKET}/{harness.s3_encode_key(OBJ_KEY)}"


def simple_server(ng, directives: str, location_body: str, upstream_port: int, loc: str = "/") -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};
{directives}
        location {loc} {{
            {location_body}
            proxy_pass http://127.0.0.1:{upstream_port};
        }}
    }}"""


def test_wrong_signing_key_gives_s3_403_body(nginx, recorder, signing, obj):
    wrong = harness.SigningConfig(secret_key="not-the-secret-s3s-fs-knows")
    assert wrong.signing_key != signing.signing_key
    nginx.write_config(simple_server(nginx, wrong.directives("        "), "aws_sign;", recorder.port))
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 403, resp
    assert b"<Code>SignatureDoesNotMatch</Code>" in resp.body
    assert "xml" in (resp.header("content-type") or "")
    # it was signed -- just with the wrong key
    rec = recorder.last()
    assert len(rec.values("authorization")) == 1
    with pytest.raises(AssertionError):
        harness.check_signed_request(rec)
    harness.check_signed_request(rec, secret_key=wrong.secret_key)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_unsigned_methods_get_405(nginx, recorder, signing, obj, method):
    nginx.write_config(simple_server(nginx, signing.directives("        "), "aws_sign;", recorder.port))
    nginx.start()
    body = b"payload" if method in ("POST", "PUT", "PATCH") else None
    resp = nginx.request(method, OBJ_PATH, body=body)
    assert resp.status == 405, resp
    assert recorder.requests == [], "a non GET/HEAD request reached S3"
    # the object is untouched
    assert nginx.request("GET", OBJ_PATH).body == OBJ_BODY


def test_satisfy_any_auth_basic_still_enforced(nginx, recorder, signing, obj, tmp_path):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:{PLAIN}wonderland\n")
    nginx.write_config(
        simple_server(
            nginx,
            signing.directives("        "),
            f"""satisfy any;
            auth_basic "restricted";
            auth_basic_user_file {htpasswd};
            allow 10.0.0.1;
            deny all;
            aws_sign;""",
            recorder.port,
        )
    )
    nginx.start()

    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 401, resp
    assert recorder.requests == []

    bad = "Basic " + base64.b64encode(b"alice:wrong").decode()
    resp = nginx.request("GET", OBJ_PATH, [("Authorization", bad)])
    assert resp.status == 401, resp
    assert recorder.requests == []

    good = "Basic " + base64.b64encode(b"alice:wonderland").decode()
    resp = nginx.request("GET", OBJ_PATH, [("Authorization", good)])
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    rec = recorder.last()
    # the client's Basic credentials are replaced, not forwarded alongside
    assert all(not v.startswith(b"Basic") for v in rec.values("authorization"))
    harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")


def test_rewrite_break_before_aws_sign(nginx, recorder, signing, obj):
    nginx.write_config(
        simple_server(
            nginx,
            signing.directives("        "),
            "rewrite ^/files/(.*)$ /$1 break;\n            aws_sign;",
            recorder.port,
            loc="/files/",
        )
    )
    nginx.start()
    resp = nginx.request("GET", "/files" + OBJ_PATH)
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    rec = recorder.last()
    # the rewritten URI (nginx re-escapes it; the module may canonicalise
    # it) still names the same object
    assert unquote_to_bytes(rec.path) == f"/{BUCKET}/{OBJ_KEY}".encode()
    harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")


@pytest.mark.parametrize("other_server", [False, True], ids=["no_aws_config_at_all", "signing_server_elsewhere"])
def test_variables_empty_without_signing_config(nginx, signing, other_server):
    other = ""
    if other_server:
        other = f"""
    server {{
        listen 127.0.0.1:{harness.free_port()};
{signing.directives("        ")}
        location / {{ aws_sign; proxy_pass http://127.0.0.1:9; }}
    }}"""
    nginx.write_config(
        f"""{other}
    server {{
        listen 127.0.0.1:{nginx.port};
        location / {{
            return 200 "[$s3_auth_token][$aws_date]";
        }}
    }}"""
    )
    nginx.start()
    resp = nginx.request("GET", "/anything")
    assert resp.status == 200, resp
    assert resp.body == b"[][]"


def test_nested_aws_sign_off_stops_signing(nginx, recorder, signing, obj):
    nginx.write_config(
        f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location /{BUCKET}/ {{
            aws_sign;
            proxy_pass http://127.0.0.1:{recorder.port};

            location /{BUCKET}/behaviour/public/ {{
                aws_sign off;
                proxy_pass http://127.0.0.1:{recorder.port};
            }}
        }}
    }}"""
    )
    nginx.start()

    resp = nginx.request("GET", f"/{BUCKET}/behaviour/public/open.txt")
    assert resp.status == 403, resp
    assert b"AccessDenied" in resp.body
    rec = recorder.last()
    assert rec.values("authorization") == []
    assert rec.values("x-amz-date") == []
    assert rec.values("x-amz-content-sha256") == []

    # the enclosing location still signs
    recorder.clear()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    harness.check_signed_request(recorder.last())


def test_variables_are_consistent(nginx, recorder, signing, obj):
    nginx.write_config(simple_server(nginx, signing.directives("        "), harness.SIGN_VARIABLES, recorder.port))
    nginx.start()
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    resp = nginx.request("GET", OBJ_PATH)
    after = dt.datetime.now(dt.timezone.utc)
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    rec = recorder.last()
    amz_date = rec.header("x-amz-date")
    assert harness.AMZ_DATE_RE.match(amz_date), amz_date
    sent = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(seconds=2) <= sent <= after + dt.timedelta(seconds=2)
    parsed = harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")
    # date inside the credential scope == date of x-amz-date == configured scope date
    assert parsed["date"] == amz_date[:8] == signing.date
    assert f"Credential={signing.access_key}/{signing.scope}," in rec.header("authorization")


def test_variables_mode_head(nginx, recorder, signing, obj):
    nginx.write_config(simple_server(nginx, signing.directives("        "), harness.SIGN_VARIABLES, recorder.port))
    nginx.start()
    resp = nginx.request("HEAD", OBJ_PATH)
    assert resp.status == 200, resp
    assert resp.header("content-length") == str(len(OBJ_BODY))
    rec = recorder.last()
    assert rec.method == "HEAD"
    harness.check_signed_request(rec)


def test_location_key_overrides_server_key(nginx, recorder, signing, obj):
    """Child blocks override inherited directives: a wrong key at server
    level, the right one in the location."""
    wrong = harness.SigningConfig(secret_key="wrong-secret")
    nginx.write_config(
        simple_server(
            nginx,
            wrong.directives("        "),
            f"aws_signing_key {signing.signing_key_b64};\n            aws_sign;",
            recorder.port,
        )
    )
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    harness.check_signed_request(recorder.last())


def test_query_string_is_signed(nginx, recorder, signing, obj):
    """Forwarded response-override query parameters (need encoding, arrive
    unsorted) are part of the signature."""
    nginx.write_config(simple_server(
        nginx, signing.directives("        "),
        "aws_sign; aws_forward_query_params response-content-type response-content-disposition;",
        recorder.port))
    nginx.start()
    query = (
        "response-content-type=text%2Fplain%3B%20charset%3Dutf-8"
        "&response-content-disposition=attachment%3B%20filename%3D%22o%20(1).txt%22"
    )
    resp = nginx.request("GET", OBJ_PATH + "?" + query)
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    rec = recorder.last()
    # same parameters on the wire (the module may re-encode or reorder them)
    assert harness.s3_canonical_query(rec.target.partition(b"?")[2]) == harness.s3_canonical_query(query)
    harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")


@pytest.mark.parametrize("mode", ["aws_sign", "variables"])
def test_signed_host_is_proxy_set_header_host(nginx, recorder, signing, obj, mode):
    """The signed Host is the Host nginx actually sends, here one set with
    proxy_set_header (virtual-hosted style, no bucket in the path)."""
    vhost = f"{BUCKET}.s3.amazonaws.com"
    sign = harness.sign_lines(mode)
    nginx.write_config(
        simple_server(
            nginx,
            signing.directives("        "),
            f"proxy_set_header Host {vhost};\n            {sign}",
            recorder.port,
        )
    )
    nginx.start()
    resp = nginx.request("GET", "/" + harness.s3_encode_key(OBJ_KEY))
    assert resp.status == 200, resp
    assert resp.body == OBJ_BODY
    harness.check_signed_request(recorder.last(), expect_host=vhost)


def test_key_for_another_day_gives_500_and_names_dates(nginx, recorder, signing, obj):
    """A key whose scope date is not today's UTC date cannot sign a request
    AWS would accept: 500, one error line naming both dates, nothing sent."""
    yesterday = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y%m%d")
    old = harness.SigningConfig(date=yesterday)
    nginx.write_config(simple_server(nginx, old.directives("        "), "aws_sign;", recorder.port))
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 500, resp
    assert recorder.requests == [], "an unsignable request reached S3"
    errors = [l for l in nginx.error_log().splitlines() if "[error]" in l and "aws_auth" in l]
    assert len(errors) == 1, errors
    assert yesterday in errors[0] and signing.date in errors[0]


def test_request_for_another_bucket_is_refused(nginx, recorder, signing, obj):
    """aws_s3_bucket says which bucket; an upstream request addressing
    neither bucket.endpoint nor /bucket/ is refused loudly, not sent."""
    nginx.write_config(simple_server(
        nginx, signing.directives("        ", bucket="some-other-bucket"), "aws_sign;", recorder.port))
    nginx.start()
    resp = nginx.request("GET", OBJ_PATH)
    assert resp.status == 403, resp
    assert recorder.requests == []
    errors = [l for l in nginx.error_log().splitlines() if "[error]" in l and "aws_auth" in l]
    assert len(errors) == 1 and "some-other-bucket" in errors[0], errors


def test_no_secret_in_debug_log(nginx, recorder, signing, obj):
    """At debug level the canonical request and string to sign are logged,
    the signing key never is."""
    nginx.write_config(simple_server(nginx, signing.directives("        "), "aws_sign;", recorder.port))
    nginx.start()
    assert nginx.request("GET", OBJ_PATH).status == 200
    log = nginx.error_log()
    assert "aws_auth: canonical request" in log and "aws_auth: string to sign:" in log
    assert signing.signing_key_b64 not in log
    assert signing.signing_key.hex() not in log
    assert signing.secret_key not in log
