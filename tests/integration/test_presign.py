"""$aws_presigned_url: nginx authorizes the client, then hands the
download to S3 with `return 302 $aws_presigned_url;`. The URL is accepted
by s3s-fs, equals botocore's presigned URL for the same time, and stops
working when it expires."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import pytest

import harness
from harness import BUCKET


@pytest.fixture(scope="module")
def obj(s3):
    s3.put("pre/a+b c.txt", b"presigned download\n")


def config(ng, signing, s3_port, extra="", directives=None) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};
{directives if directives is not None else signing.directives("        ")}
        aws_s3_addressing path;
        aws_endpoint 127.0.0.1:{s3_port};
        aws_presign_scheme http;
        {extra}
        location /pre/ {{
            return 302 $aws_presigned_url;
        }}
    }}"""


def botocore_presigned_signature(url: str, token: str | None = None) -> str:
    """botocore's S3SigV4QueryAuth signature for the same request, time and
    expiry as `url`."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    own = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("X-Amz-")]
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    req = AWSRequest(method="GET", url=base, params=dict(own))
    req.context["timestamp"] = params["X-Amz-Date"]
    auth = S3SigV4QueryAuth(Credentials(harness.ACCESS_KEY, harness.SECRET_KEY, token), "s3",
                            harness.REGION, expires=int(params["X-Amz-Expires"]))
    auth._modify_request_before_signing(req)
    canonical = auth.canonical_request(req)
    return auth.signature(auth.string_to_sign(req, canonical), req)


def follow(url: str) -> harness.Response:
    parts = urlsplit(url)
    return harness.http_request(parts.port, "GET", parts.path + "?" + parts.query, host=parts.netloc)


@pytest.mark.parametrize("token", [False, True], ids=["no_token", "session_token"])
def test_presigned_redirect_is_accepted_and_matches_botocore(nginx, s3, signing, obj, token):
    extra = f"aws_session_token {harness.SESSION_TOKEN};" if token else ""
    extra += "\naws_forward_query_params response-content-disposition;"
    nginx.write_config(config(nginx, signing, s3.port, extra + "\naws_presign_expires 10m;"))
    nginx.start()
    # the client's own X-Amz-* parameters and parameters not forwarded are dropped
    resp = nginx.request(
        "GET", "/pre/a%2Bb%20c.txt?X-Amz-Expires=604800&response-content-disposition=attachment"
        "&response-content-type=text/html&x-amz-security-token=client")
    assert resp.status == 302, resp
    url = resp.header("location")
    parts = urlsplit(url)
    assert parts.netloc == f"127.0.0.1:{s3.port}" and parts.path == f"/{BUCKET}/pre/a%2Bb%20c.txt", url
    params = dict(parse_qsl(parts.query))
    names = [k for k, _ in parse_qsl(parts.query)]
    assert names.count("X-Amz-Expires") == 1 and "response-content-type" not in names, url
    assert "x-amz-security-token" not in names, url
    assert params["X-Amz-Expires"] == "600"
    assert params["X-Amz-SignedHeaders"] == "host"
    assert params["response-content-disposition"] == "attachment"
    if token:
        assert params["X-Amz-Security-Token"] == harness.SESSION_TOKEN
    assert params["X-Amz-Signature"] == botocore_presigned_signature(
        url, harness.SESSION_TOKEN if token else None)
    if token:
        # the module's debug line shows the canonical request with the token
        # redacted in the form it takes there (percent-encoded)
        log = nginx.error_log()
        assert "presigned URL canonical request" in log and "X-Amz-Security-Token=<redacted>" in log
    if not token:  # s3s-fs knows no session tokens
        got = follow(url)
        assert got.status == 200 and got.body == b"presigned download\n", got
        assert got.header("content-disposition") == "attachment"


def test_expired_presigned_url_is_rejected(nginx, s3, signing, obj):
    nginx.write_config(config(nginx, signing, s3.port, "aws_presign_expires 1s;"))
    nginx.start()
    url = nginx.request("GET", "/pre/a%2Bb%20c.txt").header("location")
    assert follow(url).status == 200
    time.sleep(2.2)
    got = follow(url)
    assert got.status == 403, got
    # a tampered signature is refused as well
    bad = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert follow(bad).status == 403


def test_expiry_never_passes_the_last_keys_day(nginx, s3, signing, obj):
    """With a single day's key the URL ends at that day's end (UTC), even
    with aws_presign_expires 7d."""
    nginx.write_config(config(nginx, signing, s3.port, "aws_presign_expires 7d;"))
    nginx.start()
    url = nginx.request("GET", "/pre/a%2Bb%20c.txt").header("location")
    params = dict(parse_qsl(urlsplit(url).query))
    now = int(time.time())
    end_of_day = (now // 86400 + 1) * 86400
    expires = int(params["X-Amz-Expires"])
    assert abs(expires - (end_of_day - now)) <= 2, (expires, end_of_day - now)
    assert follow(url).status == 200


def test_presigned_url_is_empty_without_signing_config(nginx):
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
        location / {{ return 200 "[$aws_presigned_url]"; }}
    }}""")
    nginx.start()
    assert nginx.request("GET", "/x").body == b"[]"


def test_readme_pattern_checks_access_before_handing_out_a_url(nginx, s3, signing, obj, tmp_path):
    """The README's pattern: auth_basic, then try_files to a named location
    that returns the presigned URL. Without credentials: 401, no URL."""
    import base64

    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("alice:{PLAIN}wonderland\n")
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        aws_endpoint 127.0.0.1:{s3.port};
        aws_presign_scheme http;
        aws_presign_expires 10m;
        location / {{
            auth_basic "downloads";
            auth_basic_user_file {htpasswd};
            try_files /nonexistent @presign;
        }}
        location @presign {{
            return 302 $aws_presigned_url;
        }}
    }}""")
    nginx.start()
    resp = nginx.request("GET", "/pre/a%2Bb%20c.txt")
    assert resp.status == 401 and resp.header("location") is None, resp
    good = "Basic " + base64.b64encode(b"alice:wonderland").decode()
    resp = nginx.request("GET", "/pre/a%2Bb%20c.txt", [("Authorization", good)])
    assert resp.status == 302, resp
    got = follow(resp.header("location"))
    assert got.status == 200 and got.body == b"presigned download\n", got
