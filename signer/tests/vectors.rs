//! The official AWS SigV4 test vectors (copied under `tests/data`, Apache-2.0,
//! with their LICENSE/NOTICE) and the known S3 vectors.
//!
//! Every case of `classic` (34) and `aws-c-auth/v4` (40, header variant)
//! is checked byte for byte: canonical request, string to sign, signature
//! and, where the suite has it, the `Authorization` value. No case is left
//! out. The `query-*` (presigned URL) variant of every aws-c-auth case is
//! checked the same way against [`aws_signer::presign`].

use std::fs;
use std::path::{Path, PathBuf};

use aws_signer::{
    derive_signing_key, presign, sha256_hex, sign, Credentials, PathRules, Request, Scope,
    EMPTY_PAYLOAD_SHA256,
};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AMZ_DATE: &str = "20150830T123600Z";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

struct RawRequest {
    method: Vec<u8>,
    path: Vec<u8>,
    query: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// Parses the suite's request files: request line, `Name:value` headers with
/// folded continuation lines, a blank line and the body.
fn parse_request(text: &[u8]) -> RawRequest {
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap();
    let sp1 = first.iter().position(|&b| b == b' ').unwrap();
    let sp2 = first.iter().rposition(|&b| b == b' ').unwrap();
    let method = first[..sp1].to_vec();
    let target = &first[sp1 + 1..sp2];
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (target[..i].to_vec(), target[i + 1..].to_vec()),
        None => (target.to_vec(), Vec::new()),
    };
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut body = Vec::new();
    let mut in_body = false;
    for line in lines {
        if in_body {
            if !body.is_empty() {
                body.push(b'\n');
            }
            body.extend_from_slice(line);
        } else if line.is_empty() {
            in_body = true;
        } else if line[0] == b' ' || line[0] == b'\t' {
            let last = headers.last_mut().unwrap();
            last.1.push(b'\n');
            last.1.extend_from_slice(line);
        } else {
            let colon = line.iter().position(|&b| b == b':').unwrap();
            headers.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        }
    }
    RawRequest {
        method,
        path,
        query,
        headers,
        body,
    }
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_str(path: &Path) -> String {
    String::from_utf8(read(path)).unwrap()
}

struct Outcome {
    canonical_request: Vec<u8>,
    string_to_sign: String,
    signature: String,
    authorization: String,
}

fn sign_raw(
    raw: &RawRequest,
    extra: &[(Vec<u8>, Vec<u8>)],
    payload_hash: &str,
    rules: PathRules,
    scope: &Scope,
) -> Outcome {
    let key = derive_signing_key(SECRET.as_bytes(), scope);
    let headers: Vec<(&[u8], &[u8])> = raw
        .headers
        .iter()
        .chain(extra.iter())
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let req = Request {
        method: &raw.method,
        path: &raw.path,
        query: &raw.query,
        headers: &headers,
        payload_hash: payload_hash.as_bytes(),
        rules,
    };
    let creds = Credentials {
        access_key: ACCESS_KEY,
        scope,
        key: &key,
    };
    let signed = sign(&req, &creds, AMZ_DATE);
    Outcome {
        canonical_request: signed.canonical_request().to_vec(),
        string_to_sign: signed.string_to_sign().to_owned(),
        signature: signed.signature_hex(),
        authorization: signed.authorization().to_owned(),
    }
}

fn service_scope() -> Scope {
    Scope::parse("20150830/us-east-1/service/aws4_request").unwrap()
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn classic_suite() {
    let mut cases = Vec::new();
    collect(&data_dir().join("classic"), "req", &mut cases);
    assert_eq!(cases.len(), 34, "the classic suite has 34 cases");
    let scope = service_scope();
    for req_file in &cases {
        let raw = parse_request(&read(req_file));
        let payload = sha256_hex(&raw.body);
        // The session-token cases add the token while signing; the suite
        // shows it only in the signed request (`.sreq`).
        let mut extra = Vec::new();
        let creq = read_str(&req_file.with_extension("creq"));
        let in_req = raw
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"x-amz-security-token"));
        if creq.contains("x-amz-security-token:") && !in_req {
            let sreq = read_str(&req_file.with_extension("sreq"));
            let token = sreq
                .lines()
                .find_map(|l| l.strip_prefix("X-Amz-Security-Token:"))
                .expect("token in .sreq");
            extra.push((
                b"X-Amz-Security-Token".to_vec(),
                token.trim().as_bytes().to_vec(),
            ));
        }
        let got = sign_raw(
            &raw,
            &extra,
            &payload,
            PathRules::Generic { normalize: true },
            &scope,
        );
        let name = req_file.display();
        assert_eq!(
            show(&got.canonical_request),
            read_str(&req_file.with_extension("creq")),
            "{name}: canonical request"
        );
        assert_eq!(
            got.string_to_sign,
            read_str(&req_file.with_extension("sts")),
            "{name}: string to sign"
        );
        assert_eq!(
            got.authorization,
            read_str(&req_file.with_extension("authz")),
            "{name}: Authorization"
        );
    }
}

fn collect(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, ext, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(path);
        }
    }
    out.sort();
}

fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json[start..].trim_start().strip_prefix(':')?.trim_start();
    if let Some(s) = rest.strip_prefix('"') {
        Some(&s[..s.find('"')?])
    } else {
        let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim())
    }
}

#[test]
fn aws_c_auth_suite_header_variant() {
    let root = data_dir().join("aws-c-auth/v4");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 40, "aws-c-auth/v4 has 40 cases");
    let scope = service_scope();
    for dir in &dirs {
        let name = dir.display();
        // `double-encode-path` has no context.json and was signed with other
        // credentials at another time: only its canonical request is checked
        // (the default context, normalize on, applies).
        let ctx_file = dir.join("context.json");
        let has_context = ctx_file.exists();
        let ctx = if has_context {
            read_str(&ctx_file)
        } else {
            "{\"normalize\": true}".to_owned()
        };
        let mut raw = parse_request(&read(&dir.join("request.txt")));
        if !has_context {
            // Its request file and canonical request disagree on the time;
            // the canonical request records when it was signed.
            let creq = read_str(&dir.join("header-canonical-request.txt"));
            let when = creq
                .lines()
                .find_map(|l| l.strip_prefix("x-amz-date:"))
                .unwrap();
            for (k, v) in raw.headers.iter_mut() {
                if k.eq_ignore_ascii_case(b"x-amz-date") {
                    *v = when.as_bytes().to_vec();
                }
            }
        }
        if has_context {
            // These request files carry the suite's unescaped paths in escaped
            // form (`/example%20space/` stands for `/example space/`), while
            // the two cases without a context are about double encoding of an
            // escaped path and are signed as they stand.
            let mut decoded = Vec::new();
            aws_signer::decode_into(&raw.path, &mut decoded);
            raw.path = decoded;
        }
        let normalize = json_field(&ctx, "normalize") == Some("true");
        let sign_body = json_field(&ctx, "sign_body") == Some("true");
        let omit_token = json_field(&ctx, "omit_session_token") == Some("true");
        let payload = sha256_hex(&raw.body);
        // The signer under test adds what aws-c-auth's signer adds.
        let mut extra: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let has = |n: &str| {
            raw.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(n.as_bytes()))
        };
        if !has("x-amz-date") {
            extra.push((b"X-Amz-Date".to_vec(), AMZ_DATE.as_bytes().to_vec()));
        }
        if let Some(token) = json_field(&ctx, "token") {
            if !omit_token {
                extra.push((b"X-Amz-Security-Token".to_vec(), token.as_bytes().to_vec()));
            }
        }
        if sign_body {
            extra.push((
                b"X-Amz-Content-Sha256".to_vec(),
                payload.as_bytes().to_vec(),
            ));
        }
        let got = sign_raw(
            &raw,
            &extra,
            &payload,
            PathRules::Generic { normalize },
            &scope,
        );
        assert_eq!(
            show(&got.canonical_request),
            read_str(&dir.join("header-canonical-request.txt")),
            "{name}: canonical request"
        );
        if !has_context {
            continue;
        }
        let sts = dir.join("header-string-to-sign.txt");
        if sts.exists() {
            assert_eq!(got.string_to_sign, read_str(&sts), "{name}: string to sign");
        }
        let sig = dir.join("header-signature.txt");
        if sig.exists() {
            assert_eq!(got.signature, read_str(&sig).trim(), "{name}: signature");
        }
        // The signed request always carries the Authorization value.
        let signed = read_str(&dir.join("header-signed-request.txt"));
        let authz = signed
            .lines()
            .find_map(|l| l.strip_prefix("Authorization:"))
            .unwrap_or_else(|| panic!("{name}: no Authorization in signed request"));
        assert_eq!(got.authorization, authz.trim(), "{name}: Authorization");
    }
}

#[test]
fn aws_c_auth_suite_query_variant() {
    let root = data_dir().join("aws-c-auth/v4");
    let mut checked = 0;
    let scope = service_scope();
    let key = derive_signing_key(SECRET.as_bytes(), &scope);
    let creds = Credentials {
        access_key: ACCESS_KEY,
        scope: &scope,
        key: &key,
    };
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("query-canonical-request.txt").exists())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let name = dir.display();
        let ctx = read_str(&dir.join("context.json"));
        let mut raw = parse_request(&read(&dir.join("request.txt")));
        let mut decoded = Vec::new();
        aws_signer::decode_into(&raw.path, &mut decoded);
        raw.path = decoded;
        let normalize = json_field(&ctx, "normalize") == Some("true");
        let expires: u64 = json_field(&ctx, "expiration_in_seconds")
            .unwrap()
            .parse()
            .unwrap();
        let token = json_field(&ctx, "token")
            .filter(|_| json_field(&ctx, "omit_session_token") != Some("true"));
        let payload = sha256_hex(&raw.body);
        let headers: Vec<(&[u8], &[u8])> = raw
            .headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let req = Request {
            method: &raw.method,
            path: &raw.path,
            query: &raw.query,
            headers: &headers,
            payload_hash: payload.as_bytes(),
            rules: PathRules::Generic { normalize },
        };
        let got = presign(&req, &creds, AMZ_DATE, expires, token);
        assert_eq!(
            show(&got.canonical_request),
            read_str(&dir.join("query-canonical-request.txt")),
            "{name}: canonical request"
        );
        assert_eq!(
            got.string_to_sign,
            read_str(&dir.join("query-string-to-sign.txt")),
            "{name}: string to sign"
        );
        assert_eq!(
            got.signature,
            read_str(&dir.join("query-signature.txt")).trim(),
            "{name}: signature"
        );
        let signed = read_str(&dir.join("query-signed-request.txt"));
        let sent = format!("X-Amz-Signature={}", got.signature);
        assert!(signed.contains(&sent), "{name}: signed request");
        assert!(String::from_utf8_lossy(&got.query).ends_with(&sent));
        checked += 1;
    }
    // All 40 but double-encode-path and double-url-encode, which have no
    // query variant.
    assert_eq!(checked, 38, "aws-c-auth/v4 query cases");
}

#[test]
fn s3_get_object_example() {
    // S3 API reference, "GET Object" example.
    let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
    let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
    let headers = [
        (&b"Host"[..], &b"examplebucket.s3.amazonaws.com"[..]),
        (b"Range", b"bytes=0-9"),
        (b"x-amz-content-sha256", EMPTY_PAYLOAD_SHA256.as_bytes()),
        (b"x-amz-date", b"20130524T000000Z"),
    ];
    let req = Request {
        method: b"GET",
        path: b"/test.txt",
        query: b"",
        headers: &headers,
        payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
        rules: PathRules::S3,
    };
    let creds = Credentials {
        access_key: "AKIAIOSFODNN7EXAMPLE",
        scope: &scope,
        key: &key,
    };
    let signed = sign(&req, &creds, "20130524T000000Z");
    assert_eq!(
        signed.signature_hex(),
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
    assert_eq!(
        signed.signed_headers(),
        "host;range;x-amz-content-sha256;x-amz-date"
    );
}

#[test]
fn c_module_vector() {
    // The C ngx_aws_auth module's own test: pre-derived key, GET / on bucket "example".
    use base64::Engine;
    let key = aws_signer::SigningKey::from_bytes(
        base64::engine::general_purpose::STANDARD
            .decode("k4EntTNoEN22pdavRF/KyeNx+e1BjtOGsCKu2CkBvnU=")
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let scope = Scope::parse("20150830/us-east-1/service/aws4_request").unwrap();
    let date = aws_signer::amz_date(1440938160).unwrap();
    let headers = [
        (&b"host"[..], &b"example.s3.amazonaws.com"[..]),
        (b"x-amz-content-sha256", EMPTY_PAYLOAD_SHA256.as_bytes()),
        (b"x-amz-date", date.as_bytes()),
    ];
    let req = Request {
        method: b"GET",
        path: b"/",
        query: b"",
        headers: &headers,
        payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
        rules: PathRules::S3,
    };
    let creds = Credentials {
        access_key: "AKIDEXAMPLE",
        scope: &scope,
        key: &key,
    };
    let signed = sign(&req, &creds, &date);
    assert_eq!(
        signed.signature_hex(),
        "4ed4ec875ff02e55c7903339f4f24f8780b986a9cc9eff03f324d31da6a57690"
    );
}

#[test]
fn key_tool_vector() {
    use base64::Engine;
    let scope = Scope::parse("20160902/us-east-1/s3/aws4_request").unwrap();
    let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &scope);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
        "L4vRLWAO92X5L3Sqk5QydUSdB0nC9+1wfqLMOKLbRp4="
    );
}
