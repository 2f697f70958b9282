//! Property tests of the canonicalization (proptest).

use aws_signer::policy::{check, Client, Policy};
use aws_signer::wire::{parse_head, sign_head, strict_target, HeadSigning};
use aws_signer::{
    decode_into, derive_signing_key, encode_into, encoded_len, requote_path,
    requote_query_component, sign, write_canonical_headers, write_canonical_query, Credentials,
    PathRules, Request, Scope, EMPTY_PAYLOAD_SHA256,
};
use proptest::prelude::*;

/// The head parser as it was before it was made single-pass: the
/// reference the new one must agree with on every input.
mod reference {
    use aws_signer::wire::{Body, HeadError};

    #[derive(Debug, PartialEq)]
    pub struct Parsed<'a> {
        pub method: &'a [u8],
        pub path: &'a [u8],
        pub query: &'a [u8],
        pub version: &'a [u8],
        pub headers: Vec<(&'a [u8], &'a [u8], &'a [u8])>,
        pub body: Body,
        pub len: usize,
    }

    fn trim(mut s: &[u8]) -> &[u8] {
        while let [b' ' | b'\t', rest @ ..] = s {
            s = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = s {
            s = rest;
        }
        s
    }

    /// RFC 9110 token characters (method and header names).
    fn is_tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }

    /// Where the head ends: just after the first empty line.
    fn head_end(bytes: &[u8]) -> Option<usize> {
        bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
    }

    /// Parses the head at the start of `bytes` and checks that it holds only
    /// lines a proxy builds: every line ends with CRLF and holds no other CR,
    /// LF or NUL; the request line is `METHOD SP /target SP HTTP/1.x`; header
    /// names are tokens, nothing is folded, no header line ends with a
    /// protocol version; one `Host`; at most one framing header with a value
    /// the proxy writes; and nothing follows the head but its own body (when
    /// `Content-Length` says how long it is).
    pub fn parse_head(bytes: &[u8]) -> Result<Parsed<'_>, HeadError> {
        let len = head_end(bytes).ok_or(HeadError::Unterminated)?;
        let raw = &bytes[..len];
        for (i, &b) in raw.iter().enumerate() {
            let ok = match b {
                0 => false,
                b'\r' => raw.get(i + 1) == Some(&b'\n'),
                b'\n' => i > 0 && raw[i - 1] == b'\r',
                _ => true,
            };
            if !ok {
                return Err(HeadError::LineBreak);
            }
        }
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(HeadError::Unterminated)?;
        let line = &raw[..eol];
        let sp1 = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or(HeadError::RequestLine)?;
        let sp2 = line
            .iter()
            .rposition(|&b| b == b' ')
            .ok_or(HeadError::RequestLine)?;
        if sp1 == sp2 || sp1 == 0 || !line[..sp1].iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::RequestLine);
        }
        if !matches!(&line[sp2 + 1..], b"HTTP/1.0" | b"HTTP/1.1") {
            return Err(HeadError::Version);
        }
        let target = &line[sp1 + 1..sp2];
        if !target.starts_with(b"/") {
            return Err(HeadError::Target);
        }
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, &b""[..]),
        };
        let mut headers = Vec::with_capacity(16);
        let mut pos = eol + 2;
        let (mut hosts, mut lengths, mut chunked, mut connections) = (0, 0, 0, 0);
        let mut body = Body::None;
        while pos < len - 2 {
            let end = pos
                + raw[pos..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .ok_or(HeadError::Unterminated)?;
            let hl = &raw[pos..end];
            if matches!(hl.first(), Some(b' ' | b'\t')) {
                return Err(HeadError::Folded);
            }
            let colon = hl
                .iter()
                .position(|&b| b == b':')
                .ok_or(HeadError::HeaderLine)?;
            let name = &hl[..colon];
            if name.is_empty() {
                return Err(HeadError::HeaderLine);
            }
            if !name.iter().all(|&b| is_tchar(b)) {
                return Err(HeadError::HeaderName);
            }
            if hl.ends_with(b" HTTP/1.0") || hl.ends_with(b" HTTP/1.1") {
                return Err(HeadError::VersionInHeader);
            }
            let value = trim(&hl[colon + 1..]);
            if name.eq_ignore_ascii_case(b"host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                lengths += 1;
                if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::Framing);
                }
                let n = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(HeadError::Framing)?;
                body = Body::Length(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                chunked += 1;
                if !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(HeadError::Framing);
                }
                body = Body::Chunked;
            } else if name.eq_ignore_ascii_case(b"connection") {
                connections += 1;
            }
            headers.push((name, value, &raw[pos..end + 2]));
            pos = end + 2;
        }
        if lengths > 1 || chunked > 1 || connections > 1 || lengths + chunked > 1 {
            return Err(HeadError::Framing);
        }
        // A second request after the head says more than a missing Host: the
        // blank line that ended this head was not nginx's.
        let rest = (bytes.len() - len) as u64;
        let fits = match body {
            Body::None | Body::Chunked => rest == 0,
            Body::Length(n) => rest <= n,
        };
        if !fits {
            return Err(HeadError::TrailingBytes);
        }
        if hosts != 1 {
            return Err(HeadError::Host(hosts));
        }
        Ok(Parsed {
            method: &line[..sp1],
            path,
            query,
            version: &line[sp2..],
            headers,
            body,
            len,
        })
    }
}

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
            streaming: false,
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

    #[test]
    fn canonical_query_agrees_with_decoding_each_parameter(
        raw in urlish(),
        strict_first in any::<bool>(),
    ) {
        // the strict form takes the fast path, the raw one mostly not
        let mut query = Vec::new();
        if strict_first {
            aws_signer::write_strict_query(&raw, &mut query);
        } else {
            query.extend_from_slice(&raw);
        }
        let mut fast = b"prefix".to_vec();
        write_canonical_query(&query, &mut fast);
        // the definition, written here without the crate's own tables:
        // each name and value decoded (either hex case, `+` as a space)
        // and encoded with the unreserved set in uppercase hex, bare names
        // given their `=`, empty parameters dropped, sorted
        fn requoted(raw: &[u8]) -> Vec<u8> {
            let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
            let mut decoded = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                let escape = match raw.get(i..i + 3) {
                    Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                match (escape, raw[i]) {
                    (Some(b), _) => {
                        decoded.push(b);
                        i += 3;
                    }
                    (None, b'+') => {
                        decoded.push(b' ');
                        i += 1;
                    }
                    (None, b) => {
                        decoded.push(b);
                        i += 1;
                    }
                }
            }
            let mut out = Vec::new();
            for b in decoded {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    out.push(b);
                } else {
                    out.extend_from_slice(format!("%{b:02X}").as_bytes());
                }
            }
            out
        }
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.iter().position(|&b| b == b'=') {
                Some(i) => (requoted(&p[..i]), requoted(&p[i + 1..])),
                None => (requoted(p), Vec::new()),
            })
            .collect();
        pairs.sort();
        let mut slow = b"prefix".to_vec();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                slow.push(b'&');
            }
            slow.extend_from_slice(k);
            slow.push(b'=');
            slow.extend_from_slice(v);
        }
        prop_assert_eq!(fast, slow);
    }

    #[test]
    fn strict_queries_are_copied_as_the_slow_path_writes_them(
        raw in urlish(),
        keep_odd in any::<bool>(),
    ) {
        // a strict query (the output of the slow path) and the raw one
        let mut strict = Vec::new();
        aws_signer::write_strict_query(&raw, &mut strict);
        let keep = |name: &[u8]| !keep_odd || name.len() % 2 == 1;
        for query in [&strict[..], &raw[..]] {
            let mut fast = Vec::new();
            aws_signer::write_strict_query_filtered(query, &keep, &mut fast);
            let mut slow = Vec::new();
            for (k, v, eq) in aws_signer::query_parts(query) {
                let mut key = Vec::new();
                requote_query_component(k, &mut key);
                if !keep(&key) {
                    continue;
                }
                if !slow.is_empty() {
                    slow.push(b'&');
                }
                slow.extend_from_slice(&key);
                if eq {
                    slow.push(b'=');
                    requote_query_component(v, &mut slow);
                }
            }
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn single_pass_parser_agrees_with_the_reference(
        lines in prop::collection::vec(head_line(), 0..8),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut raw = Vec::new();
        for l in &lines {
            raw.extend_from_slice(l);
        }
        raw.extend_from_slice(&tail);
        let mut framed = b"GET /k?x=1 HTTP/1.1\r\nHost: h\r\n".to_vec();
        for l in &lines {
            if !l.contains(&b'\n') || l.ends_with(b"\r\n") && l.len() > 2 {
                framed.extend_from_slice(l);
            }
        }
        framed.extend_from_slice(b"\r\n");
        framed.extend_from_slice(&tail);
        for bytes in [&raw[..], &raw[..cut.index(raw.len() + 1)], &framed[..]] {
            let ours = parse_head(bytes);
            let theirs = reference::parse_head(bytes);
            match (ours, theirs) {
                (Ok(h), Ok(r)) => {
                    prop_assert_eq!(h.method, r.method);
                    prop_assert_eq!(h.path, r.path);
                    prop_assert_eq!(h.query, r.query);
                    prop_assert_eq!(h.version, r.version);
                    prop_assert_eq!(h.body, r.body);
                    prop_assert_eq!(h.len, r.len);
                    prop_assert_eq!(h.headers().collect::<Vec<_>>(), r.headers);
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "{:?} vs {:?} for {:?}", a.map(|h| h.len), b.map(|r| r.len), String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn head_signing_equals_signing_the_parts(
        path in urlish(),
        query in urlish(),
        extra in prop::collection::vec(head_line(), 0..6),
        token in any::<bool>(),
        generic in any::<bool>(),
        params in prop::collection::vec(
            prop::sample::select(vec!["a=%2f", "b=%2F", "x-id=1", "c=%7e", "d=~", "e", ""]),
            0..4,
        ),
    ) {
        // half the time a query of parameters some of which change in
        // their strict form, keeping its length (`%2f`) or not
        let query = if generic { query } else { params.join("&").into_bytes() };
        let mut raw = b"GET /".to_vec();
        raw.extend(path.iter().map(|&b| if b < 0x21 || b == 0x7f || b == b'?' { b'_' } else { b }));
        if !query.is_empty() || params.len() == 1 {
            raw.push(b'?');
            raw.extend(query.iter().map(|&b| if b < 0x21 || b == 0x7f { b'_' } else { b }));
        }
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: b.s3.amazonaws.com\r\n");
        for l in &extra {
            raw.extend_from_slice(l);
        }
        raw.extend_from_slice(b"\r\n");
        let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
        let key = derive_signing_key(b"secret", &scope);
        let rules = if generic { PathRules::Generic { normalize: true } } else { PathRules::S3 };
        let forward = ["x-amz-meta-a".to_owned(), "x-amz-checksum-mode".to_owned()];
        let how = HeadSigning {
            creds: Credentials { access_key: "AK", scope: &scope, key: &key },
            amz_date: "20130524T000000Z",
            payload_hash: EMPTY_PAYLOAD_SHA256,
            content_sha256_header: true,
            session_token: token.then_some("tok+/="),
            rules,
            forward: &forward,
            // an aws-chunked upload's own headers kept too, half the time
            streaming: token,
        };
        let Ok(checked) = check(&raw, &Policy::permissive(rules), &Client::default()) else {
            return Ok(());
        };
        let signed = sign_head(&checked, &how);
        // the same signature from the general signer, given the parts
        let mut to_sign: Vec<(&[u8], &[u8])> = vec![(b"host", checked.head.host())];
        to_sign.push((b"x-amz-content-sha256", EMPTY_PAYLOAD_SHA256.as_bytes()));
        to_sign.push((b"x-amz-date", b"20130524T000000Z"));
        if token {
            to_sign.push((b"x-amz-security-token", b"tok+/="));
        }
        for (name, value, _) in checked.head.headers() {
            let streams = token
                && (name.eq_ignore_ascii_case(b"x-amz-decoded-content-length")
                    || name.eq_ignore_ascii_case(b"x-amz-trailer"));
            if aws_signer::wire::is_forwardable(name)
                && (streams || forward.iter().any(|f| name.eq_ignore_ascii_case(f.as_bytes())))
            {
                to_sign.push((name, value));
            }
        }
        let req = Request {
            method: checked.head.method,
            path: &checked.path,
            query: &checked.query,
            headers: &to_sign,
            payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
            rules,
        };
        let want = sign(&req, &how.creds, how.amz_date);
        prop_assert_eq!(signed.signed.canonical_request(), want.canonical_request());
        prop_assert_eq!(signed.signed.authorization(), want.authorization());
        let text = String::from_utf8_lossy(&signed.head).into_owned();
        let auth_line = format!("\r\nAuthorization: {}\r\n\r\n", want.authorization());
        prop_assert!(text.ends_with(&auth_line), "{}", text);
        // the whole head, built here line by line: the request line with
        // the target sent, every line kept in its place, then the
        // signer's own
        let mut head = checked.head.method.to_vec();
        head.push(b' ');
        head.extend_from_slice(&checked.path);
        if !checked.query.is_empty() {
            head.push(b'?');
            head.extend_from_slice(&checked.query);
        }
        head.extend_from_slice(checked.head.version);
        head.extend_from_slice(b"\r\n");
        for (name, value, line) in checked.head.headers() {
            let amz = name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"x-amz-");
            let kept = if amz {
                to_sign[1..].iter().any(|&(n, v)| n == name && v == value)
                    && aws_signer::wire::is_forwardable(name)
            } else {
                !name.eq_ignore_ascii_case(b"authorization")
            };
            if kept {
                head.extend_from_slice(line);
            }
        }
        head.extend_from_slice(format!("x-amz-content-sha256: {EMPTY_PAYLOAD_SHA256}\r\n").as_bytes());
        head.extend_from_slice(b"x-amz-date: 20130524T000000Z\r\n");
        if token {
            head.extend_from_slice(b"x-amz-security-token: tok+/=\r\n");
        }
        head.extend_from_slice(&auth_line.as_bytes()[2..]);
        prop_assert_eq!(String::from_utf8_lossy(&signed.head), String::from_utf8_lossy(&head));
    }
}

/// Header lines a proxy or a client might put in a head, with stray bytes.
fn head_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET /a?b=c HTTP/1.1\r\n".to_vec()),
        Just(b"PUT / HTTP/1.0\r\n".to_vec()),
        Just(b"Host: b.s3.amazonaws.com\r\n".to_vec()),
        Just(b"host:h\r\n".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Content-Length: 9x\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Transfer-Encoding: gzip\r\n".to_vec()),
        Just(b"Connection: close\r\n".to_vec()),
        Just(b"X-Amz-Meta-A:  v  \r\n".to_vec()),
        Just(b"x-amz-checksum-mode: \tENABLED\r\n".to_vec()),
        Just(b"x-amz-decoded-content-length: 6\r\n".to_vec()),
        Just(b"X-Amz-Trailer: x-amz-checksum-crc32\r\n".to_vec()),
        Just(b"x-amz-date: 1999\r\n".to_vec()),
        Just(b"Authorization: x\r\n".to_vec()),
        Just(b"X: y HTTP/1.1\r\n".to_vec()),
        Just(b" folded\r\n".to_vec()),
        Just(b"Bad Name: v\r\n".to_vec()),
        Just(b": empty\r\n".to_vec()),
        Just(b"no colon\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\0".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}
