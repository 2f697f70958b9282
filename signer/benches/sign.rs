//! Per-request signing of a typical S3 GET, three ways, in one run:
//!
//! * `ours`: [`aws_signer::sign`] with the day's precomputed signing key;
//! * `aws-sigv4`: the AWS SDK's signer producing the same signature
//!   (checked below), from its credentials as an SDK would;
//! * `floor`: what any SigV4 signer must do at least: one SHA-256 over a
//!   canonical request of the same size and one HMAC-SHA256 over a string
//!   to sign of the same size, with the precomputed key.
//!
//! `cargo bench -p aws-signer` prints criterion's figures, then a table of
//! ns/op and the ratios read back from criterion's estimates, then the
//! ratio of ours to the floor measured in alternating bursts.
//!
//! Criterion measures each function in its own window of seconds. On a
//! shared machine, whatever else runs in one window and not in the other
//! moves the ratio of the two by a third and more between runs of the same
//! code; the alternating bursts see the same machine for both.

use std::time::{Duration, Instant, UNIX_EPOCH};

use aws_signer::{
    authorization_in, authorization_into, derive_signing_key, sign, Credentials, PathRules,
    Request, Scope,
};
use criterion::{black_box, Criterion};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const HOST: &str = "examplebucket.s3.amazonaws.com";
const PATH: &str = "/photos/2026/11/cat%20picture%20%281%29.jpg";
const QUERY: &str = "versionId=abc&response-content-type=image%2Fjpeg";
const AMZ_DATE: &str = "20261129T120000Z";
const EMPTY: &str = aws_signer::EMPTY_PAYLOAD_SHA256;
const UNIX_TIME: u64 = 1795953600; // 2026-11-29T12:00:00Z

const HEADERS: [(&[u8], &[u8]); 3] = [
    (b"host", HOST.as_bytes()),
    (b"x-amz-content-sha256", EMPTY.as_bytes()),
    (b"x-amz-date", AMZ_DATE.as_bytes()),
];

const REQUEST: Request<'static> = Request {
    method: b"GET",
    path: PATH.as_bytes(),
    query: QUERY.as_bytes(),
    headers: &HEADERS,
    payload_hash: EMPTY.as_bytes(),
    rules: PathRules::S3,
};

/// What the module does per request: the Authorization value, in a
/// scratch buffer that lives as long as the worker (no allocation).
fn ours_authorization(creds: &Credentials<'_>, scratch: &mut Vec<u8>) -> usize {
    let at = authorization_in(&REQUEST, creds, AMZ_DATE, scratch);
    black_box(&scratch[at.clone()]);
    at.end
}

fn sdk_authorization(identity: &aws_credential_types::Credentials) -> String {
    use aws_sigv4::http_request::{
        sign as sdk_sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    };
    use aws_sigv4::sign::v4;
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let identity = identity.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(UNIX_EPOCH + Duration::from_secs(UNIX_TIME))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri = format!("https://{HOST}{PATH}?{QUERY}");
    let req = SignableRequest::new(
        "GET",
        &uri,
        std::iter::empty::<(&str, &str)>(),
        SignableBody::Bytes(b""),
    )
    .unwrap();
    let (instructions, _sig) = sdk_sign(req, &params).unwrap().into_parts();
    let (headers, _) = instructions.into_parts();
    headers
        .into_iter()
        .find(|h| h.name() == "authorization")
        .map(|h| h.value().to_owned())
        .unwrap()
}

fn floor(key: &[u8; 32], canonical: &[u8], sts_len: usize) -> [u8; 32] {
    let digest = Sha256::digest(canonical);
    let mut sts = [b'x'; 256];
    // the string to sign carries the hex digest; its size is what matters
    sts[..32].copy_from_slice(&digest);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(&sts[..sts_len]);
    mac.finalize().into_bytes().into()
}

fn main() {
    let scope = Scope::parse("20261129/us-east-1/s3/aws4_request").unwrap();
    let key = derive_signing_key(SECRET.as_bytes(), &scope);
    let creds = Credentials {
        access_key: ACCESS_KEY,
        scope: &scope,
        key: &key,
    };
    let identity = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET, None, None, "bench");

    // Same request, same signature: the comparison is fair.
    let mut scratch = Vec::new();
    let ours = authorization_into(&REQUEST, &creds, AMZ_DATE, &mut scratch);
    let sdk = sdk_authorization(&identity);
    assert_eq!(
        ours, sdk,
        "both signers must produce the same Authorization"
    );
    let signed = sign(&REQUEST, &creds, AMZ_DATE);
    let canonical = signed.canonical_request().to_vec();
    let sts_len = signed.string_to_sign().len();

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("sign_s3_get");
    g.bench_function("ours", |b| {
        b.iter(|| ours_authorization(black_box(&creds), &mut scratch))
    });
    g.bench_function("aws-sigv4", |b| {
        b.iter(|| sdk_authorization(black_box(&identity)))
    });
    g.bench_function("floor", |b| {
        b.iter(|| floor(black_box(key.as_bytes()), black_box(&canonical), sts_len))
    });
    g.finish();
    c.final_summary();
    summary(&[
        ("ours", "ours"),
        ("aws-sigv4", "aws-sigv4"),
        ("floor", "floor"),
    ]);
    let (q1, median, q3) = paired_ratio(
        || {
            black_box(ours_authorization(black_box(&creds), &mut scratch));
        },
        || {
            black_box(floor(
                black_box(key.as_bytes()),
                black_box(&canonical),
                sts_len,
            ));
        },
    );
    println!(
        "ours / floor in alternating bursts: median {median:.3}, quartiles {q1:.3} to {q3:.3} (goal <= 1.2)"
    );
}

/// The ratio of `ours` to `floor`, timed in alternating bursts of a few
/// milliseconds (which goes first alternates too): the median and
/// quartiles of the per-round ratios.
fn paired_ratio(mut ours: impl FnMut(), mut floor: impl FnMut()) -> (f64, f64, f64) {
    const ROUNDS: usize = 301;
    const ITERS: u32 = 2_000;
    fn burst(f: &mut dyn FnMut()) -> f64 {
        let t = Instant::now();
        for _ in 0..ITERS {
            f();
        }
        t.elapsed().as_nanos() as f64
    }
    // warm both up first
    burst(&mut ours);
    burst(&mut floor);
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|r| {
            if r % 2 == 0 {
                let a = burst(&mut ours);
                a / burst(&mut floor)
            } else {
                let b = burst(&mut floor);
                burst(&mut ours) / b
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ROUNDS / 4],
        ratios[ROUNDS / 2],
        ratios[3 * ROUNDS / 4],
    )
}

/// Reads criterion's point estimates back and prints ns/op and ratios.
fn summary(names: &[(&str, &str)]) {
    let dir = criterion_dir().join("sign_s3_get");
    let mut ns = Vec::new();
    for (label, id) in names {
        let file = dir.join(id).join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&file) else {
            println!("(no estimates at {}: run without a filter)", file.display());
            return;
        };
        // {"mean":{...,"point_estimate":123.4,...},"median":{...}} -> the median
        let median = text
            .split("\"median\"")
            .nth(1)
            .and_then(|m| m.split("\"point_estimate\":").nth(1))
            .and_then(|v| v.split([',', '}']).next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        ns.push((*label, median));
    }
    let get = |l: &str| ns.iter().find(|(n, _)| *n == l).map(|(_, v)| *v).unwrap();
    println!();
    println!("| signer (typical S3 GET) | median ns/op | vs floor | vs ours |");
    println!("|---|---:|---:|---:|");
    for (label, v) in &ns {
        println!(
            "| {label} | {v:.0} | {:.2}x | {:.2}x |",
            v / get("floor"),
            v / get("ours")
        );
    }
    println!();
    println!(
        "ours / floor = {:.2} (goal <= 1.2); aws-sigv4 / ours = {:.1} (goal >= 5)",
        get("ours") / get("floor"),
        get("aws-sigv4") / get("ours")
    );
}

/// Where criterion writes its estimates, by its own rules, for the summary
/// to read them back whatever directory the bench runs from:
/// `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, the workspace's
/// target directory under cargo, else `target/criterion` here.
fn criterion_dir() -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        Path::new(&target).join("criterion")
    } else if std::env::var_os("CARGO").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
    } else {
        PathBuf::from("target/criterion")
    }
}
