//! Checks and signs the head nginx's proxy builds for the instruction
//! measure's GET, in a loop, as the module does per request:
//! `valgrind --tool=callgrind target/release/examples/head_loop` shows
//! where the signer's share of the module's own work goes (with SHA-256
//! in software under valgrind).
use aws_signer::policy::{check_in, Client, Policy, QueryPolicy};
use aws_signer::wire::{sign_head_in, HeadSigning, Workspace};
use aws_signer::{derive_signing_key, Credentials, PathRules, Scope};

fn main() {
    let head: &[u8] = b"GET /photos/2026/11/cat%20%281%29.jpg?response-cache-control=no-cache&x-id=GetObject HTTP/1.1\r\n\
Host: up\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let names = [b"response-cache-control".to_vec(), b"x-id".to_vec()];
    let policy = Policy {
        query: QueryPolicy::Only(&names),
        ..Policy::permissive(PathRules::S3)
    };
    let client = Client {
        uri: b"/photos/2026/11/cat (1).jpg",
        target: b"/photos/2026/11/cat%20%281%29.jpg?response-cache-control=no-cache&x-id=GetObject",
    };
    let scope = Scope::parse("20261129/us-east-1/s3/aws4_request").unwrap();
    let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
    let how = HeadSigning {
        creds: Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            scope: &scope,
            key: &key,
        },
        amz_date: "20261129T120000Z",
        payload_hash: aws_signer::EMPTY_PAYLOAD_SHA256,
        content_sha256_header: true,
        session_token: None,
        rules: PathRules::S3,
        forward: &[],
        streaming: false,
    };
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut ws = Workspace::default();
    let mut out = vec![0u8; 1024];
    let mut total = 0;
    for _ in 0..n {
        let checked = check_in(std::hint::black_box(head), &policy, &client, &mut ws).unwrap();
        let sig = sign_head_in(&checked, &how, &mut ws);
        let at = sig
            .write(&checked, &how, &ws, &mut out[..sig.len()])
            .unwrap();
        total += at.len();
        ws.recycle(checked);
    }
    println!("{total}");
}
