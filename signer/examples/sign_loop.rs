//! Signs the benchmark's S3 GET in a loop: `valgrind --tool=callgrind
//! target/release/examples/sign_loop` shows where a signature's
//! instructions go (with SHA-256 in software under valgrind).
use aws_signer::{authorization_in, derive_signing_key, Credentials, PathRules, Request, Scope};

fn main() {
    let empty = aws_signer::EMPTY_PAYLOAD_SHA256;
    let headers: [(&[u8], &[u8]); 3] = [
        (b"host", b"examplebucket.s3.amazonaws.com"),
        (b"x-amz-content-sha256", empty.as_bytes()),
        (b"x-amz-date", b"20261129T120000Z"),
    ];
    let req = Request {
        method: b"GET",
        path: b"/photos/2026/11/cat%20picture%20%281%29.jpg",
        query: b"versionId=abc&response-content-type=image%2Fjpeg",
        headers: &headers,
        payload_hash: empty.as_bytes(),
        rules: PathRules::S3,
    };
    let scope = Scope::parse("20261129/us-east-1/s3/aws4_request").unwrap();
    let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
    let creds = Credentials {
        access_key: "AKIAIOSFODNN7EXAMPLE",
        scope: &scope,
        key: &key,
    };
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut scratch = Vec::new();
    let mut total = 0;
    for _ in 0..n {
        let at = authorization_in(&req, &creds, "20261129T120000Z", &mut scratch);
        total += std::hint::black_box(&scratch[at]).len();
    }
    println!("{total}");
}
