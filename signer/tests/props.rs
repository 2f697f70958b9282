//! Property tests of the canonicalization (proptest).

use aws_signer::policy::{check, Client, Policy};
use aws_signer::wire::{parse_head, sign_head, strict_target, HeadSigning};
use aws_signer::{
    decode_into, derive_signing_key, encode_into, encoded_len, requote_path,
    requote_query_component, write_canonical_headers, write_canonical_query, Credentials,
    PathRules, Scope, EMPTY_PAYLOAD_SHA256,
};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..200)
}

/// Bytes that look like URLs: many `%`, `+`, `/`, `=`, `&` and hex digits.
fn urlish() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'%'),
            Just(b'+'),
            Just(b'/'),
            Just(b'='),
            Just(b'&'),
            Just(b' '),
            prop::sample::select(b"0123456789abcdefABCDEF".to_vec()),
            any::<u8>(),
        ],
        0..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encoding_keeps_every_byte(data in bytes(), keep_slash in any::<bool>()) {
        let mut enc = Vec::new();
        encode_into(&data, keep_slash, &mut enc);
        prop_assert_eq!(enc.len(), encoded_len(&data, keep_slash));
        prop_assert!(enc.len() >= data.len());
        let mut dec = Vec::new();
        decode_into(&enc, &mut dec);
        prop_assert_eq!(dec, data);
    }

    #[test]
    fn strict_forms_are_idempotent(raw in urlish()) {
        let mut once = Vec::new();
        requote_path(&raw, &mut once);
        let mut twice = Vec::new();
        requote_path(&once, &mut twice);
        prop_assert_eq!(&once, &twice);

        let mut q1 = Vec::new();
        requote_query_component(&raw, &mut q1);
        let mut q2 = Vec::new();
        requote_query_component(&q1, &mut q2);
        prop_assert_eq!(&q1, &q2);
        // only unreserved bytes and %XX remain
        prop_assert!(q1.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(b)));
    }

    #[test]
    fn strict_target_then_canonical_query_agree(path in urlish(), query in urlish()) {
        let (p, q) = strict_target(&path, &query);
        let (p2, q2) = strict_target(&p, &q);
        prop_assert_eq!(&p, &p2);
        prop_assert_eq!(&q, &q2);
        let mut a = Vec::new();
        write_canonical_query(&query, &mut a);
        let mut b = Vec::new();
        write_canonical_query(&q, &mut b);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn canonical_query_is_order_independent_and_sorted(
        pairs in prop::collection::vec((urlish(), urlish()), 0..20),
        seed in any::<u64>(),
    ) {
        let join = |ps: &[(Vec<u8>, Vec<u8>)]| {
            let mut q = Vec::new();
            for (k, v) in ps {
                // keep them pairs: no '&' or '=' inside
                let k: Vec<u8> = k.iter().copied().filter(|b| *b != b'&' && *b != b'=').collect();
                let v: Vec<u8> = v.iter().copied().filter(|b| *b != b'&').collect();
                if k.is_empty() && v.is_empty() {
                    continue;
                }
                if !q.is_empty() {
                    q.push(b'&');
                }
                q.extend_from_slice(&k);
                q.push(b'=');
                q.extend_from_slice(&v);
            }
            q
        };
        let query = join(&pairs);
        let mut shuffled = pairs.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut a = Vec::new();
        write_canonical_query(&query, &mut a);
        let mut b = Vec::new();
        write_canonical_query(&join(&shuffled), &mut b);
        prop_assert_eq!(&a, &b);
        let parts: Vec<&[u8]> = if a.is_empty() { vec![] } else { a.split(|c| *c == b'&').collect() };
        let split: Vec<(&[u8], &[u8])> = parts
            .iter()
            .map(|p| {
                let i = p.iter().position(|c| *c == b'=').unwrap();
                (&p[..i], &p[i + 1..])
            })
            .collect();
        prop_assert!(split.windows(2).all(|w| w[0] <= w[1]));
        prop_assert_eq!(split.len(), query.split(|c| *c == b'&').filter(|p| !p.is_empty()).count());
    }

    #[test]
    fn repeated_header_values_keep_their_order(
        values in prop::collection::vec("[a-z0-9]{0,8}", 1..6),
        other_first in any::<bool>(),
    ) {
        let mut headers: Vec<(&[u8], &[u8])> = Vec::new();
        if other_first {
            headers.push((b"Zeta", b"z"));
        }
        for (i, v) in values.iter().enumerate() {
            headers.push((if i % 2 == 0 { b"X-Rep" } else { b"x-rep" }, v.as_bytes()));
        }
        if !other_first {
            headers.push((b"Zeta", b"z"));
        }
        let mut out = Vec::new();
        let signed = write_canonical_headers(&headers, &mut out);
        prop_assert_eq!(signed, "x-rep;zeta");
        let expected = format!("x-rep:{}\nzeta:z\n", values.join(","));
        prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn head_signing_never_panics(head in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_head(&head);
        let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
        let key = derive_signing_key(b"secret", &scope);
        let how = HeadSigning {
            creds: Credentials { access_key: "AK", scope: &scope, key: &key },
            amz_date: "20130524T000000Z",
            payload_hash: EMPTY_PAYLOAD_SHA256,
            content_sha256_header: true,
            session_token: None,
            rules: PathRules::S3,
            forward: &[],
        };
        let mut raw = b"GET /".to_vec();
        raw.extend_from_slice(&head);
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
        for bytes in [&raw, &head] {
            for policy in [Policy::permissive(PathRules::S3), Policy::permissive(PathRules::Generic { normalize: true })] {
                if let Ok(checked) = check(bytes, &policy, &Client { uri: &head, target: &head }) {
                    let _ = sign_head(&checked, &how);
                }
            }
        }
    }
}
