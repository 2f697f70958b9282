"""Cross-check: the signer's Authorization equals botocore's for generated
S3 requests (random keys from printable ASCII and UTF-8, random queries).

botocore is given the strictly encoded path and query, the form an AWS SDK
sends. Our signer is given the same request with the escaping varied the
way clients and nginx vary it (some bytes raw, some escaped, lowercase hex),
so the test also proves that decoding then re-encoding lands on the same
canonical request.
"""

import os
import random
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[2]
CASES = 250
SEED = int(os.environ.get("CROSSCHECK_SEED", "20261129"))

PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
UNICODE = ["é", "ß", "日", "本", "語", "😀", "Ω", "ж", "ü", "\u00a0", "€"]


def strict(s: str) -> str:
    return quote(s.encode("utf-8"), safe="-_.~")


def strict_path(key: str) -> str:
    return "/" + quote(key.encode("utf-8"), safe="-_.~/")


def wire_variant(key: str, rng: random.Random, also_escape: str = "") -> str:
    """The same key escaped another valid way: unreserved and some reserved
    bytes raw, others escaped with random hex case. '%' and '?' and '#'
    must stay escaped, as must '+' (a raw '+' is ambiguous to S3) and bytes
    outside printable ASCII."""
    # The path may carry any other byte raw: the signer decodes once.
    out = []
    for b in key.encode("utf-8"):
        c = chr(b)
        if also_escape and c == " " and rng.random() < 0.5:
            out.append("+")  # form encoding of a space in a query
            continue
        must_escape = b < 0x21 or b > 0x7E or c in "%?#+" + also_escape
        if not must_escape and rng.random() < 0.6:
            out.append(c)
        else:
            h = f"{b:02X}"
            out.append("%" + (h.lower() if rng.random() < 0.5 else h))
    return "/" + "".join(out)


def random_text(rng: random.Random, lo: int, hi: int) -> str:
    n = rng.randint(lo, hi)
    pool = PRINTABLE * 3 + UNICODE
    return "".join(rng.choice(pool) for _ in range(n))


def random_query(rng: random.Random):
    pairs = []
    for _ in range(rng.randint(0, 5)):
        k = random_text(rng, 1, 8)
        v = None if rng.random() < 0.2 else random_text(rng, 0, 10)
        pairs.append((k, v))
    return pairs


def query_string(pairs, enc):
    parts = []
    for k, v in pairs:
        parts.append(enc(k) if v is None else f"{enc(k)}={enc(v)}")
    return "&".join(parts)


def botocore_authorization(path, query, host, amz_date, ak, sk, region):
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method="GET", url=url, headers={
        "Host": host,
        "X-Amz-Content-SHA256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    })
    # add_auth() reads the clock; these are its steps with a fixed time.
    auth = S3SigV4Auth(Credentials(ak, sk), "s3", region)
    req.context["timestamp"] = amz_date
    auth._modify_request_before_signing(req)
    canonical = auth.canonical_request(req)
    signature = auth.signature(auth.string_to_sign(req, canonical), req)
    auth._inject_signature_to_request(req, signature)
    return req.headers["Authorization"]


@pytest.fixture(scope="module")
def signer_bin():
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "-p", "aws-signer", "--example", "sign_lines"],
        cwd=ROOT, check=True,
    )
    return ROOT / "target" / "release" / "examples" / "sign_lines"


def test_signer_matches_botocore(signer_bin):
    rng = random.Random(SEED)
    cases = []
    for i in range(CASES):
        key = random_text(rng, 1, 40)
        pairs = random_query(rng)
        host = rng.choice(["examplebucket.s3.amazonaws.com", "127.0.0.1:9000", "s3.eu-west-1.amazonaws.com"])
        amz_date = f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}{rng.randint(0, 59):02d}00Z"
        ak = "AKID" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(12))
        sk = "".join(rng.choice(PRINTABLE[1:]) for _ in range(40))
        region = rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"])
        ours_path = wire_variant(key, rng)
        # Inside a query component '&' and '=' are structure: they stay escaped.
        ours_query = query_string(pairs, lambda s: wire_variant(s, rng, "&=")[1:])
        expected = botocore_authorization(
            strict_path(key), query_string(pairs, strict), host, amz_date, ak, sk, region)
        cases.append((key, pairs, expected,
                      [b"GET", ours_path.encode(), ours_query.encode(), host.encode(),
                       amz_date.encode(), ak.encode(), sk.encode(), region.encode()]))
    stdin = "".join("\t".join(f.hex() for f in c[3]) + "\n" for c in cases)
    res = subprocess.run([str(signer_bin)], input=stdin, capture_output=True, text=True, check=True)
    got = res.stdout.splitlines()
    assert len(got) == len(cases)
    mismatches = [(c[0], c[1], c[2], g) for c, g in zip(cases, got) if c[2] != g]
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ; first: {mismatches[0]!r}"
