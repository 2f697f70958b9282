//! Header canonicalization, the signing decision and head signing: never
//! panic; every head the policy accepts signs into a head that parses and
//! is accepted again, with one Authorization.
#![no_main]
use aws_signer::policy::{check, Addressing, Client, MethodSet, Policy, QueryPolicy, S3Policy};
use aws_signer::wire::{parse_head, sign_head, HeadSigning};
use aws_signer::{
    derive_signing_key, write_canonical_headers, write_trimmed_value, Credentials, PathRules,
    Scope, EMPTY_PAYLOAD_SHA256,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    write_trimmed_value(data, &mut out);
    assert!(out.len() <= data.len());
    let lines: Vec<(&[u8], &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|l| match l.iter().position(|&b| b == b':') {
            Some(i) => (&l[..i], &l[i + 1..]),
            None => (l, &b""[..]),
        })
        .collect();
    let mut block = Vec::new();
    let _ = write_canonical_headers(&lines, &mut block);

    let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
    let key = derive_signing_key(b"secret", &scope);
    let forward = ["x-amz-meta-a".to_owned()];
    let how = HeadSigning {
        creds: Credentials {
            access_key: "AK",
            scope: &scope,
            key: &key,
        },
        amz_date: "20130524T000000Z",
        payload_hash: EMPTY_PAYLOAD_SHA256,
        content_sha256_header: true,
        session_token: Some("tok"),
        rules: PathRules::S3,
        forward: &forward,
        streaming: true,
    };
    let buckets = ["b".to_owned()];
    let names = [QueryPolicy::strict_name(b"versionId")];
    let strict = Policy {
        methods: MethodSet::READ,
        rules: PathRules::S3,
        query: QueryPolicy::Only(&names),
        s3: Some(S3Policy {
            buckets: &buckets,
            addressing: Some(Addressing::Path),
            endpoint: "s3.amazonaws.com",
            also: &[],
            listing: false,
        }),
        forward_amz: &[],
    };
    // the default endpoint of eu-west-1 keys and AWS's other names of it
    let (endpoint, also) = aws_signer::config::default_s3_endpoints("eu-west-1");
    let regional = Policy {
        s3: Some(S3Policy {
            buckets: &buckets,
            addressing: None,
            endpoint: &endpoint,
            also: &also,
            listing: false,
        }),
        ..strict
    };
    let client = Client { uri: data, target: data };
    for policy in [Policy::permissive(PathRules::S3), strict, regional] {
        let Ok(checked) = check(data, &policy, &client) else {
            continue;
        };
        let signed = sign_head(&checked, &how);
        let again = parse_head(&signed.head).expect("a signed head parses");
        let auth = again
            .headers()
            .filter(|(n, _, _)| n.eq_ignore_ascii_case(b"authorization"))
            .count();
        assert_eq!(auth, 1);
        check(&signed.head, &policy, &Client::default()).expect("a signed head is accepted again");
    }
});
