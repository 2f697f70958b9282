"""The usage example from the C module's README (anomalizer/ngx_aws_auth,
"Usage example"), filled in with test values.  Apart from ``load_module``
the only addition is one ``upstream`` block per S3 host name.

How the README host names reach s3s-fs
--------------------------------------
The server block is the README's, with the README's own host names:
``your_s3_bucket.s3.amazonaws.com`` -> ``testbucket.s3.amazonaws.com`` and
``your_s3_bucket.s3.cn-north-1.amazonaws.com.cn`` ->
``testbucket.s3.cn-north-1.amazonaws.com.cn``.  Each of those names is
declared as ``upstream NAME { server 127.0.0.1:<recording proxy>; }`` at
http level, so nginx never resolves them (no DNS, no /etc/hosts edit,
nothing can leave the machine) and sends ``Host: NAME`` without a port.
s3s-fs runs with ``--domain s3.amazonaws.com --domain
s3.cn-north-1.amazonaws.com.cn`` (it compares the full Host header,
including any port, with the domain), so it serves those Hosts
virtual-hosted-style.

Why not /etc/hosts + an explicit port: ``/myfiles`` and ``/s3_beijing``
use ``proxy_pass http://HOST/$1`` -- a variable in proxy_pass makes nginx
look the host up at request time, either in its configured upstreams or
with its own DNS ``resolver`` (which ignores /etc/hosts).  ``/myfiles``
would still work (it reuses the implicit upstream of ``location /``), but
``/s3_beijing``'s host appears in no static proxy_pass, so it can only be
served via a matching ``upstream`` block (or a DNS server).  Using
upstream blocks for both names keeps the README text unchanged.

``location /myfiles`` has no ``aws_sign`` in the README, but it sets its
own ``aws_access_key``/``aws_key_scope``/``aws_signing_key``.  The C module
left such a location unsigned (``enabled`` was set only by ``aws_sign``), so
the README's own example failed there with S3's 403.  This module signs a
location that declares its own credentials unless it says ``aws_sign off``
(README, "aws_sign"), so the README block works as its author meant:
test_readme_myfiles_is_signed.  Credentials inherited from the server level
alone still never sign (test_server_credentials_alone_do_not_sign).
"""

from __future__ import annotations

import pytest

import harness
from harness import BUCKET

ENDPOINT = "s3.amazonaws.com"  # the module's default aws_endpoint
BEIJING = "s3.cn-north-1.amazonaws.com.cn"


def readme_config(ng: harness.Nginx, signing: harness.SigningConfig, upstream_port: int,
                  myfiles_extra: str = "") -> str:
    ak, scope, key = signing.access_key, signing.scope, signing.signing_key_b64
    return f"""
    upstream {BUCKET}.{ENDPOINT} {{ server 127.0.0.1:{upstream_port}; }}
    upstream {BUCKET}.{BEIJING} {{ server 127.0.0.1:{upstream_port}; }}

  server {{
    listen     127.0.0.1:{ng.port};

    aws_access_key {ak}; # Example AKIDEXAMPLE
    aws_key_scope {scope}; #Example 20150830/us-east-1/service/aws4_request
    aws_signing_key {key}; #Example L4vRLWAO92X5L3Sqk5QydUSdB0nC9+1wfqLMOKLbRp4=
    aws_s3_bucket {BUCKET};

    location / {{
      aws_sign;
      proxy_pass http://{BUCKET}.{ENDPOINT};
    }}

    # This is an example that does not use the server root for the proxy root
    location /myfiles {{

      rewrite /myfiles/(.*) /$1 break;
      proxy_pass http://{BUCKET}.{ENDPOINT}/$1;

      aws_access_key {ak};
      aws_key_scope {scope};
      aws_signing_key {key};
      {myfiles_extra}
    }}

    # This is an example that use specific s3 endpoint, default endpoint is s3.amazonaws.com
    location /s3_beijing {{

      rewrite /s3_beijing/(.*) /$1 break;
      proxy_pass http://{BUCKET}.{BEIJING}/$1;

      aws_sign;
      aws_endpoint "{BEIJING}";
      aws_access_key {ak};
      aws_key_scope {scope};
      aws_signing_key {key};
    }}
  }}
"""


OBJECTS = {
    "readme/hello.txt": b"hello from the README test\n",
    "readme/with space (1).txt": b"space and parens\n" * 10,
}


@pytest.fixture(scope="module")
def readme_objects(s3):
    for key, body in OBJECTS.items():
        s3.put(key, body)
    return OBJECTS


@pytest.fixture
def readme_nginx(nginx, recorder, signing, readme_objects):
    nginx.write_config(readme_config(nginx, signing, recorder.port))
    rc, out = nginx.test_config()
    assert rc == 0, out
    nginx.start()
    return nginx


@pytest.mark.parametrize("key", list(OBJECTS))
def test_readme_root_location(readme_nginx, recorder, key):
    resp = readme_nginx.request("GET", "/" + harness.s3_encode_key(key))
    assert resp.status == 200, resp
    assert resp.body == OBJECTS[key]
    rec = recorder.last()
    assert rec.path == ("/" + harness.s3_encode_key(key)).encode()
    harness.check_signed_request(rec, expect_host=f"{BUCKET}.{ENDPOINT}")


def test_readme_s3_beijing_location(readme_nginx, recorder):
    key = "readme/hello.txt"
    resp = readme_nginx.request("GET", "/s3_beijing/" + key)
    assert resp.status == 200, resp
    assert resp.body == OBJECTS[key]
    rec = recorder.last()
    assert rec.path == b"/" + key.encode()
    harness.check_signed_request(rec, expect_host=f"{BUCKET}.{BEIJING}")


def test_readme_s3_beijing_head(readme_nginx, recorder):
    key = "readme/hello.txt"
    resp = readme_nginx.request("HEAD", "/s3_beijing/" + key)
    assert resp.status == 200, resp
    assert resp.header("content-length") == str(len(OBJECTS[key]))
    harness.check_signed_request(recorder.last(), expect_host=f"{BUCKET}.{BEIJING}")


def test_readme_myfiles_is_signed(readme_nginx, recorder):
    """/myfiles declares its own credentials: signed without aws_sign."""
    key = "readme/hello.txt"
    resp = readme_nginx.request("GET", "/myfiles/" + key)
    assert resp.status == 200, resp
    assert resp.body == OBJECTS[key]
    rec = recorder.last()
    assert rec.path == b"/" + key.encode()
    harness.check_signed_request(rec, expect_host=f"{BUCKET}.{ENDPOINT}")


def test_readme_myfiles_aws_sign_off_is_unsigned(nginx, recorder, signing, readme_objects):
    """``aws_sign off`` beats the declared credentials: nothing is added and
    S3 refuses the anonymous request."""
    nginx.write_config(readme_config(nginx, signing, recorder.port, myfiles_extra="aws_sign off;"))
    nginx.start()
    resp = nginx.request("GET", "/myfiles/readme/hello.txt")
    assert resp.status == 403, resp
    assert b"AccessDenied" in resp.body
    rec = recorder.last()
    assert rec.header("host") == f"{BUCKET}.{ENDPOINT}"
    assert rec.values("authorization") == []
    assert rec.values("x-amz-date") == []


def test_server_credentials_alone_do_not_sign(nginx, recorder, signing, readme_objects):
    """A location that only inherits the server's credentials (no aws_sign,
    no variables) sends its request untouched."""
    nginx.write_config(readme_config(nginx, signing, recorder.port).replace(
        "location /myfiles {",
        f"location /plain/ {{ proxy_pass http://{BUCKET}.{ENDPOINT}/; }}\n    location /myfiles {{", 1))
    nginx.start()
    resp = nginx.request("GET", "/plain/readme/hello.txt", headers=[("X-Amz-Foo", "client")])
    assert resp.status == 403, resp
    rec = recorder.last()
    assert rec.values("authorization") == []
    assert rec.values("x-amz-foo") == [b"client"]


def test_readme_myfiles_with_aws_sign(nginx, recorder, signing, readme_objects):
    """The same /myfiles location plus ``aws_sign;`` (rewrite + proxy_pass
    with $1) is signed correctly."""
    nginx.write_config(readme_config(nginx, signing, recorder.port, myfiles_extra="aws_sign;"))
    nginx.start()
    key = "readme/hello.txt"
    resp = nginx.request("GET", "/myfiles/" + key)
    assert resp.status == 200, resp
    assert resp.body == OBJECTS[key]
    rec = recorder.last()
    assert rec.path == b"/" + key.encode()
    harness.check_signed_request(rec, expect_host=f"{BUCKET}.{ENDPOINT}")
