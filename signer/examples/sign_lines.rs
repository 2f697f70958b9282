//! Signs S3 GET requests read from stdin, one per line, for cross-checks
//! against independent signers (see tests/crosscheck).
//!
//! Input line: tab-separated hex fields `method path query host amz_date
//! access_key secret region`; the path and query as they would be sent.
//! Output line: the `Authorization` value, or `ERROR: ...`.

use std::io::{self, BufRead, Write};

use aws_signer::{
    derive_signing_key, sign, Credentials, PathRules, Request, Scope, EMPTY_PAYLOAD_SHA256,
};

fn main() {
    let stdin = io::stdin();
    let mut out = io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        let f: Vec<Vec<u8>> = line
            .split('\t')
            .map(|h| hex::decode(h).unwrap_or_default())
            .collect();
        if f.len() != 8 {
            writeln!(out, "ERROR: expected 8 fields").unwrap();
            continue;
        }
        let text = |i: usize| String::from_utf8_lossy(&f[i]).into_owned();
        let amz_date = text(4);
        let scope = match Scope::new(&amz_date[..8.min(amz_date.len())], &text(7), "s3") {
            Ok(s) => s,
            Err(e) => {
                writeln!(out, "ERROR: {e}").unwrap();
                continue;
            }
        };
        let key = derive_signing_key(&f[6], &scope);
        let headers = [
            (&b"host"[..], f[3].as_slice()),
            (b"x-amz-content-sha256", EMPTY_PAYLOAD_SHA256.as_bytes()),
            (b"x-amz-date", amz_date.as_bytes()),
        ];
        let req = Request {
            method: &f[0],
            path: &f[1],
            query: &f[2],
            headers: &headers,
            payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
            rules: PathRules::S3,
        };
        let access_key = text(5);
        let creds = Credentials {
            access_key: &access_key,
            scope: &scope,
            key: &key,
        };
        writeln!(out, "{}", sign(&req, &creds, &amz_date).authorization()).unwrap();
    }
}
