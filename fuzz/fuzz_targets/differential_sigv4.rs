//! Differential: our S3 signature against the aws-sigv4 crate's for the
//! same request, arbitrary object key and query (both given the request
//! line in S3's strict encoding, as the module sends it).
#![no_main]
use std::time::{Duration, UNIX_EPOCH};

use aws_signer::wire::strict_target;
use aws_signer::{derive_signing_key, sign, Credentials, PathRules, Request, Scope};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST: &str = "examplebucket.s3.amazonaws.com";

fuzz_target!(|data: &[u8]| {
    // object key, then query pairs, separated by NUL bytes
    let mut parts = data.split(|&b| b == 0);
    let key = parts.next().unwrap_or(&[]);
    let mut raw_query = Vec::new();
    for (i, kv) in parts.enumerate().take(8) {
        // aws-sigv4 reads query components as UTF-8 (lossily); S3 clients
        // send UTF-8. Bytes that are not are compared on the path only.
        let kv = String::from_utf8_lossy(kv);
        let cut = (0..=kv.len() / 2)
            .rev()
            .find(|i| kv.is_char_boundary(*i))
            .unwrap_or(0);
        let (k, v) = (kv[..cut].as_bytes(), kv[cut..].as_bytes());
        if i > 0 {
            raw_query.push(b'&');
        }
        let mut ek = Vec::new();
        aws_signer::encode_into(k, false, &mut ek);
        raw_query.extend_from_slice(if ek.is_empty() { b"k" } else { &ek });
        raw_query.push(b'=');
        aws_signer::encode_into(v, false, &mut raw_query);
    }
    let mut raw_path = b"/".to_vec();
    aws_signer::encode_into(key, true, &mut raw_path);
    let (path, query) = strict_target(&raw_path, &raw_query);

    let scope = Scope::parse("20261129/us-east-1/s3/aws4_request").unwrap();
    let skey = derive_signing_key(SECRET.as_bytes(), &scope);
    let creds = Credentials {
        access_key: "AKIDFUZZ",
        scope: &scope,
        key: &skey,
    };
    let empty = aws_signer::EMPTY_PAYLOAD_SHA256;
    let headers: [(&[u8], &[u8]); 3] = [
        (b"host", HOST.as_bytes()),
        (b"x-amz-content-sha256", empty.as_bytes()),
        (b"x-amz-date", b"20261129T120000Z"),
    ];
    let ours = sign(
        &Request {
            method: b"GET",
            path: &path,
            query: &query,
            headers: &headers,
            payload_hash: empty.as_bytes(),
            rules: PathRules::S3,
        },
        &creds,
        "20261129T120000Z",
    );

    use aws_sigv4::http_request::{
        sign as sdk_sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let identity =
        aws_credential_types::Credentials::new("AKIDFUZZ", SECRET, None, None, "fuzz").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(UNIX_EPOCH + Duration::from_secs(1_795_953_600))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut uri = format!("https://{HOST}{}", String::from_utf8(path.clone()).unwrap());
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(std::str::from_utf8(&query).unwrap());
    }
    let Ok(req) = SignableRequest::new("GET", &uri, std::iter::empty(), SignableBody::Bytes(b""))
    else {
        return; // a URI the http crate refuses
    };
    let Ok(out) = sdk_sign(req, &params) else {
        return;
    };
    let (instructions, _) = out.into_parts();
    let (hdrs, _) = instructions.into_parts();
    let theirs = hdrs
        .into_iter()
        .find(|h| h.name() == "authorization")
        .unwrap();
    assert_eq!(
        ours.authorization(),
        theirs.value(),
        "canonical request (ours):\n{}",
        String::from_utf8_lossy(ours.canonical_request())
    );
});
