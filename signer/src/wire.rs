//! Signing an HTTP/1.x request head exactly as it will be sent.
//!
//! A proxy that signs has to sign the bytes it sends, not a guess of them.
//! [`sign_head`] takes a request head as built (request line, header lines,
//! blank line), drops every `Authorization` and `x-amz-*` header in it,
//! appends `x-amz-content-sha256`, `x-amz-date` and `Authorization` (and the
//! session token when there is one) and signs the method, path, query and
//! `Host` found in the head itself.
//!
//! Under S3 rules the request target is also rewritten into its strict
//! form (path decoded once and encoded with the unreserved set, each query
//! key and value likewise, `+` in the query read as a space), so the bytes
//! on the wire are the canonical ones and no server can read them another
//! way: AWS S3 reads a raw `+` in a path as a space, other S3 servers as a
//! plus; `%2B` means a plus to all of them.

use std::fmt;

use crate::policy::Checked;
use crate::{requote_path, sign, write_strict_query, Credentials, PathRules, Request, Signed};

/// What to sign a head with.
#[derive(Clone, Copy, Debug)]
pub struct HeadSigning<'a> {
    /// Key, scope and access key.
    pub creds: Credentials<'a>,
    /// The `x-amz-date` value.
    pub amz_date: &'a str,
    /// The payload hash that goes into the canonical request (hex SHA-256
    /// of the body, or `UNSIGNED-PAYLOAD`).
    pub payload_hash: &'a str,
    /// Send and sign `x-amz-content-sha256` with it: always for S3, which
    /// requires it; other services mostly do not know the header.
    pub content_sha256_header: bool,
    /// An STS session token to send and sign as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// Canonical URI rules.
    pub rules: PathRules,
    /// Lowercase names of `x-amz-*` headers already in the head that are
    /// kept and signed instead of dropped (`aws_forward_amz_headers`).
    /// Names the signer sets itself (`x-amz-date`, `x-amz-content-sha256`,
    /// `x-amz-security-token`) are always dropped.
    pub forward: &'a [String],
}

/// Why a head could not be signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The request line is not `METHOD SP TARGET SP HTTP/x.y`.
    RequestLine,
    /// A header line has no `:`, or an empty name.
    HeaderLine,
    /// No blank line ends the head.
    Unterminated,
    /// No `Host` header, or more than one.
    Host(usize),
    /// The request target is not an origin-form path (`/...`).
    Target,
    /// A CR or LF outside a line end, or a NUL byte.
    LineBreak,
    /// The protocol is not `HTTP/1.0` or `HTTP/1.1`.
    Version,
    /// A header name that is not a token.
    HeaderName,
    /// A line that continues the previous one (obsolete folding).
    Folded,
    /// A header line ending like a request line (` HTTP/1.1`): the tail of
    /// a request line split by a line break in its target.
    VersionInHeader,
    /// `Content-Length`, `Transfer-Encoding` or `Connection` repeated,
    /// both framings at once, or a framing value the proxy never writes.
    Framing,
    /// Bytes after the head that are not its body: a second request.
    TrailingBytes,
}

impl HeadError {
    /// True when the head holds what a client put there (a line break
    /// decoded from its URI): the client's fault, not the configuration's.
    pub fn is_injected(&self) -> bool {
        !matches!(
            self,
            HeadError::Host(0) | HeadError::Target | HeadError::Unterminated
        )
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::RequestLine => f.write_str("malformed request line"),
            HeadError::HeaderLine => f.write_str("malformed header line"),
            HeadError::Unterminated => f.write_str("request head is not terminated"),
            HeadError::Host(0) => f.write_str("no Host header"),
            HeadError::Host(n) => write!(f, "{n} Host headers"),
            HeadError::Target => f.write_str("request target is not a path"),
            HeadError::LineBreak => f.write_str("a CR, LF or NUL byte inside a line"),
            HeadError::Version => f.write_str("the protocol is not HTTP/1.0 or HTTP/1.1"),
            HeadError::HeaderName => f.write_str("a header name is not a token"),
            HeadError::Folded => f.write_str("a folded header line"),
            HeadError::VersionInHeader => f.write_str("a header line ends with a protocol version"),
            HeadError::Framing => f.write_str(
                "repeated or conflicting Content-Length, Transfer-Encoding or Connection",
            ),
            HeadError::TrailingBytes => f.write_str("bytes after the head that are not its body"),
        }
    }
}

impl std::error::Error for HeadError {}

/// How the head says its body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No `Content-Length` or `Transfer-Encoding`: no body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head, borrowing from the bytes.
#[derive(Debug)]
pub struct Head<'a> {
    /// The method.
    pub method: &'a [u8],
    /// The path part of the target.
    pub path: &'a [u8],
    /// The query part of the target, without `?`.
    pub query: &'a [u8],
    /// The protocol part of the request line with the space before it, e.g. ` HTTP/1.0`.
    pub version: &'a [u8],
    /// Every header as (name, value, whole line including CRLF).
    pub headers: Vec<(&'a [u8], &'a [u8], &'a [u8])>,
    /// How the body is framed.
    pub body: Body,
    /// Length of the head including the blank line.
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
pub fn parse_head(bytes: &[u8]) -> Result<Head<'_>, HeadError> {
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
    Ok(Head {
        method: &line[..sp1],
        path,
        query,
        version: &line[sp2..],
        headers,
        body,
        len,
    })
}

/// The strict S3 form of a target: path decoded once and encoded with the
/// unreserved set (`/` kept); each query key and value decoded (`+` as a
/// space) and encoded likewise, order and bare keys kept.
pub fn strict_target(path: &[u8], query: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut p = Vec::with_capacity(path.len() + 16);
    requote_path(path, &mut p);
    let mut q = Vec::with_capacity(query.len() + 16);
    write_strict_query(query, &mut q);
    (p, q)
}

/// The headers this crate signs, in canonical order: `host`,
/// `x-amz-content-sha256` (when given), `x-amz-date` and, with a session
/// token, `x-amz-security-token`.
pub fn signed_headers<'a>(
    host: &'a [u8],
    content_sha256: Option<&'a str>,
    amz_date: &'a str,
    session_token: Option<&'a str>,
) -> Vec<(&'a [u8], &'a [u8])> {
    let mut h: Vec<(&[u8], &[u8])> = vec![(b"host", host)];
    if let Some(sha) = content_sha256 {
        h.push((b"x-amz-content-sha256", sha.as_bytes()));
    }
    h.push((b"x-amz-date", amz_date.as_bytes()));
    if let Some(token) = session_token {
        h.push((b"x-amz-security-token", token.as_bytes()));
    }
    h
}

/// True for header names the signer owns: `Authorization` and every `x-amz-*`.
pub fn is_owned_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"authorization")
        || (name.len() >= 6 && name[..6].eq_ignore_ascii_case(b"x-amz-"))
}

/// A signed head.
#[derive(Debug)]
pub struct SignedHead {
    /// The new head, ready to send.
    pub head: Vec<u8>,
    /// The signature details (canonical request, string to sign, ...).
    pub signed: Signed,
    /// How many client or stale `Authorization`/`x-amz-*` lines were dropped.
    pub dropped: usize,
}

/// The head carries the session token, when there is one: wiped.
impl Drop for SignedHead {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.head);
    }
}

/// Signs a head the policy accepted (see [`crate::policy::check`]): the
/// request line gets the checked target, the client's and stale
/// `Authorization`/`x-amz-*` lines are dropped (but the forwarded ones),
/// and the signer's own headers are appended.
pub fn sign_head(checked: &Checked<'_>, how: &HeadSigning<'_>) -> SignedHead {
    let head = &checked.head;
    let host = header_value(head, b"host").unwrap_or(b"");
    let sha_header = how.content_sha256_header.then_some(how.payload_hash);
    let mut to_sign = signed_headers(host, sha_header, how.amz_date, how.session_token);
    let keep = |name: &[u8]| {
        !is_owned_header(name) || (is_forwardable(name) && is_listed(name, how.forward))
    };
    for (name, value, _) in &head.headers {
        if is_owned_header(name) && keep(name) {
            to_sign.push((name, value));
        }
    }
    let (path, query) = (&checked.path, &checked.query);
    let req = Request {
        method: head.method,
        path,
        query,
        headers: &to_sign,
        payload_hash: how.payload_hash.as_bytes(),
        rules: how.rules,
    };
    let signed = sign(&req, &how.creds, how.amz_date);

    let mut out = Vec::with_capacity(head.len + 256 + signed.authorization().len());
    out.extend_from_slice(head.method);
    out.push(b' ');
    out.extend_from_slice(path);
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query);
    }
    out.extend_from_slice(head.version);
    out.extend_from_slice(b"\r\n");
    let mut dropped = 0;
    for (name, _, line) in &head.headers {
        if keep(name) {
            out.extend_from_slice(line);
        } else {
            dropped += 1;
        }
    }
    for (name, value) in sha_header
        .map(|h| ("x-amz-content-sha256", h))
        .into_iter()
        .chain([("x-amz-date", how.amz_date)])
        .chain(how.session_token.map(|t| ("x-amz-security-token", t)))
        .chain([("Authorization", signed.authorization())])
    {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    SignedHead {
        head: out,
        signed,
        dropped,
    }
}

/// True for the `x-amz-*` names a client may have forwarded and signed:
/// every one but those the signer sets itself.
pub fn is_forwardable(name: &[u8]) -> bool {
    is_owned_header(name)
        && !name.eq_ignore_ascii_case(b"authorization")
        && !SIGNER_SET.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// The `x-amz-*` headers [`sign_head`] always sets itself.
pub const SIGNER_SET: [&[u8]; 3] = [
    b"x-amz-content-sha256",
    b"x-amz-date",
    b"x-amz-security-token",
];

fn is_listed(name: &[u8], list: &[String]) -> bool {
    list.iter().any(|l| name.eq_ignore_ascii_case(l.as_bytes()))
}

/// The value of the first header with this name (case-insensitive).
pub fn header_value<'a>(head: &Head<'a>, name: &[u8]) -> Option<&'a [u8]> {
    head.headers
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v, _)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{derive_signing_key, Scope, EMPTY_PAYLOAD_SHA256};

    /// Signs `raw` with the S3 API reference example's credentials.
    fn sign_test_head(raw: &[u8], forward: &[String]) -> SignedHead {
        let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
        let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
        let how = HeadSigning {
            creds: Credentials {
                access_key: "AKIAIOSFODNN7EXAMPLE",
                scope: &scope,
                key: &key,
            },
            amz_date: "20130524T000000Z",
            payload_hash: EMPTY_PAYLOAD_SHA256,
            content_sha256_header: true,
            session_token: None,
            rules: PathRules::S3,
            forward,
        };
        let policy = crate::policy::Policy::permissive(PathRules::S3);
        let checked = crate::policy::check(raw, &policy, &Default::default()).unwrap();
        sign_head(&checked, &how)
    }

    #[test]
    fn resigns_and_strips() {
        let raw = b"GET /test.txt HTTP/1.0\r\nHost: examplebucket.s3.amazonaws.com\r\n\
Authorization: client\r\nX-Amz-Date: 1999\r\nx-amz-foo: bar\r\nRange: bytes=0-9\r\n\
Content-Length: 4\r\n\r\nBODY";
        let s = sign_test_head(raw, &[]);
        assert_eq!(s.dropped, 3);
        let text = String::from_utf8(s.head.clone()).unwrap();
        assert!(text.starts_with("GET /test.txt HTTP/1.0\r\nHost: examplebucket.s3.amazonaws.com\r\nRange: bytes=0-9\r\nContent-Length: 4\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(text.matches("Authorization:").count(), 1);
        assert_eq!(
            s.signed.signed_headers(),
            "host;x-amz-content-sha256;x-amz-date"
        );
    }

    #[test]
    fn forwards_listed_amz_headers_and_signs_them() {
        let raw = b"GET /k HTTP/1.0\r\nHost: b.s3.amazonaws.com\r\n\
X-Amz-Request-Payer: requester\r\nx-amz-date: 1999\r\nx-amz-foo: bar\r\n\
x-amz-checksum-mode:  ENABLED \r\n\r\n";
        let forward = [
            "x-amz-request-payer".to_owned(),
            "x-amz-checksum-mode".to_owned(),
            "x-amz-date".to_owned(),
        ];
        let s = sign_test_head(raw, &forward);
        // x-amz-date is the signer's own even when listed; x-amz-foo is not listed.
        assert_eq!(s.dropped, 2);
        let text = String::from_utf8(s.head.clone()).unwrap();
        assert!(text.contains("X-Amz-Request-Payer: requester\r\n"));
        assert!(text.contains("x-amz-checksum-mode:  ENABLED \r\n"));
        assert!(!text.contains("x-amz-foo"));
        assert_eq!(text.matches("x-amz-date:").count(), 1);
        assert_eq!(
            s.signed.signed_headers(),
            "host;x-amz-checksum-mode;x-amz-content-sha256;x-amz-date;x-amz-request-payer"
        );
        let canonical = String::from_utf8(s.signed.canonical_request().to_vec()).unwrap();
        assert!(canonical.contains("\nx-amz-checksum-mode:ENABLED\n"));
        assert!(canonical.contains("\nx-amz-request-payer:requester\n"));
    }

    #[test]
    fn strict_targets() {
        let (p, q) = strict_target(b"/a+b/c d/%2b/100%/(x)", b"prefix=a+b&acl&x=%2F&&y=1=2");
        assert_eq!(p, b"/a%2Bb/c%20d/%2B/100%25/%28x%29");
        assert_eq!(q, b"prefix=a%20b&acl&x=%2F&y=1%3D2");
    }

    #[test]
    fn errors() {
        let e = |raw: &[u8]| parse_head(raw).unwrap_err();
        assert_eq!(e(b"GET / HTTP/1.0\r\nHost: a\r\n"), HeadError::Unterminated);
        assert_eq!(e(b"GET HTTP/1.0\r\n\r\n"), HeadError::RequestLine);
        assert_eq!(e(b"GET * HTTP/1.0\r\nHost: a\r\n\r\n"), HeadError::Target);
        assert_eq!(e(b"GET / HTTP/1.0\r\nbad\r\n\r\n"), HeadError::HeaderLine);
        assert_eq!(e(b"GET / HTTP/1.0\r\n\r\n"), HeadError::Host(0));
        assert_eq!(e(b"GET / HTTP/2\r\nHost: a\r\n\r\n"), HeadError::Version);
        assert_eq!(
            e(b"GET /a\nb HTTP/1.0\r\nHost: a\r\n\r\n"),
            HeadError::LineBreak
        );
        assert_eq!(
            e(b"GET /a\rb HTTP/1.0\r\nHost: a\r\n\r\n"),
            HeadError::LineBreak
        );
        assert_eq!(
            e(b"GET /a\0b HTTP/1.0\r\nHost: a\r\n\r\n"),
            HeadError::LineBreak
        );
        assert_eq!(
            e(b"GET / HTTP/1.0\r\nHost: a\r\nX: a\nb\r\n\r\n"),
            HeadError::LineBreak
        );
        assert_eq!(
            e(b"GET / HTTP/1.0\r\nHost: a\r\n folded\r\n\r\n"),
            HeadError::Folded
        );
        assert_eq!(
            e(b"GET / HTTP/1.0\r\nHost: a\r\nX Y: z\r\n\r\n"),
            HeadError::HeaderName
        );
        assert_eq!(
            e(b"GET / HTTP/1.1\r\nX: y HTTP/1.0\r\nHost: a\r\n\r\n"),
            HeadError::VersionInHeader
        );
        assert_eq!(
            e(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
            HeadError::Host(2)
        );
        let framing = [
            &b"GET / HTTP/1.0\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"[..],
            b"GET / HTTP/1.0\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        ];
        for raw in framing {
            assert_eq!(
                e(raw),
                HeadError::Framing,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        // a second request after a head without a body, or past its body
        assert_eq!(
            e(b"GET / HTTP/1.0\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\nHost: b\r\n\r\n"),
            HeadError::TrailingBytes
        );
        assert_eq!(
            e(b"PUT / HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\n\r\nabGET"),
            HeadError::TrailingBytes
        );
        let h =
            parse_head(b"PUT /k?a=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab").unwrap();
        assert_eq!(
            (h.body, h.path, h.query),
            (Body::Length(5), &b"/k"[..], &b"a=1"[..])
        );
        let h = parse_head(b"PUT /k HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        assert_eq!(h.body, Body::Chunked);
    }
}
