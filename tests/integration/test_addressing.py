"""aws_s3_addressing, $aws_s3_host / $aws_s3_uri, and
aws_forward_amz_headers (client x-amz-* headers: stripped by default,
forwarded and signed when listed)."""

from __future__ import annotations

import pytest

import harness
from harness import BUCKET

VHOST = f"{BUCKET}.s3.amazonaws.com"


@pytest.fixture(scope="module")
def obj(s3):
    s3.put("addr/a+b c.txt", b"addressing object\n")


def test_address_variables(nginx, signing):
    """$aws_s3_host and $aws_s3_uri for both styles: $uri (decoded) in
    S3's strict encoding."""
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location /virtual/ {{
            aws_s3_addressing virtual;
            return 200 "$aws_s3_host $aws_s3_uri\\n";
        }}
        location /path/ {{
            aws_s3_addressing path;
            aws_endpoint minio.internal:9000;
            return 200 "$aws_s3_host $aws_s3_uri\\n";
        }}
        location /default/ {{
            return 200 "$aws_s3_host\\n";
        }}
        location /nobucket/ {{
            aws_s3_bucket off.example;
            return 200 "$aws_s3_host\\n";
        }}
    }}""")
    nginx.start()
    # the decoded URI is "/a+b c/ü%2F(1)!*'~.txt"
    enc = "/a%2Bb%20c/%C3%BC%252F%281%29%21%2A%27~.txt"
    wire = "/a+b%20c/%C3%BC%252F(1)!*'~.txt"
    assert nginx.request("GET", "/virtual" + wire).body.decode() == f"{VHOST} /virtual{enc}\n"
    assert nginx.request("GET", "/path" + wire).body.decode() == f"minio.internal:9000 /{BUCKET}/path{enc}\n"
    assert nginx.request("GET", "/default/x").body.decode() == f"{VHOST}\n"
    assert nginx.request("GET", "/nobucket/x").body.decode() == "off.example.s3.amazonaws.com\n"


@pytest.mark.parametrize(
    "addressing, route, ok",
    [
        ("virtual", "vhost", True),
        ("virtual", "path", False),
        ("path", "path", True),
        ("path", "vhost", False),
    ],
)
def test_explicit_addressing_refuses_the_other_style(nginx, recorder, signing, obj, addressing, route, ok):
    """With aws_s3_addressing set, a request built in the other style is
    answered 403 with one error line saying what to change; nothing is sent."""
    if route == "vhost":
        target, path = f"http://{VHOST}", "/addr/a%2Bb%20c.txt"
    else:
        target, path = f"http://127.0.0.1:{recorder.port}", f"/{BUCKET}/addr/a%2Bb%20c.txt"
    nginx.write_config(f"""
    upstream {VHOST} {{ server 127.0.0.1:{recorder.port}; }}
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing {addressing};
        location / {{
            aws_sign;
            proxy_pass {target};
        }}
    }}""")
    nginx.start()
    resp = nginx.request("GET", path)
    if ok:
        assert resp.status == 200 and resp.body == b"addressing object\n", resp
        harness.check_signed_request(recorder.last())
        return
    assert resp.status == 403, resp
    assert recorder.requests == []
    errors = [l for l in nginx.error_log().splitlines() if "[error]" in l and "aws_auth" in l]
    assert len(errors) == 1, errors
    assert f"aws_s3_addressing {addressing}" in errors[0] and BUCKET in errors[0], errors


def test_default_endpoint_follows_the_keys_region(nginx, recorder, obj):
    """Without aws_endpoint, keys of another region than us-east-1 make
    the region's endpoint the default ($aws_s3_host), and the bucket check
    takes AWS's other names of it (global, dual-stack, dashed); another
    region's endpoint or another port is still refused, and so is another
    bucket at any of them."""
    eu = harness.SigningConfig(region="eu-west-1")
    regional = "s3.eu-west-1.amazonaws.com"
    hosts = [f"{BUCKET}.{regional}", VHOST, f"{BUCKET}.s3.dualstack.eu-west-1.amazonaws.com",
             f"{BUCKET}.s3-eu-west-1.amazonaws.com", regional]
    locations = "".join(f"""
        location /{i}/ {{
            aws_sign;
            proxy_set_header Host {host};
            proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET + '/' if host == regional else ''}addr/;
        }}""" for i, host in enumerate(hosts + ["b.s3.us-west-2.amazonaws.com", f"{BUCKET}.s3.us-west-2.amazonaws.com", "other." + regional]))
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{eu.directives("        ")}
        location = /host {{
            return 200 "$aws_s3_host";
        }}
        location = /us {{
            aws_key_scope {harness.SigningConfig().scope};
            aws_signing_key {harness.SigningConfig().signing_key_b64};
            return 200 "$aws_s3_host";
        }}
        location = /set {{
            aws_endpoint s3.eu-west-1.example;
            return 200 "$aws_s3_host";
        }}{locations}
    }}""")
    nginx.start()
    assert nginx.request("GET", "/host").body.decode() == f"{BUCKET}.{regional}"
    # us-east-1 keys keep the C module's default
    assert nginx.request("GET", "/us").body.decode() == VHOST
    assert nginx.request("GET", "/set").body.decode() == f"{BUCKET}.s3.eu-west-1.example"
    for i, host in enumerate(hosts):
        recorder.clear()
        resp = nginx.request("GET", f"/{i}/a%2Bb%20c.txt")
        # signed and sent (the test server knows only the global name)
        assert len(recorder.requests) == 1, (host, resp)
        harness.check_signed_request(recorder.last(), region="eu-west-1", expect_host=host)
        if host == VHOST:
            assert resp.status == 200 and resp.body == b"addressing object\n", resp
    sent = len(recorder.requests)
    for i in range(len(hosts), len(hosts) + 3):
        assert nginx.request("GET", f"/{i}/a%2Bb%20c.txt").status == 403
    assert len(recorder.requests) == sent


def test_s3_auth_token_outside_proxy_follows_addressing(nginx, signing):
    """Outside proxy_pass, $s3_auth_token signs the client's request line
    for $aws_s3_host, with /bucket first under path addressing, and under
    the rules of a proxied request: only forwarded query parameters, no
    unsigned method, no request for the bucket itself."""
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_s3_addressing path;
        aws_endpoint s3.eu-west-1.amazonaws.com;
        location / {{
            return 200 "$s3_auth_token|$aws_date";
        }}
        location /versions/ {{
            aws_forward_query_params versionId;
            return 200 "$s3_auth_token|$aws_date";
        }}
    }}""")
    nginx.start()
    host = "s3.eu-west-1.amazonaws.com"

    def expected(target: str, amz_date: str) -> str:
        return harness.botocore_authorization(
            "GET", host, target.encode(),
            [("host", host), ("x-amz-content-sha256", harness.EMPTY_SHA256),
             ("x-amz-date", amz_date)], amz_date)[0]

    resp = nginx.request("GET", "/versions/a%2Bb.txt?versionId=3&acl")
    auth, amz_date = resp.body.decode().split("|")
    assert auth == expected(f"/{BUCKET}/versions/a%2Bb.txt?versionId=3", amz_date)
    # by default the query is not the client's to sign
    resp = nginx.request("GET", "/dir/a%2Bb.txt?versionId=3")
    auth, amz_date = resp.body.decode().split("|")
    assert auth == expected(f"/{BUCKET}/dir/a%2Bb.txt", amz_date)
    # a method that is not signed, the bucket itself: an empty value
    assert nginx.request("DELETE", "/dir/a").body.decode().split("|")[0] == ""
    assert nginx.request("GET", "/").body.decode().split("|")[0] == ""
    assert nginx.request("GET", "/?list-type=2").body.decode().split("|")[0] == ""


FORWARD = "aws_forward_amz_headers x-amz-checksum-mode X-Amz-Request-Payer x-amz-expected-bucket-owner;"


@pytest.mark.parametrize("mode", ["aws_sign", "variables"])
def test_forwarded_amz_headers_are_signed_the_rest_stripped(nginx, recorder, signing, obj, mode):
    sign = harness.sign_lines(mode)
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        {FORWARD}
        location / {{
            {sign}
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        location /strict/ {{
            aws_forward_amz_headers none;
            {sign}
            proxy_pass http://127.0.0.1:{recorder.port}/;
        }}
    }}""")
    nginx.start()
    client = [
        ("x-amz-checksum-mode", "ENABLED"),
        ("x-amz-request-payer", "requester"),
        ("x-amz-expected-bucket-owner", "111122223333"),
        ("x-amz-foo", "not listed"),
        ("x-amz-date", "20000101T000000Z"),
        ("x-amz-security-token", "client-token"),
    ]
    path = f"/{BUCKET}/addr/a%2Bb%20c.txt"
    resp = nginx.request("GET", path, client)
    assert resp.status == 200 and resp.body == b"addressing object\n", resp
    rec = recorder.last()
    parsed = harness.check_signed_request(rec)
    assert parsed["signed_headers"] == [
        "host", "x-amz-checksum-mode", "x-amz-content-sha256", "x-amz-date",
        "x-amz-expected-bucket-owner", "x-amz-request-payer",
    ]
    assert rec.values("x-amz-foo") == [] and rec.values("x-amz-security-token") == []
    assert rec.header("x-amz-checksum-mode") == "ENABLED"

    recorder.clear()
    resp = nginx.request("GET", "/strict" + path, client)
    assert resp.status == 200, resp
    rec = recorder.last()
    assert harness.check_signed_request(rec)["signed_headers"] == [
        "host", "x-amz-content-sha256", "x-amz-date"]
    assert [n for n in rec.names() if n.lower().startswith("x-amz-")] == [
        "x-amz-content-sha256", "x-amz-date"]
