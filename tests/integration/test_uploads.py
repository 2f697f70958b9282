"""Writes through nginx: PUT, POST (multipart uploads), DELETE, with
`aws_payload unsigned` (UNSIGNED-PAYLOAD, streamed) and `aws_payload
signed` (SHA-256 of the body, hashed while nginx reads it, in memory or
spooled to a temporary file); 405 and 413; the aws CLI and curl as
clients. Every request that reaches s3s-fs is checked against botocore."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
import subprocess
import time

import pytest

import harness
from harness import BUCKET
from test_clients import aws_env, run, tool

MIB = 1024 * 1024
PAYLOADS = ["unsigned", "signed"]


def gateway_config(ng: harness.Nginx, signing: harness.SigningConfig, upstream: int,
                   payload: str, extra: str = "") -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ng.port};
        client_max_body_size 0;
{signing.directives("        ")}
        aws_s3_addressing path;
        aws_endpoint 127.0.0.1:{upstream};
        aws_sign_methods GET HEAD PUT POST DELETE;
        aws_forward_query_params uploads uploadId partNumber;
        aws_payload {payload};
        {extra}
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}"""


@pytest.fixture
def gateway(nginx, recorder, signing, request):
    payload = request.param if hasattr(request, "param") else "unsigned"
    nginx.write_config(gateway_config(nginx, signing, recorder.port, payload))
    nginx.start()
    nginx.payload = payload
    return nginx


def check_all(recorder, payload: str) -> list[harness.RecordedRequest]:
    reqs = recorder.requests
    assert reqs
    for rec in reqs:
        harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")
        cl = rec.values("content-length")
        sha = rec.header("x-amz-content-sha256")
        if cl and cl[0] != b"0":
            if payload == "unsigned":
                assert sha == "UNSIGNED-PAYLOAD", rec.head_text()
            else:
                assert len(sha) == 64 and sha != harness.EMPTY_SHA256, rec.head_text()
        else:
            assert sha == harness.EMPTY_SHA256, rec.head_text()
    return reqs


@pytest.mark.parametrize("gateway", PAYLOADS, indirect=True)
def test_curl_put_get_delete(gateway, recorder, s3, tmp_path):
    curl = tool("curl")
    data = os.urandom(3 * MIB + 5)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    url = f"http://127.0.0.1:{gateway.port}/{BUCKET}/up/curl%2B{gateway.payload}.bin"
    run([curl, "-sf", "-T", str(src), url])
    key = f"up/curl+{gateway.payload}.bin"
    assert s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    assert run([curl, "-sf", url]) == data
    # chunked from stdin: read whole by the module, sent with Content-Length
    p = subprocess.run([curl, "-sf", "-T", "-", url + "2"], input=data[:100000],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert s3.client.get_object(Bucket=BUCKET, Key=key + "2")["Body"].read() == data[:100000]
    run([curl, "-sf", "-X", "DELETE", url])
    with pytest.raises(s3.client.exceptions.NoSuchKey):
        s3.client.get_object(Bucket=BUCKET, Key=key)
    reqs = check_all(recorder, gateway.payload)
    assert [r.method for r in reqs] == ["PUT", "GET", "PUT", "DELETE"]
    assert all(not r.values("transfer-encoding") for r in reqs)
    if gateway.payload == "signed":
        assert reqs[0].header("x-amz-content-sha256") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("gateway", PAYLOADS, indirect=True)
def test_aws_cli_multipart_upload_download_rm(gateway, recorder, s3, tmp_path):
    aws = tool("aws")
    endpoint = ["--endpoint-url", f"http://127.0.0.1:{gateway.port}"]
    env = aws_env(tmp_path)
    data = os.urandom(20 * MIB + 123)
    src = tmp_path / "20mib.bin"
    src.write_bytes(data)
    key = f"up/aws cli+{gateway.payload}.bin"
    run([aws, *endpoint, "s3", "cp", str(src), f"s3://{BUCKET}/{key}"], env)
    assert s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    out = tmp_path / "back.bin"
    run([aws, *endpoint, "s3", "cp", f"s3://{BUCKET}/{key}", str(out)], env)
    assert out.read_bytes() == data
    run([aws, *endpoint, "s3", "rm", f"s3://{BUCKET}/{key}"], env)
    with pytest.raises(s3.client.exceptions.NoSuchKey):
        s3.client.get_object(Bucket=BUCKET, Key=key)
    reqs = check_all(recorder, gateway.payload)
    targets = [(r.method, r.target.partition(b"?")[2]) for r in reqs]
    assert ("POST", b"uploads") in [(m, q.split(b"&")[0]) for m, q in targets], targets
    parts = [r for r in reqs if r.method == "PUT" and b"partNumber=" in r.target]
    assert len(parts) >= 3, targets  # 8 MiB parts
    assert any(m == "POST" and b"uploadId=" in q for m, q in targets), targets
    assert any(m == "DELETE" for m, _ in targets)


def test_tampered_signed_body_is_rejected(gateway_signed, recorder, s3):
    recorder.tamper_next_body = True
    body = b"the body that was signed\n" * 100
    resp = gateway_signed.request("PUT", f"/{BUCKET}/up/tampered.txt", body=body)
    # AWS answers 400 XAmzContentSHA256Mismatch; s3s-fs 0.14.1 a 500 whose
    # cause is in its log.
    assert resp.status >= 400, resp
    assert "Sha256Mismatch" in s3.log_text()
    with pytest.raises(s3.client.exceptions.NoSuchKey):
        s3.client.get_object(Bucket=BUCKET, Key="up/tampered.txt")
    # untampered, the same request is accepted
    resp = gateway_signed.request("PUT", f"/{BUCKET}/up/tampered.txt", body=body)
    assert resp.status == 200, resp


@pytest.fixture
def gateway_signed(nginx, recorder, signing):
    nginx.write_config(gateway_config(nginx, signing, recorder.port, "signed",
                                      extra="client_body_buffer_size 1k;\naws_payload_max_size 300m;"))
    nginx.start()
    return nginx


def test_signed_body_spooled_to_a_temp_file(gateway_signed, recorder, s3):
    data = os.urandom(5 * MIB + 7)
    resp = gateway_signed.request("PUT", f"/{BUCKET}/up/spooled.bin", body=data)
    assert resp.status == 200, resp
    assert "a client request body is buffered to a temporary file" in gateway_signed.error_log()
    assert s3.client.get_object(Bucket=BUCKET, Key="up/spooled.bin")["Body"].read() == data
    [rec] = check_all(recorder, "signed")
    assert rec.header("x-amz-content-sha256") == hashlib.sha256(data).hexdigest()


def worker_hwm_kib(ng: harness.Nginx) -> int:
    """Peak RSS (VmHWM) of nginx's worker, in KiB."""
    out = subprocess.run(["pgrep", "-P", str(ng.proc.pid)], capture_output=True, text=True).stdout
    [pid] = out.split()
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_rss_stays_flat_for_a_200mib_signed_upload(gateway_signed, recorder, s3):
    """The body is hashed as it streams in and spooled to a file by nginx:
    the worker's peak RSS does not grow with the body."""
    gateway_signed.request("GET", f"/{BUCKET}/up/none")  # warm the worker
    before = worker_hwm_kib(gateway_signed)
    size = 200 * MIB
    chunk = os.urandom(MIB)
    sha = hashlib.sha256()
    import socket

    with socket.create_connection(("127.0.0.1", gateway_signed.port), timeout=120) as sock:
        sock.sendall(
            f"PUT /{BUCKET}/up/200mib.bin HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        for _ in range(size // MIB):
            sock.sendall(chunk)
            sha.update(chunk)
        resp = b""
        while True:
            d = sock.recv(65536)
            if not d:
                break
            resp += d
    assert resp.startswith(b"HTTP/1.1 200"), resp[:500]
    after = worker_hwm_kib(gateway_signed)
    growth_mib = (after - before) / 1024
    print(f"\nworker VmHWM before {before} KiB, after {after} KiB, growth {growth_mib:.1f} MiB "
          f"for a {size // MIB} MiB signed upload")
    assert growth_mib < 16, growth_mib
    [rec] = [r for r in recorder.requests if r.method == "PUT"]
    assert rec.header("x-amz-content-sha256") == sha.hexdigest()
    head = s3.client.head_object(Bucket=BUCKET, Key="up/200mib.bin")
    assert head["ContentLength"] == size


def test_payload_max_size_gives_413(nginx, recorder, signing):
    nginx.write_config(gateway_config(nginx, signing, recorder.port, "signed",
                                      extra="aws_payload_max_size 1m;"))
    nginx.start()
    big = b"x" * (MIB + 1)
    resp = nginx.request("PUT", f"/{BUCKET}/up/too-big", body=big)
    assert resp.status == 413, resp
    time.sleep(1.1)  # one such line per second and worker
    # chunked: the size is known only while reading
    resp = nginx.request("PUT", f"/{BUCKET}/up/too-big",
                         [("Transfer-Encoding", "chunked")],
                         body=None, raw_body=b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
    assert resp.status == 413, resp
    assert recorder.requests == []
    lines = [l for l in nginx.error_log().splitlines() if "aws_payload_max_size" in l]
    assert len(lines) == 2, lines
    resp = nginx.request("PUT", f"/{BUCKET}/up/small", body=b"small")
    assert resp.status == 200, resp


def test_method_not_listed_gets_405_with_allow(nginx, recorder, signing):
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location / {{
            aws_sign;
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        location /rw/ {{
            aws_sign;
            aws_sign_methods GET HEAD PUT;
            proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    resp = nginx.request("PUT", f"/{BUCKET}/up/x", body=b"x")
    assert resp.status == 405 and resp.header("allow") == "GET, HEAD", resp
    resp = nginx.request("DELETE", "/rw/up/x")
    assert resp.status == 405 and resp.header("allow") == "GET, HEAD, PUT", resp
    assert recorder.requests == []
    resp = nginx.request("PUT", "/rw/up/x", body=b"x")
    assert resp.status == 200, resp


@pytest.mark.parametrize("payload", PAYLOADS)
def test_variables_mode_uploads(nginx, recorder, signing, s3, payload):
    """Variables mode with aws_sign_methods: both payload modes sign, with
    request buffering on or off (a body to hash is read by the module
    first)."""
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        aws_payload {payload};
        aws_sign_methods GET HEAD PUT;
        location / {{
            {harness.SIGN_VARIABLES}
            proxy_pass http://127.0.0.1:{recorder.port};
        }}
        location /nobuf/ {{
            proxy_request_buffering off;
            {harness.SIGN_VARIABLES}
            proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    data = os.urandom(200000)
    for path, key in ((f"/{BUCKET}/up/vars-{payload}", f"up/vars-{payload}"),
                      (f"/nobuf/up/nobuf-{payload}", f"up/nobuf-{payload}")):
        resp = nginx.request("PUT", path, body=data)
        assert resp.status == 200, resp
        assert s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    check_all(recorder, payload)


def test_body_that_cannot_be_hashed_is_refused(nginx, recorder, signing, s3):
    """A signed payload whose body is not the one read (proxy_set_body):
    500/502 and one clear line, nothing sent. A chunked body that the proxy
    would stream with proxy_request_buffering off (and its own output
    filter in place of the signing one) is read whole by the module first,
    and sent with Content-Length, signed."""
    nginx.write_config(f"""
    server {{
        listen 127.0.0.1:{nginx.port};
{signing.directives("        ")}
        location /other-body/ {{
            aws_payload signed;
            aws_sign_methods PUT;
            proxy_set_body "not the client's body";
            {harness.SIGN_VARIABLES}
            proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET}/;
        }}
        location /chunked/ {{
            aws_payload unsigned;
            aws_sign_methods PUT;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            {harness.SIGN_VARIABLES}
            proxy_pass http://127.0.0.1:{recorder.port}/{BUCKET}/;
        }}
    }}""")
    nginx.start()
    resp = nginx.request("PUT", "/other-body/up/x", body=b"x" * 1000)
    assert resp.status in (500, 502), resp
    assert "cannot sign the request body: 1000 bytes were read and hashed" in nginx.error_log()
    assert recorder.requests == []
    # the body is still arriving when the proxy would start
    import socket

    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as sock:
        sock.sendall(b"PUT /chunked/up/y HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n3\r\nabc\r\n")
        time.sleep(0.3)
        sock.sendall(b"3\r\ndef\r\n0\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert s3.client.get_object(Bucket=BUCKET, Key="up/y")["Body"].read() == b"abcdef"
    [rec] = check_all(recorder, "unsigned")
    assert rec.values("content-length") == [b"6"] and not rec.values("transfer-encoding")


def aws_chunked(data: bytes, chunk: int = 64 * 1024) -> tuple[bytes, str]:
    """An aws-chunked body with unsigned chunks and a CRC32 trailer, as
    current AWS SDKs send uploads over HTTPS; and the checksum."""
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    out = bytearray()
    for i in range(0, len(data), chunk):
        part = data[i:i + chunk]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    out += b"0\r\nx-amz-checksum-crc32:" + crc.encode() + b"\r\n\r\n"
    return bytes(out), crc


STREAMING_HEADERS = [
    ("Content-Encoding", "aws-chunked"),
    ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
    ("x-amz-trailer", "x-amz-checksum-crc32"),
    ("x-amz-sdk-checksum-algorithm", "CRC32"),
]


@pytest.mark.parametrize("size", [6, 200 * 1024])
def test_aws_chunked_upload_is_stored_as_its_bytes(gateway, recorder, s3, size):
    # the framing goes on as it is, signed as STREAMING-UNSIGNED-PAYLOAD-TRAILER
    # with its decoded length and trailer name: the server strips it
    data = os.urandom(size)
    framed, crc = aws_chunked(data)
    key = f"up/chunked-{size}.bin"
    r = gateway.request("PUT", f"/{BUCKET}/{key}",
                        STREAMING_HEADERS + [("x-amz-decoded-content-length", str(size))],
                        body=framed)
    assert r.status == 200, r
    (rec,) = recorder.requests
    harness.check_signed_request(rec, expect_host=f"127.0.0.1:{recorder.port}")
    assert rec.header("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert rec.header("x-amz-decoded-content-length") == str(size)
    assert rec.header("x-amz-trailer") == "x-amz-checksum-crc32"
    assert rec.header("content-length") == str(len(framed))
    got = s3.client.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == data
    # the trailer reached the server, which checked and kept the checksum
    # (s3s-fs also keeps the aws-chunked coding that AWS would strip)
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-crc32"] == crc


@pytest.mark.parametrize("case", ["aws_payload signed", "chunk signatures", "no decoded length",
                                  "minio-go over http", "no content-encoding"])
def test_aws_chunked_upload_that_cannot_go_on_is_refused(nginx, recorder, signing, s3, case):
    # stored as a plain body, the framing would become the object's bytes;
    # minio-go sends chunk-signed uploads over plain HTTP with no
    # Content-Encoding: the framing is told by x-amz-content-sha256
    payload = "signed" if case == "aws_payload signed" else "unsigned"
    nginx.write_config(gateway_config(nginx, signing, recorder.port, payload))
    nginx.start()
    data = b"hello\n"
    framed, _ = aws_chunked(data)
    headers = STREAMING_HEADERS + [("x-amz-decoded-content-length", str(len(data)))]
    if case == "chunk signatures":
        headers = [(n, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" if n == "x-amz-content-sha256" else v)
                   for n, v in headers]
    if case == "no decoded length":
        headers = headers[:-1]
    if case in ("minio-go over http", "no content-encoding"):
        headers = [(n, v) for n, v in headers if n.lower() != "content-encoding"]
    if case == "minio-go over http":
        headers = [(n, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" if n == "x-amz-content-sha256" else v)
                   for n, v in headers]
    r = nginx.request("PUT", f"/{BUCKET}/up/refused.bin", headers, body=framed)
    assert r.status == 400, r
    assert recorder.requests == []
    assert "aws-chunked upload" in nginx.error_log()
    with pytest.raises(Exception):
        s3.client.head_object(Bucket=BUCKET, Key="up/refused.bin")
    # the next request goes through: nothing was held against the upstream
    ok = nginx.request("PUT", f"/{BUCKET}/up/after.bin", body=b"x")
    assert ok.status == 200, ok


@pytest.mark.parametrize("payload", PAYLOADS)
def test_botocore_put_object_over_https(nginx, recorder, signing, s3, tmp_path, payload):
    # over HTTPS, botocore (1.36 on) sends PutObject as an aws-chunked body
    # with a CRC32 trailer: stored as the object's bytes with aws_payload
    # unsigned, refused (400, nothing stored) with aws_payload signed
    import botocore.config
    import botocore.exceptions
    import botocore.session

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = harness.free_port()
    nginx.write_config(gateway_config(nginx, signing, recorder.port, payload).replace(
        f"listen 127.0.0.1:{nginx.port};",
        f"listen 127.0.0.1:{nginx.port};\n        listen 127.0.0.1:{tls} ssl;\n"
        f"        ssl_certificate {cert};\n        ssl_certificate_key {key};", 1))
    nginx.start()

    def sdk(checksums: str):
        return botocore.session.get_session().create_client(
            "s3", region_name="us-east-1", endpoint_url=f"https://127.0.0.1:{tls}",
            aws_access_key_id="AKIDCLIENT", aws_secret_access_key="client-secret", verify=False,
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          request_checksum_calculation=checksums,
                                          retries={"max_attempts": 1}))

    client = sdk("when_supported")
    data = os.urandom(300 * 1024)
    key_name = f"up/sdk-{payload}.bin"
    if payload == "unsigned":
        client.put_object(Bucket=BUCKET, Key=key_name, Body=data)
        (rec,) = recorder.requests
        assert rec.header("content-encoding") == "aws-chunked", rec.head_text()
        harness.check_signed_request(rec)
        assert s3.client.get_object(Bucket=BUCKET, Key=key_name)["Body"].read() == data
    else:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.put_object(Bucket=BUCKET, Key=key_name, Body=data)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert recorder.requests == []
        # the SDK sends a plain body when told to compute checksums only
        # where required
        sdk("when_required").put_object(Bucket=BUCKET, Key=key_name, Body=data)
        assert s3.client.get_object(Bucket=BUCKET, Key=key_name)["Body"].read() == data


def plain_sdk(ng: harness.Nginx):
    import botocore.config
    import botocore.session
    return botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{ng.port}",
        aws_access_key_id="AKIDCLIENT", aws_secret_access_key="client-secret",
        config=botocore.config.Config(s3={"addressing_style": "path"},
                                      retries={"total_max_attempts": 1}))


def test_a_write_without_what_names_its_operation_is_refused(nginx, recorder, signing, s3):
    # CopyObject, PutObjectTagging and DeleteObjectTagging through the
    # upload location, where x-amz-copy-source and ?tagging are not
    # forwarded: sent without them they would be an empty PUT over the
    # destination, an overwrite of the object with the tagging XML and a
    # DELETE of the object. Each gets 400 and nothing reaches S3.
    import botocore.exceptions
    nginx.write_config(gateway_config(nginx, signing, recorder.port, "unsigned"))
    nginx.start()
    s3.client.put_object(Bucket=BUCKET, Key="keep/src.txt", Body=b"precious")
    s3.client.put_object(Bucket=BUCKET, Key="keep/dst.txt", Body=b"old")
    client = plain_sdk(nginx)
    calls = [
        lambda: client.copy_object(Bucket=BUCKET, Key="keep/dst.txt",
                                   CopySource=f"{BUCKET}/keep/src.txt"),
        lambda: client.put_object_tagging(Bucket=BUCKET, Key="keep/src.txt",
                                          Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
        lambda: client.delete_object_tagging(Bucket=BUCKET, Key="keep/src.txt"),
        lambda: client.put_object(Bucket=BUCKET, Key="keep/src.txt", Body=b"x",
                                  Tagging="a=b"),
    ]
    for call in calls:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert recorder.requests == []
    assert s3.client.get_object(Bucket=BUCKET, Key="keep/src.txt")["Body"].read() == b"precious"
    assert s3.client.get_object(Bucket=BUCKET, Key="keep/dst.txt")["Body"].read() == b"old"
    assert "refused" in nginx.error_log()
    # a plain PutObject goes on, with the checksum the SDK adds on its own
    # forwarded and signed (S3 checks the body against it)
    client.put_object(Bucket=BUCKET, Key="keep/plain.txt", Body=b"plain")
    assert s3.client.get_object(Bucket=BUCKET, Key="keep/plain.txt")["Body"].read() == b"plain"
    (rec,) = check_all(recorder, "unsigned")
    crc = base64.b64encode(zlib.crc32(b"plain").to_bytes(4, "big")).decode()
    assert rec.header("x-amz-checksum-crc32") == crc, rec.head_text()
    assert "x-amz-checksum-crc32" in rec.header("authorization"), rec.head_text()
    # the client's own checksum reaches the server as the client sent it,
    # and the server checks the body against it
    recorder.clear()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.put_object(Bucket=BUCKET, Key="keep/given.txt", Body=b"plain",
                          ChecksumCRC32=base64.b64encode(b"\0\0\0\0").decode())
    assert e.value.response["Error"]["Code"] == "BadDigest", e.value.response
    (rec,) = recorder.requests
    assert rec.header("x-amz-checksum-crc32") == "AAAAAA==", rec.head_text()
    harness.check_signed_request(rec)


def test_a_forwarded_copy_source_must_be_in_the_bucket(nginx, recorder, signing, s3):
    # with x-amz-copy-source forwarded, CopyObject works inside the
    # configured bucket, and a copy out of another bucket is refused (403)
    # before anything is sent: it would read that bucket's object
    import botocore.exceptions
    s3.client.create_bucket(Bucket="other")
    s3.client.put_object(Bucket="other", Key="secret.txt", Body=b"SECRET")
    s3.client.put_object(Bucket=BUCKET, Key="cp/src.txt", Body=b"mine")
    nginx.write_config(gateway_config(
        nginx, signing, recorder.port, "unsigned",
        "aws_forward_amz_headers x-amz-copy-source x-amz-metadata-directive;"))
    nginx.start()
    client = plain_sdk(nginx)
    client.copy_object(Bucket=BUCKET, Key="cp/dst.txt", CopySource=f"{BUCKET}/cp/src.txt")
    assert s3.client.get_object(Bucket=BUCKET, Key="cp/dst.txt")["Body"].read() == b"mine"
    (rec,) = recorder.requests
    assert rec.header("x-amz-copy-source") == f"{BUCKET}/cp/src.txt", rec.head_text()
    harness.check_signed_request(rec)
    for source in ["other/secret.txt", "/other/secret.txt", f"{BUCKET}/../other/secret.txt"]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.copy_object(Bucket=BUCKET, Key="cp/loot.txt", CopySource=source)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, source
    assert len(recorder.requests) == 1
    with pytest.raises(botocore.exceptions.ClientError):
        s3.client.head_object(Bucket=BUCKET, Key="cp/loot.txt")


@pytest.mark.parametrize("gateway", ["unsigned"], indirect=True)
def test_a_slow_buffered_upload_is_signed_with_the_time_it_ends(gateway, recorder, s3):
    # nginx reads the whole body before the head goes out: x-amz-date is
    # the time the body ended, not the time it began (an upload of more
    # than 15 minutes would otherwise be refused as RequestTimeTooSkewed)
    import datetime
    import socket
    body = b"abc"
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as c:
        c.sendall(f"PUT /{BUCKET}/up/slow.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        for b in body:
            time.sleep(1.1)
            last_sent = int(time.time())
            c.sendall(bytes([b]))
        answer = b""
        while chunk := c.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer
    (rec,) = recorder.requests
    sent = datetime.datetime.strptime(rec.header("x-amz-date"), "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert sent >= last_sent - 1, (rec.header("x-amz-date"), last_sent)
    harness.check_signed_request(rec)
    assert s3.client.get_object(Bucket=BUCKET, Key="up/slow.txt")["Body"].read() == body


def test_metadata_headers_are_forwarded_by_a_pattern(nginx, recorder, signing, s3):
    # aws_forward_amz_headers x-amz-meta-*: PutObject keeps its metadata;
    # without the pattern the same upload is refused, not stored without it
    nginx.write_config(gateway_config(nginx, signing, recorder.port, "unsigned",
                                      "aws_forward_amz_headers x-amz-meta-*;"))
    nginx.start()
    client = plain_sdk(nginx)
    client.put_object(Bucket=BUCKET, Key="meta/a.txt", Body=b"a",
                      Metadata={"colour": "red", "Size": "9"})
    got = s3.client.head_object(Bucket=BUCKET, Key="meta/a.txt")["Metadata"]
    assert got == {"colour": "red", "size": "9"}, got
    (rec,) = recorder.requests
    assert "x-amz-meta-colour" in rec.header("authorization"), rec.head_text()
    harness.check_signed_request(rec)
