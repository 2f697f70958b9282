//! Config value and key-file parsing: never panics; what parses is sane.
#![no_main]
use aws_signer::config::{
    parse_access_key, parse_bucket, parse_endpoint, parse_key_file, parse_scope, parse_signing_key,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_access_key(data);
    if let Ok(scope) = parse_scope(data) {
        assert_eq!(scope.as_str().split('/').count(), 4);
    }
    if let Ok(key) = parse_signing_key(data) {
        assert_eq!(key.as_bytes().len(), 32);
    }
    let _ = parse_bucket(data);
    let _ = parse_endpoint(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(keys) = parse_key_file(text) {
            assert!(keys.windows(2).all(|w| w[0].0.date() < w[1].0.date()));
        }
    }
});
