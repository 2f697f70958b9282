//! URI and query canonicalization: never panics, strict forms are
//! idempotent, the canonical query does not depend on the wire form.
#![no_main]
use aws_signer::wire::strict_target;
use aws_signer::{write_canonical_query, write_canonical_uri, PathRules};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|&b| b == b'?').unwrap_or(data.len());
    let (path, query) = (&data[..cut], data.get(cut + 1..).unwrap_or(&[]));
    for rules in [
        PathRules::S3,
        PathRules::Generic { normalize: true },
        PathRules::Generic { normalize: false },
    ] {
        let mut out = Vec::new();
        write_canonical_uri(path, rules, &mut out);
        assert!(out.starts_with(b"/") || path.first() != Some(&b'/'));
    }
    let (p, q) = strict_target(path, query);
    assert_eq!(strict_target(&p, &q), (p.clone(), q.clone()));
    let mut a = Vec::new();
    write_canonical_query(query, &mut a);
    let mut b = Vec::new();
    write_canonical_query(&q, &mut b);
    assert_eq!(a, b);
    let mut s3_wire = Vec::new();
    write_canonical_uri(&p, PathRules::S3, &mut s3_wire);
    let mut s3_raw = Vec::new();
    write_canonical_uri(path, PathRules::S3, &mut s3_raw);
    if !path.is_empty() {
        assert_eq!(s3_wire, s3_raw);
    }
});
