//! AWS Signature Version 4, without I/O.
//!
//! This crate turns the parts of an HTTP request (method, path and query as
//! they go on the wire, the headers to sign and the payload hash) into the
//! SigV4 canonical request, string to sign, signature and `Authorization`
//! value. It knows two sets of canonicalization rules:
//!
//! * [`PathRules::S3`]: the wire path is percent-decoded once and encoded
//!   again with the RFC 3986 unreserved set; no dot-segment or slash
//!   normalization. This is what S3 (and `s3-outposts`, `s3express`) checks.
//! * [`PathRules::Generic`]: every other AWS service. The wire path is taken
//!   as it is, optionally normalized (dot segments removed, repeated slashes
//!   merged), then encoded, so an already escaped path ends up encoded twice.
//!
//! It never allocates fixed-size buffers: a canonical request of any size
//! works. Nothing here logs or keeps a key.
//!
//! ```
//! use aws_signer::{derive_signing_key, sign, PathRules, Request, Credentials, Scope};
//!
//! let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
//! let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
//! let empty = aws_signer::EMPTY_PAYLOAD_SHA256;
//! let headers = [
//!     (&b"Host"[..], &b"examplebucket.s3.amazonaws.com"[..]),
//!     (b"Range", b"bytes=0-9"),
//!     (b"x-amz-content-sha256", empty.as_bytes()),
//!     (b"x-amz-date", b"20130524T000000Z"),
//! ];
//! let req = Request {
//!     method: b"GET",
//!     path: b"/test.txt",
//!     query: b"",
//!     headers: &headers,
//!     payload_hash: empty.as_bytes(),
//!     rules: PathRules::S3,
//! };
//! let creds = Credentials { access_key: "AKIAIOSFODNN7EXAMPLE", scope: &scope, key: &key };
//! let signed = sign(&req, &creds, "20130524T000000Z");
//! assert_eq!(
//!     signed.signature_hex(),
//!     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
//! );
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::cmp::Ordering;
use std::fmt;

pub mod config;
pub mod creds;
pub mod hash;
pub mod http1;
pub mod listing;
pub mod metrics;
pub mod policy;
pub mod redact;
pub mod sources;
pub mod sts;
pub mod wire;

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use hash::HmacKey;

/// The algorithm name that starts every string to sign and `Authorization` value.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Hex SHA-256 of the empty string: the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Payload hash value that tells S3 the body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Length in bytes of a derived signing key.
pub const SIGNING_KEY_LEN: usize = 32;

/// A derived SigV4 signing key (kSigning). Wiped when dropped; its `Debug`
/// form never shows it.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SigningKey([u8; SIGNING_KEY_LEN]);

impl SigningKey {
    /// Wraps 32 key bytes (the caller wipes its own copy).
    pub fn from_bytes(bytes: [u8; SIGNING_KEY_LEN]) -> SigningKey {
        SigningKey(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; SIGNING_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Canonical URI rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRules {
    /// S3: decode the wire path once, encode once, keep it as it is otherwise.
    S3,
    /// Any other service: encode the wire path as given (double encoding),
    /// after removing dot segments and merging slashes when `normalize` is set.
    Generic {
        /// Remove `.`/`..` segments and merge repeated slashes first.
        normalize: bool,
    },
}

impl PathRules {
    /// The rules AWS applies for a service name: S3 rules for `s3`,
    /// `s3-outposts` and `s3express`, normalized generic rules otherwise.
    pub fn for_service(service: &str) -> PathRules {
        match service {
            "s3" | "s3-outposts" | "s3express" => PathRules::S3,
            _ => PathRules::Generic { normalize: true },
        }
    }
}

/// The request parts that go into a signature.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The HTTP method as sent, e.g. `GET`.
    pub method: &'a [u8],
    /// The path as it goes on the wire, without the query.
    pub path: &'a [u8],
    /// The query as it goes on the wire, without the leading `?` (may be empty).
    pub query: &'a [u8],
    /// The headers to sign, names in any case and order; a name that appears
    /// more than once has its values joined with `,` in the order given.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Lowercase hex SHA-256 of the body, or [`UNSIGNED_PAYLOAD`].
    pub payload_hash: &'a [u8],
    /// Which canonical URI rules apply.
    pub rules: PathRules,
}

/// A credential scope: `YYYYMMDD/region/service/aws4_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    text: String,
    region_end: usize,
    service_end: usize,
}

/// Why a credential scope was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// Not four `/`-separated parts.
    Parts,
    /// The first part is not a valid `YYYYMMDD` calendar date.
    Date,
    /// The region part is empty or holds characters other than `a-z 0-9 -`.
    Region,
    /// The service part is empty or holds characters other than `a-z 0-9 - .`.
    Service,
    /// The last part is not `aws4_request`.
    Terminator,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeError::Parts => "must have the form YYYYMMDD/region/service/aws4_request",
            ScopeError::Date => "does not start with a valid YYYYMMDD date",
            ScopeError::Region => "has an invalid region (allowed: a-z, 0-9, '-')",
            ScopeError::Service => "has an invalid service (allowed: a-z, 0-9, '-', '.')",
            ScopeError::Terminator => "must end with /aws4_request",
        })
    }
}

impl std::error::Error for ScopeError {}

impl Scope {
    /// Parses and checks a credential scope.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() != 4 {
            return Err(ScopeError::Parts);
        }
        if !valid_date(parts[0]) {
            return Err(ScopeError::Date);
        }
        let region_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if parts[1].is_empty() || !parts[1].chars().all(region_ok) {
            return Err(ScopeError::Region);
        }
        if parts[2].is_empty() || !parts[2].chars().all(|c| region_ok(c) || c == '.') {
            return Err(ScopeError::Service);
        }
        if parts[3] != "aws4_request" {
            return Err(ScopeError::Terminator);
        }
        let region_end = 9 + parts[1].len();
        Ok(Scope {
            text: text.to_owned(),
            region_end,
            service_end: region_end + 1 + parts[2].len(),
        })
    }

    /// Builds the scope for a date (`YYYYMMDD`), region and service.
    pub fn new(date: &str, region: &str, service: &str) -> Result<Scope, ScopeError> {
        Scope::parse(&format!("{date}/{region}/{service}/aws4_request"))
    }

    /// The whole scope text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `YYYYMMDD` date.
    pub fn date(&self) -> &str {
        &self.text[..8]
    }

    /// The region, e.g. `us-east-1`.
    pub fn region(&self) -> &str {
        &self.text[9..self.region_end]
    }

    /// The service, e.g. `s3`.
    pub fn service(&self) -> &str {
        &self.text[self.region_end + 1..self.service_end]
    }
}

fn valid_date(s: &str) -> bool {
    s.len() == 8
        && s.bytes().all(|b| b.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(s, "%Y%m%d").is_ok()
}

/// What a signature is made with.
#[derive(Clone, Copy, Debug)]
pub struct Credentials<'a> {
    /// The access key id.
    pub access_key: &'a str,
    /// The scope the key was derived for.
    pub scope: &'a Scope,
    /// The derived signing key.
    pub key: &'a SigningKey,
}

/// Derives the signing key: HMAC chain `AWS4`+secret → date → region → service → `aws4_request`.
/// Every intermediate copy of secret material is wiped.
pub fn derive_signing_key(secret: &[u8], scope: &Scope) -> SigningKey {
    let mut first = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    first.extend_from_slice(b"AWS4");
    first.extend_from_slice(secret);
    let k_date = Zeroizing::new(hash::hmac(&first, scope.date().as_bytes()));
    let k_region = Zeroizing::new(hash::hmac(&*k_date, scope.region().as_bytes()));
    let k_service = Zeroizing::new(hash::hmac(&*k_region, scope.service().as_bytes()));
    SigningKey(hash::hmac(&*k_service, b"aws4_request"))
}

/// Lowercase hex of `bytes` into `out` (twice as long, or it stops short).
fn hex_lower(bytes: &[u8], out: &mut [u8]) {
    let n = bytes.len().min(out.len() / 2);
    let whole = n - n % 4;
    let (quads, rest) = bytes[..n].split_at(whole);
    let (octets, pairs) = out[..2 * n].split_at_mut(2 * whole);
    for (o, q) in octets.chunks_exact_mut(8).zip(quads.chunks_exact(4)) {
        o.copy_from_slice(&hex_quad(u32::from_be_bytes([q[0], q[1], q[2], q[3]])));
    }
    for (pair, &b) in pairs.chunks_exact_mut(2).zip(rest) {
        pair.copy_from_slice(&HEX_PAIRS[b as usize]);
    }
}

/// The eight lowercase hex digits of four bytes, in one word: each nibble
/// spread to a byte of its own, then `0`-`9` and `a`-`f` added to all
/// eight at once.
#[inline]
fn hex_quad(v: u32) -> [u8; 8] {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let mut x = u64::from(v);
    x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more
    let letters = ((x + 6 * LOW) >> 4) & LOW;
    (x + b'0' as u64 * LOW + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// SHA-256 of some bytes.
fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// HMAC-SHA256 with a signing key, reusing the keyed state (the inner and
/// outer pads already hashed) of the last signing key used on this thread:
/// a signing key serves a whole day of requests. The inner state after the
/// first block of the last message is kept too: a string to sign begins
/// with the algorithm, the time to the second and the scope, so every
/// request of one second shares that block. The cached states are wiped
/// when another key replaces them.
fn hmac_with_signing_key(key: &SigningKey, data: &[u8]) -> [u8; 32] {
    use std::cell::RefCell;
    struct Last {
        key: SigningKey,
        mac: HmacKey,
        prefix: Option<hash::HmacPrefix>,
    }
    thread_local! {
        static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
    }
    LAST.with(|cell| {
        let mut last = cell.borrow_mut();
        if last.as_ref().is_none_or(|l| l.key != *key) {
            *last = Some(Last {
                key: key.clone(),
                mac: HmacKey::new(key.as_bytes()),
                prefix: None,
            });
        }
        let Some(l) = last.as_mut() else {
            return HmacKey::new(key.as_bytes()).mac(data);
        };
        let Some(first) = data.first_chunk::<64>() else {
            return l.mac.mac(data);
        };
        let rest = &data[64..];
        match &l.prefix {
            Some(p) if p.is_for(first) => l.mac.mac_after(p, rest),
            _ => {
                let p = l.mac.prefix(first);
                let out = l.mac.mac_after(&p, rest);
                l.prefix = Some(p);
                out
            }
        }
    })
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Formats a Unix time as an `x-amz-date` value, `YYYYMMDDTHHMMSSZ` (UTC).
///
/// Times outside the years 0 to 9999 give `None`.
pub fn amz_date(unix_seconds: i64) -> Option<String> {
    let mut out = [0u8; 16];
    amz_date_into(unix_seconds, &mut out).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// [`amz_date`] into a 16-byte buffer, by hand (no formatting machinery:
/// it runs once per request); false for a year outside 0 to 9999.
pub fn amz_date_into(unix_seconds: i64, out: &mut [u8; 16]) -> bool {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    // days since 1970-01-01 to a civil date (the proleptic Gregorian
    // calendar), with eras of 400 years starting on March 1st
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return false;
    }
    let digits = |out: &mut [u8], mut v: i64| {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(&mut out[0..4], year);
    digits(&mut out[4..6], month);
    digits(&mut out[6..8], day);
    out[8] = b'T';
    digits(&mut out[9..11], secs / 3600);
    digits(&mut out[11..13], secs / 60 % 60);
    digits(&mut out[13..15], secs % 60);
    out[15] = b'Z';
    true
}

/// The result of signing.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The canonical request, then the string to sign, in one allocation.
    buf: Vec<u8>,
    /// Where the canonical request ends and the string to sign begins.
    canonical_end: usize,
    /// Where the signed header list is in `canonical_request`.
    signed_headers: std::ops::Range<usize>,
    signature: [u8; 32],
    authorization: String,
}

/// The canonical request holds the session token, when there is one:
/// wiped with the rest.
impl Drop for Signed {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl Signed {
    pub(crate) fn from_parts(
        buf: Vec<u8>,
        canonical_end: usize,
        signed_headers: std::ops::Range<usize>,
        signature: [u8; 32],
        authorization: String,
    ) -> Signed {
        Signed {
            buf,
            canonical_end,
            signed_headers,
            signature,
            authorization,
        }
    }

    /// The canonical request that was hashed.
    pub fn canonical_request(&self) -> &[u8] {
        &self.buf[..self.canonical_end]
    }

    /// The string to sign.
    pub fn string_to_sign(&self) -> &str {
        std::str::from_utf8(&self.buf[self.canonical_end..]).unwrap_or("")
    }

    /// `;`-separated lowercase signed header names.
    pub fn signed_headers(&self) -> &str {
        std::str::from_utf8(&self.buf[self.signed_headers.clone()]).unwrap_or("")
    }

    /// Lowercase hex signature.
    pub fn signature_hex(&self) -> String {
        hex::encode(self.signature)
    }

    /// The full `Authorization` header value.
    pub fn authorization(&self) -> &str {
        &self.authorization
    }
}

/// Signs a request: canonical request, string to sign, signature and `Authorization`.
///
/// `amz_date` is the `x-amz-date` value (`YYYYMMDDTHHMMSSZ`). Its date part
/// should equal the scope date or AWS will refuse the request; this function
/// does not check it.
pub fn sign(req: &Request<'_>, creds: &Credentials<'_>, amz_date: &str) -> Signed {
    let headers_len: usize = req
        .headers
        .iter()
        .map(|(n, v)| 2 * n.len() + v.len() + 3)
        .sum();
    let mut buf = Vec::with_capacity(
        240 + creds.scope.as_str().len() + 3 * (req.path.len() + req.query.len()) + headers_len,
    );
    let (canonical_end, signed_headers, signature) = sign_in(req, creds, amz_date, &mut buf);
    let mut sig_hex = [0u8; 64];
    hex_lower(&signature, &mut sig_hex);
    let authorization = authorization_value(
        creds.access_key,
        creds.scope,
        std::str::from_utf8(&buf[signed_headers.clone()]).unwrap_or(""),
        std::str::from_utf8(&sig_hex).unwrap_or_default(),
    );
    Signed::from_parts(buf, canonical_end, signed_headers, signature, authorization)
}

/// The `Authorization` value alone, with `scratch` (cleared first, then
/// left holding the canonical request and the string to sign) reused for
/// the work: no allocation but the returned value once `scratch` has grown.
pub fn authorization_into(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    amz_date: &str,
    scratch: &mut Vec<u8>,
) -> String {
    let at = authorization_in(req, creds, amz_date, scratch);
    String::from_utf8_lossy(&scratch[at]).into_owned()
}

/// The `Authorization` value, written into `scratch` (cleared first) after
/// the canonical request and the string to sign; returns where it is.
/// Nothing is allocated once `scratch` has grown.
pub fn authorization_in(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    amz_date: &str,
    scratch: &mut Vec<u8>,
) -> std::ops::Range<usize> {
    scratch.clear();
    let (_, signed_headers, signature) = sign_in(req, creds, amz_date, scratch);
    let mut sig_hex = [0u8; 64];
    hex_lower(&signature, &mut sig_hex);
    let start = scratch.len();
    scratch.extend_from_slice(ALGORITHM.as_bytes());
    scratch.extend_from_slice(b" Credential=");
    scratch.extend_from_slice(creds.access_key.as_bytes());
    scratch.push(b'/');
    scratch.extend_from_slice(creds.scope.as_str().as_bytes());
    scratch.extend_from_slice(b", SignedHeaders=");
    scratch.extend_from_within(signed_headers);
    scratch.extend_from_slice(b", Signature=");
    scratch.extend_from_slice(&sig_hex);
    start..scratch.len()
}

/// Writes the canonical request then the string to sign into `buf`;
/// returns where the canonical request ends, where the signed header list
/// is, and the signature.
fn sign_in(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    amz_date: &str,
    buf: &mut Vec<u8>,
) -> (usize, std::ops::Range<usize>, [u8; 32]) {
    let signed_headers = write_canonical_request_inner(req, buf);
    let canonical_end = buf.len();
    let hash = sha256(buf);
    write_string_to_sign(amz_date, creds.scope, &hash, buf);
    let signature = hmac_with_signing_key(creds.key, &buf[canonical_end..]);
    (canonical_end, signed_headers, signature)
}

/// A presigned (query-string signed) request: see [`presign`].
#[derive(Clone, Debug)]
pub struct Presigned {
    /// The canonical request that was hashed.
    pub canonical_request: Vec<u8>,
    /// The string to sign.
    pub string_to_sign: String,
    /// Lowercase hex signature.
    pub signature: String,
    /// The query to send: the request's own query, then the `X-Amz-*`
    /// parameters with `X-Amz-Signature` last, every key and value in the
    /// strict encoding.
    pub query: Vec<u8>,
}

/// Both carry the session token, when there is one: wiped.
impl Drop for Presigned {
    fn drop(&mut self) {
        self.canonical_request.zeroize();
        self.query.zeroize();
    }
}

/// Longest validity of a presigned URL AWS accepts (7 days), in seconds.
pub const MAX_PRESIGN_EXPIRES: u64 = 7 * 24 * 3600;

/// Signs a request in its query string (a presigned URL): `X-Amz-Algorithm`,
/// `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, the session token when
/// there is one, and `X-Amz-SignedHeaders` are added to `req.query` before
/// the canonical request is made; `req.headers` are the signed headers
/// (at least `host`). `req.payload_hash` is usually `UNSIGNED-PAYLOAD` for
/// S3. `X-Amz-*` parameters already in `req.query` are dropped.
pub fn presign(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    amz_date: &str,
    expires: u64,
    session_token: Option<&str>,
) -> Presigned {
    let mut names: Vec<Vec<u8>> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let signed_headers = names
        .iter()
        .map(|n| String::from_utf8_lossy(n))
        .collect::<Vec<_>>()
        .join(";");
    let credential = format!("{}/{}", creds.access_key, creds.scope.as_str());
    let expires = expires.to_string();
    let mut params: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", &expires),
    ];
    if let Some(t) = session_token {
        params.push(("X-Amz-Security-Token", t));
    }
    params.push(("X-Amz-SignedHeaders", &signed_headers));
    let mut query = Vec::with_capacity(req.query.len() + 256);
    // the request's own X-Amz-* parameters never go in ahead of these
    write_strict_query_filtered(req.query, &|n| !policy::is_amz_param(n), &mut query);
    for (k, v) in &params {
        if !query.is_empty() {
            query.push(b'&');
        }
        query.extend_from_slice(k.as_bytes());
        query.push(b'=');
        encode_into(v.as_bytes(), false, &mut query);
    }
    let signing = Request {
        query: &query,
        ..*req
    };
    let mut canonical_request = Vec::with_capacity(256 + req.path.len() + query.len());
    write_canonical_request_inner(&signing, &mut canonical_request);
    let string_to_sign = string_to_sign(amz_date, creds.scope, &canonical_request);
    let signature = hex::encode(hash::hmac(creds.key.as_bytes(), string_to_sign.as_bytes()));
    query.extend_from_slice(b"&X-Amz-Signature=");
    query.extend_from_slice(signature.as_bytes());
    Presigned {
        canonical_request,
        string_to_sign,
        signature,
        query,
    }
}

/// Incremental SHA-256 of a request body, for a signed payload: fed piece
/// by piece as the body arrives, never holding it whole.
#[derive(Clone, Default)]
pub struct PayloadHasher {
    sha: Sha256,
    len: u64,
}

impl PayloadHasher {
    /// Adds the next piece of the body.
    pub fn update(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before any byte was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowercase hex digest, as `x-amz-content-sha256` carries it.
    pub fn finish_hex(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex_lower(&self.sha.finalize(), &mut out);
        out
    }
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &[u8]) -> String {
    let mut sts = Vec::with_capacity(128);
    write_string_to_sign(
        amz_date,
        scope,
        &Sha256::digest(canonical_request),
        &mut sts,
    );
    String::from_utf8_lossy(&sts).into_owned()
}

/// Appends the string to sign for a canonical request's SHA-256.
fn write_string_to_sign(amz_date: &str, scope: &Scope, hash: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(ALGORITHM.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(amz_date.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(scope.as_str().as_bytes());
    out.push(b'\n');
    let at = out.len();
    out.resize(at + 64, 0);
    hex_lower(hash, &mut out[at..]);
}

/// The `Authorization` header value.
pub fn authorization_value(
    access_key: &str,
    scope: &Scope,
    signed_headers: &str,
    signature_hex: &str,
) -> String {
    let parts = [
        ALGORITHM,
        " Credential=",
        access_key,
        "/",
        scope.as_str(),
        ", SignedHeaders=",
        signed_headers,
        ", Signature=",
        signature_hex,
    ];
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// Writes the canonical request into `out` and returns the signed header list.
pub fn write_canonical_request(req: &Request<'_>, out: &mut Vec<u8>) -> String {
    let range = write_canonical_request_inner(req, out);
    String::from_utf8_lossy(&out[range]).into_owned()
}

/// [`write_canonical_request`], returning where the signed header list is.
fn write_canonical_request_inner(req: &Request<'_>, out: &mut Vec<u8>) -> std::ops::Range<usize> {
    out.extend_from_slice(req.method);
    out.push(b'\n');
    write_canonical_uri(req.path, req.rules, out);
    out.push(b'\n');
    write_canonical_query(req.query, out);
    out.push(b'\n');
    let signed = write_headers(req.headers, out);
    out.push(b'\n');
    out.extend_from_slice(req.payload_hash);
    signed
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The value of an uppercase hex digit; 255 for any other byte.
const UPPER_HEX: [u8; 256] = {
    let mut t = [255u8; 256];
    let mut i = 0;
    while i < 16 {
        t[HEX_UPPER[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// True for the RFC 3986 unreserved set `A-Z a-z 0-9 - _ . ~`.
pub fn is_unreserved(b: u8) -> bool {
    KEEP[b as usize] & 1 != 0
}

/// Per byte: bit 0 unreserved, bit 1 unreserved or `/`, bit 2 `&` or `=`
/// (the separators of a query).
const KEEP: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'~' {
            t[i] = 3;
        } else if b == b'/' {
            t[i] = 2;
        } else if b == b'&' || b == b'=' {
            t[i] = 4;
        }
        i += 1;
    }
    t
};

/// True when `bytes[i..]` starts with an escape already in the strict form:
/// `%` and two uppercase hex digits of a byte outside KEEP class `mask`.
#[inline]
fn strict_escape_at(bytes: &[u8], i: usize, mask: u8) -> bool {
    match bytes.get(i..i + 3) {
        Some(&[b'%', hi, lo]) => {
            UPPER_HEX[hi as usize] < 16
                && UPPER_HEX[lo as usize] < 16
                && KEEP[(UPPER_HEX[hi as usize] << 4 | UPPER_HEX[lo as usize]) as usize] & mask == 0
        }
        _ => false,
    }
}

/// Appends one byte, as `%XX` unless it is unreserved (or `/` with `keep_slash`).
#[inline]
fn encode_byte(b: u8, keep_slash: bool, out: &mut Vec<u8>) {
    if is_unreserved(b) || (keep_slash && b == b'/') {
        out.push(b);
    } else {
        out.extend_from_slice(&[
            b'%',
            HEX_UPPER[(b >> 4) as usize],
            HEX_UPPER[(b & 15) as usize],
        ]);
    }
}

/// Appends `bytes` percent-encoded: every byte outside the unreserved set
/// becomes `%XX` (uppercase); `/` is kept when `keep_slash` is set.
pub fn encode_into(bytes: &[u8], keep_slash: bool, out: &mut Vec<u8>) {
    for &b in bytes {
        encode_byte(b, keep_slash, out);
    }
}

/// The length [`encode_into`] would append for `bytes`.
pub fn encoded_len(bytes: &[u8], keep_slash: bool) -> usize {
    bytes
        .iter()
        .map(|&b| {
            if is_unreserved(b) || (keep_slash && b == b'/') {
                1
            } else {
                3
            }
        })
        .sum()
}

/// [`encode_into`] into a slice of exactly [`encoded_len`] bytes (memory
/// the caller owns, such as an nginx pool); returns the bytes written, or
/// `None` when `out` is too short.
pub fn encode_to_slice(bytes: &[u8], keep_slash: bool, out: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            *out.get_mut(n)? = b;
            n += 1;
        } else {
            out.get_mut(n..n + 3)?.copy_from_slice(&[
                b'%',
                HEX_UPPER[(b >> 4) as usize],
                HEX_UPPER[(b & 15) as usize],
            ]);
            n += 3;
        }
    }
    Some(n)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `bytes` with every valid `%XX` sequence decoded. A `%` not
/// followed by two hex digits is kept as it is; `+` is kept (RFC 3986 path
/// semantics).
pub fn decode_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match percent_at(bytes, i) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
}

/// The byte a valid `%XX` at `bytes[i]` stands for.
fn percent_at(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex_val(*bytes.get(i + 1)?)? << 4 | hex_val(*bytes.get(i + 2)?)?)
}

/// Decodes and re-encodes in one pass, without an intermediate buffer:
/// the strict form of a path (`keep_slash`) or query component.
fn requote(bytes: &[u8], plus_is_space: bool, keep_slash: bool, out: &mut Vec<u8>) {
    let mask = if keep_slash { 2 } else { 1 };
    // Room for the usual case (nothing to encode), reserved once.
    out.reserve(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Runs that stay as they are (unreserved bytes, `/` in a path) are
        // copied whole.
        let start = i;
        loop {
            i = keep_run(bytes, i, mask);
            // an escape already in the strict form (uppercase hex, of a
            // byte that must be escaped) stays in the run
            if !strict_escape_at(bytes, i, mask) {
                break;
            }
            i += 3;
        }
        out.extend_from_slice(&bytes[start..i]);
        let Some(&c) = bytes.get(i) else { break };
        // `+` stands for a space in a query (HTML form encoding), as AWS
        // and S3 implementations read it; in a path it is a plus.
        let (b, step) = match percent_at(bytes, i) {
            Some(b) => (b, 3),
            None if plus_is_space && c == b'+' => (b' ', 1),
            None => (c, 1),
        };
        i += step;
        if KEEP[b as usize] & mask != 0 {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[(b >> 4) as usize],
                HEX_UPPER[(b & 15) as usize],
            ]);
        }
    }
}

/// Where the run of bytes in `KEEP` class `mask` that starts at `i` ends:
/// eight bytes a round while they all are.
#[inline]
fn keep_run(bytes: &[u8], mut i: usize, mask: u8) -> usize {
    while let Some(w) = bytes.get(i..i + 8) {
        let all = KEEP[w[0] as usize]
            & KEEP[w[1] as usize]
            & KEEP[w[2] as usize]
            & KEEP[w[3] as usize]
            & KEEP[w[4] as usize]
            & KEEP[w[5] as usize]
            & KEEP[w[6] as usize]
            & KEEP[w[7] as usize];
        if all & mask == 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && KEEP[bytes[i] as usize] & mask != 0 {
        i += 1;
    }
    i
}

/// Writes the canonical URI of a wire path under the given rules.
pub fn write_canonical_uri(path: &[u8], rules: PathRules, out: &mut Vec<u8>) {
    if path.is_empty() {
        out.push(b'/');
        return;
    }
    match rules {
        PathRules::S3 => requote(path, false, true, out),
        PathRules::Generic { normalize: false } => encode_into(path, true, out),
        PathRules::Generic { normalize: true } => {
            encode_into(&normalize_path(path), true, out);
        }
    }
}

/// Removes `.` and `..` segments and merges repeated slashes, keeping a
/// trailing slash. The result always starts with `/`.
pub fn normalize_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    normalize_into(path, &mut out);
    out
}

/// [`normalize_path`], appended to `out`.
pub fn normalize_into(path: &[u8], out: &mut Vec<u8>) {
    let base = out.len();
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                // back to the start of the last segment written
                let cut = out[base..]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(base, |i| base + i);
                out.truncate(cut);
            }
            s => {
                out.push(b'/');
                out.extend_from_slice(s);
            }
        }
    }
    let ends_with_dir = path.ends_with(b"/")
        || path.ends_with(b"/.")
        || path.ends_with(b"/..")
        || path == b"."
        || path == b"..";
    if out.len() == base || ends_with_dir {
        out.push(b'/');
    }
}

/// Splits a query into `(key, value, had '=')` parts, dropping empty ones.
pub fn query_parts(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8], bool)> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|part| match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..], true),
            None => (part, &b""[..], false),
        })
}

/// Appends a query key or value in its strict form: decoded (`+` as a
/// space), then encoded with the unreserved set.
pub fn requote_query_component(raw: &[u8], out: &mut Vec<u8>) {
    requote(raw, true, false, out);
}

/// Appends the strict form of a query: each key and value decoded (`+` as
/// a space) and encoded with the unreserved set, order and bare keys
/// (`?acl`) kept, empty pairs (`&&`) dropped.
pub fn write_strict_query(query: &[u8], out: &mut Vec<u8>) {
    write_strict_query_filtered(query, &|_| true, out);
}

/// [`write_strict_query`] keeping only the parameters whose name, in its
/// strict form, `keep` accepts.
pub fn write_strict_query_filtered(query: &[u8], keep: &dyn Fn(&[u8]) -> bool, out: &mut Vec<u8>) {
    write_strict_query_in_order(query, keep, out);
}

/// [`write_strict_query_filtered`]; true when what it wrote is its own
/// canonical form (see [`is_canonical_order`]), found in the same pass for
/// a query already strict.
pub(crate) fn write_strict_query_in_order(
    query: &[u8],
    keep: &dyn Fn(&[u8]) -> bool,
    out: &mut Vec<u8>,
) -> bool {
    let start = out.len();
    if let Some(in_order) = write_if_strict(query, keep, out) {
        return in_order;
    }
    out.truncate(start);
    for (k, v, eq) in query_parts(query) {
        let at = out.len();
        if at > start {
            out.push(b'&');
        }
        let name_at = out.len();
        requote_query_component(k, out);
        if !keep(&out[name_at..]) {
            out.truncate(at);
            continue;
        }
        if eq {
            out.push(b'=');
            requote_query_component(v, out);
        }
    }
    is_canonical_order(&out[start..])
}

/// [`write_strict_query_filtered`] for a query that is already in its
/// strict form (what SDKs send): each kept parameter is copied as it is.
/// `None`, with whatever it wrote, for any other query; else whether
/// what it wrote is its own canonical form (see [`is_canonical_order`]).
fn write_if_strict(query: &[u8], keep: &dyn Fn(&[u8]) -> bool, out: &mut Vec<u8>) -> Option<bool> {
    if query.is_empty() {
        return Some(true);
    }
    let start = out.len();
    let mut in_order = true;
    let mut prev: (&[u8], &[u8]) = (b"", b"");
    strict_params(query, |part, eq, end| {
        let key = &query[part..eq];
        if keep(key) {
            let value = query.get(eq + 1..end).unwrap_or(b"");
            if out.len() > start {
                out.push(b'&');
                in_order &= param_cmp((key, value), prev).is_ge();
            }
            in_order &= eq < end;
            prev = (key, value);
            out.extend_from_slice(&query[part..end]);
        }
        Some(())
    })?;
    Some(in_order)
}

/// Walks a query in its strict form: unreserved bytes and strict escapes,
/// `&` between non-empty parameters, at most one `=` in each (another is
/// `%3D` in a value). Calls `param` with each parameter's start, `=` (or
/// end) and end, in one pass; `None` as soon as a byte breaks the form,
/// or `param` gives `None`.
#[inline]
fn strict_params(
    query: &[u8],
    mut param: impl FnMut(usize, usize, usize) -> Option<()>,
) -> Option<()> {
    let (mut part, mut eq) = (0usize, None::<usize>);
    let mut i = 0;
    loop {
        i = keep_run(query, i, 1);
        match query.get(i) {
            Some(b'=') if eq.is_none() => {
                eq = Some(i);
                i += 1;
            }
            Some(b'%') if strict_escape_at(query, i, 1) => i += 3,
            None | Some(b'&') if i > part => {
                param(part, eq.unwrap_or(i), i)?;
                if i == query.len() {
                    return Some(());
                }
                i += 1;
                (part, eq) = (i, None);
            }
            _ => return None,
        }
    }
}

/// The strict form of a path: decoded once, encoded with the unreserved
/// set, `/` kept.
pub fn requote_path(raw: &[u8], out: &mut Vec<u8>) {
    requote(raw, false, true, out);
}

/// Writes the canonical query: every key and value decoded (`+` as a
/// space) then encoded with the unreserved set, pairs sorted by key then
/// value, `key=` for a key without a value; empty pairs (`&&`) are dropped.
pub fn write_canonical_query(query: &[u8], out: &mut Vec<u8>) {
    if query.is_empty() {
        return;
    }
    // A query already in its strict form (what SDKs send) is its own
    // canonical form once its parameters are in order.
    let mut small = [(0u32, 0u32, 0u32); 16];
    if let Some((n, in_order)) = scan_strict_query(query, &mut small) {
        if in_order {
            out.extend_from_slice(query);
        } else {
            let pairs = &mut small[..n];
            sort_pairs(query, pairs);
            write_pairs(query, pairs, out);
        }
        return;
    }
    // The encoded keys and values go to the end of `out` first, as
    // scratch; the sorted query is written after them and moved down.
    let base = out.len();
    let mut small = [(0u32, 0u32, 0u32); 16];
    let mut large: Vec<(u32, u32, u32)> = Vec::new();
    let mut n = 0;
    for (k, v, _) in query_parts(query) {
        let start = (out.len() - base) as u32;
        requote_query_component(k, out);
        let mid = (out.len() - base) as u32;
        requote_query_component(v, out);
        let end = (out.len() - base) as u32;
        if n < small.len() {
            small[n] = (start, mid, end);
        } else {
            if large.is_empty() {
                large.extend_from_slice(&small);
            }
            large.push((start, mid, end));
        }
        n += 1;
    }
    let pairs: &mut [(u32, u32, u32)] = if n <= small.len() {
        &mut small[..n]
    } else {
        &mut large
    };
    let scratch_len = out.len() - base;
    {
        let scratch = &out[base..];
        let key = |p: &(u32, u32, u32)| &scratch[p.0 as usize..p.1 as usize];
        let value = |p: &(u32, u32, u32)| &scratch[p.1 as usize..p.2 as usize];
        pairs.sort_by(|a, b| key(a).cmp(key(b)).then_with(|| value(a).cmp(value(b))));
    }
    for (i, p) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_within(base + p.0 as usize..base + p.1 as usize);
        out.push(b'=');
        out.extend_from_within(base + p.1 as usize..base + p.2 as usize);
    }
    out.copy_within(base + scratch_len.., base);
    let written = out.len() - base - scratch_len;
    out.truncate(base + written);
}

/// One pass over a query in its strict form (see [`strict_params`]).
/// Its parameters' offsets (start, `=` or end, end) go to `pairs`; returns
/// how many there are and whether the query is its own canonical form
/// (see [`is_canonical_order`]). `None` for any other query, or one of
/// more parameters than `pairs` holds.
fn scan_strict_query(query: &[u8], pairs: &mut [(u32, u32, u32); 16]) -> Option<(usize, bool)> {
    if query.len() >= u32::MAX as usize {
        return None;
    }
    let (mut n, mut in_order) = (0, true);
    strict_params(query, |part, eq, end| {
        let pair = (part as u32, eq as u32, end as u32);
        in_order &= eq < end;
        if n > 0 {
            in_order &= pair_cmp(query, &pairs[n - 1], &pair).is_le();
        }
        *pairs.get_mut(n)? = pair;
        n += 1;
        Some(())
    })?;
    Some((n, in_order))
}

/// [`param_cmp`] for parameters given as offsets into their query; the
/// values are looked up only when the names tie.
fn pair_cmp(query: &[u8], a: &(u32, u32, u32), b: &(u32, u32, u32)) -> Ordering {
    cmp_bytes(pair_name(query, a), pair_name(query, b))
        .then_with(|| cmp_bytes(pair_value(query, a), pair_value(query, b)))
}

/// The canonical order of query parameters: by name, then value.
fn param_cmp(a: (&[u8], &[u8]), b: (&[u8], &[u8])) -> Ordering {
    cmp_bytes(a.0, b.0).then_with(|| cmp_bytes(a.1, b.1))
}

/// `a.cmp(b)` for the short names and values of a request, inline: they
/// mostly differ in their first bytes, where a call to `memcmp` costs more
/// than the comparison.
fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Sorts parameters by name then value, a stable insertion sort: for the
/// handful of them a query holds (at most 16 here).
fn sort_pairs(query: &[u8], pairs: &mut [(u32, u32, u32)]) {
    for i in 1..pairs.len() {
        let mut j = i;
        while j > 0 && pair_cmp(query, &pairs[j], &pairs[j - 1]).is_lt() {
            pairs.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Writes parameters as `name=value`, joined by `&`.
fn write_pairs(query: &[u8], pairs: &[(u32, u32, u32)], out: &mut Vec<u8>) {
    for (i, p) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(pair_name(query, p));
        out.push(b'=');
        out.extend_from_slice(pair_value(query, p));
    }
}

/// Writes the canonical query of a query already in its strict form (see
/// [`write_strict_query`], which every forwarded query goes through):
/// pairs sorted by key then value, `key=` for a bare key. Nothing is
/// decoded or encoded again; `pairs` is scratch space.
pub(crate) fn write_canonical_strict_query(
    query: &[u8],
    pairs: &mut Vec<(u32, u32, u32)>,
    out: &mut Vec<u8>,
) {
    let mut small = [(0u32, 0u32, 0u32); 16];
    write_pairs(query, sorted_strict_pairs(query, &mut small, pairs), out);
}

/// When a strict query gives a name more than once, rewrites it with its
/// parameters in canonical order (by name, then value), each as it was
/// (a bare key stays bare). `scratch` and `pairs` are scratch space.
pub(crate) fn sort_repeated_names(
    query: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    pairs: &mut Vec<(u32, u32, u32)>,
) {
    let mut small = [(0u32, 0u32, 0u32); 16];
    let q: &[u8] = query;
    let sorted = sorted_strict_pairs(q, &mut small, pairs);
    if !sorted
        .windows(2)
        .any(|w| pair_name(q, &w[0]) == pair_name(q, &w[1]))
    {
        return;
    }
    scratch.clear();
    for (i, p) in sorted.iter().enumerate() {
        if i > 0 {
            scratch.push(b'&');
        }
        scratch.extend_from_slice(&q[p.0 as usize..p.2 as usize]);
    }
    query.clear();
    query.extend_from_slice(scratch);
    zeroize::Zeroize::zeroize(scratch.as_mut_slice());
    scratch.clear();
}

/// The name of a parameter of a strict query, given as offsets by
/// [`strict_pairs`].
fn pair_name<'q>(query: &'q [u8], p: &(u32, u32, u32)) -> &'q [u8] {
    &query[p.0 as usize..p.1 as usize]
}

/// The value of a parameter of a strict query (empty for a bare name).
fn pair_value<'q>(query: &'q [u8], p: &(u32, u32, u32)) -> &'q [u8] {
    query.get(p.1 as usize + 1..p.2 as usize).unwrap_or(b"")
}

/// The parameters of a strict query (see [`strict_pairs`]) sorted by name
/// then value, in a stable order (`a` stays before `a=`): held in `small`
/// while they fit, else in `large`.
fn sorted_strict_pairs<'p>(
    query: &[u8],
    small: &'p mut [(u32, u32, u32); 16],
    large: &'p mut Vec<(u32, u32, u32)>,
) -> &'p [(u32, u32, u32)] {
    large.clear();
    let n = strict_pairs(query, small, large);
    let inline = n <= small.len();
    let pairs = if inline {
        &mut small[..n]
    } else {
        &mut large[..]
    };
    if inline {
        sort_pairs(query, pairs);
    } else {
        pairs.sort_by(|a, b| pair_cmp(query, a, b));
    }
    pairs
}

/// The parameters of a strict query as (start, `=` or end, end) offsets,
/// empty ones left out: into `small` while they fit, else all of them
/// into `large` (empty on entry). Returns how many there are.
fn strict_pairs(
    query: &[u8],
    small: &mut [(u32, u32, u32)],
    large: &mut Vec<(u32, u32, u32)>,
) -> usize {
    let mut n = 0;
    let mut at = 0usize;
    for part in query.split(|&b| b == b'&') {
        let start = at;
        at += part.len() + 1;
        if part.is_empty() {
            continue;
        }
        let end = start + part.len();
        let mid = memchr::memchr(b'=', part).map_or(end, |i| start + i);
        let pair = (start as u32, mid as u32, end as u32);
        if n < small.len() {
            small[n] = pair;
        } else {
            if large.is_empty() {
                large.extend_from_slice(small);
            }
            large.push(pair);
        }
        n += 1;
    }
    n
}

/// True when a strict query is its own canonical form, as SDKs send it:
/// every parameter has its `=`, none is empty, and they come sorted by
/// name then value. Nothing needs moving then.
fn is_canonical_order(query: &[u8]) -> bool {
    let mut prev: Option<(&[u8], &[u8])> = None;
    for part in query.split(|&b| b == b'&') {
        let Some(eq) = memchr::memchr(b'=', part) else {
            return false;
        };
        let pair = (&part[..eq], &part[eq + 1..]);
        if prev.is_some_and(|p| param_cmp(pair, p).is_lt()) {
            return false;
        }
        prev = Some(pair);
    }
    prev.is_some()
}

/// True when every byte is above `' '` (no space, tab, line break or other
/// control byte), eight bytes at a time.
fn all_above_space(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // a byte below 0x21 sets its high bit here (exact for bytes below
    // 0x80; bytes from 0x80 never do)
    let below = |w: &[u8]| {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        x.wrapping_sub(ONES * 0x21) & !x & HIGH
    };
    let Some(last) = value.last_chunk::<8>() else {
        return value.iter().all(|&b| b > b' ');
    };
    // the last word overlaps the words before it: no byte-wise tail
    value
        .chunks_exact(8)
        .fold(below(last), |acc, w| acc | below(w))
        == 0
}

/// Appends a header value trimmed, with every run of whitespace (spaces,
/// tabs, folded line breaks) turned into one space.
pub fn write_trimmed_value(value: &[u8], out: &mut Vec<u8>) {
    // Most values have nothing to trim or squeeze: copy them whole.
    if all_above_space(value) {
        out.extend_from_slice(value);
        return;
    }
    let mut plain = value.first() != Some(&b' ') && value.last() != Some(&b' ');
    let mut prev = 0u8;
    for &b in value {
        if b < b' ' || (b == b' ' && prev == b' ') {
            plain = false;
            break;
        }
        prev = b;
    }
    if plain {
        out.extend_from_slice(value);
        return;
    }
    let mut pending_space = false;
    let mut started = false;
    for &b in value {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            pending_space = started;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            started = true;
        }
    }
}

/// Writes the canonical headers block (each line ends with `\n`) and returns
/// the signed header list.
pub fn write_canonical_headers(headers: &[(&[u8], &[u8])], out: &mut Vec<u8>) -> String {
    let at = out.len();
    let range = write_headers(headers, out);
    let signed = String::from_utf8_lossy(&out[range.clone()]).into_owned();
    // only the header block itself belongs to `out` here
    out.truncate(range.start - 1);
    debug_assert!(out.len() >= at);
    signed
}

/// Writes the canonical header block, an empty line, then the signed header
/// list; returns where the list is.
fn write_headers(headers: &[(&[u8], &[u8])], out: &mut Vec<u8>) -> std::ops::Range<usize> {
    // The usual case, a signer's own header set: lowercase names, already
    // in order, none repeated. Written straight through.
    let simple = headers
        .iter()
        .all(|(n, _)| !n.iter().any(u8::is_ascii_uppercase))
        && headers
            .windows(2)
            .all(|w| cmp_bytes(w[0].0, w[1].0).is_lt());
    if simple {
        for (name, value) in headers {
            out.extend_from_slice(name);
            out.push(b':');
            write_trimmed_value(value, out);
            out.push(b'\n');
        }
        out.push(b'\n');
        let start = out.len();
        for (i, (name, _)) in headers.iter().enumerate() {
            if i > 0 {
                out.push(b';');
            }
            out.extend_from_slice(name);
        }
        return start..out.len();
    }
    let lower_cmp = |a: &[u8], b: &[u8]| {
        a.iter()
            .map(u8::to_ascii_lowercase)
            .cmp(b.iter().map(u8::to_ascii_lowercase))
    };
    let mut small = [0usize; 16];
    let mut large: Vec<usize> = Vec::new();
    let order: &mut [usize] = if headers.len() <= small.len() {
        for (i, slot) in small.iter_mut().enumerate().take(headers.len()) {
            *slot = i;
        }
        &mut small[..headers.len()]
    } else {
        large.extend(0..headers.len());
        &mut large
    };
    let mut upper_small = [false; 16];
    let mut upper_large: Vec<bool> = Vec::new();
    let upper: &mut [bool] = if headers.len() <= upper_small.len() {
        &mut upper_small[..headers.len()]
    } else {
        upper_large.resize(headers.len(), false);
        &mut upper_large
    };
    for (u, (name, _)) in upper.iter_mut().zip(headers) {
        *u = name.iter().any(u8::is_ascii_uppercase);
    }
    // A stable sort keeps the values of a repeated name in their order.
    order.sort_by(|&a, &b| {
        if upper[a] || upper[b] {
            lower_cmp(headers[a].0, headers[b].0)
        } else {
            headers[a].0.cmp(headers[b].0)
        }
    });
    let write_name = |name: &[u8], out: &mut Vec<u8>| {
        if name.iter().any(u8::is_ascii_uppercase) {
            out.extend(name.iter().map(u8::to_ascii_lowercase));
        } else {
            out.extend_from_slice(name);
        }
    };
    let mut i = 0;
    while i < order.len() {
        let name = headers[order[i]].0;
        write_name(name, out);
        out.push(b':');
        let mut first = true;
        while i < order.len() && headers[order[i]].0.eq_ignore_ascii_case(name) {
            if !first {
                out.push(b',');
            }
            write_trimmed_value(headers[order[i]].1, out);
            first = false;
            i += 1;
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    let start = out.len();
    let mut i = 0;
    while i < order.len() {
        let name = headers[order[i]].0;
        if i > 0 {
            out.push(b';');
        }
        write_name(name, out);
        while i < order.len() && headers[order[i]].0.eq_ignore_ascii_case(name) {
            i += 1;
        }
    }
    start..out.len()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_lower_matches_the_hex_crate() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in [0, 1, 3, 4, 5, 7, 8, 31, 32, 33, 255, 512] {
            let mut out = vec![0u8; 2 * n];
            super::hex_lower(&data[..n], &mut out);
            assert_eq!(out, hex::encode(&data[..n]).into_bytes(), "{n}");
        }
        // a short output stops the writing short
        let mut out = [b'-'; 5];
        super::hex_lower(&[0xab, 0xcd, 0xef], &mut out);
        assert_eq!(&out, b"abcd-");
        let mut out = [b'-'; 11];
        super::hex_lower(&[1, 2, 3, 4, 5, 6, 7, 8], &mut out);
        assert_eq!(&out, b"0102030405-");
    }

    use super::*;

    #[test]
    fn repeated_names_go_out_in_signed_order() {
        let sorted = |q: &str| {
            let mut query = q.as_bytes().to_vec();
            sort_repeated_names(&mut query, &mut Vec::new(), &mut Vec::new());
            String::from_utf8(query).unwrap()
        };
        assert_eq!(sorted("a=2&a=1"), "a=1&a=2");
        assert_eq!(sorted("z=1&a=2&a=1&m"), "a=1&a=2&m&z=1");
        assert_eq!(sorted("a&a=1&b=&&a="), "a&a=&a=1&b=");
        // no name twice: as it came
        assert_eq!(sorted("z=1&a=2&versionId=x"), "z=1&a=2&versionId=x");
        assert_eq!(sorted("acl&x-id=GetObjectAcl"), "acl&x-id=GetObjectAcl");
        // more parameters than fit inline
        let many: Vec<String> = (0..40).rev().map(|i| format!("k={i:02}")).collect();
        let want: Vec<String> = (0..40).map(|i| format!("k={i:02}")).collect();
        assert_eq!(sorted(&many.join("&")), want.join("&"));
        // and the canonical query of what goes out is what is signed
        for q in ["a=2&a=1", "b=1&a=2&a=1&a", "x=%2F&x=%20"] {
            let out = sorted(q);
            let (mut c1, mut c2) = (Vec::new(), Vec::new());
            write_canonical_query(q.as_bytes(), &mut c1);
            write_canonical_query(out.as_bytes(), &mut c2);
            assert_eq!(c1, c2, "{q}");
        }
    }

    #[test]
    fn strict_queries_in_order_are_their_own_canonical_form() {
        // every query of up to three parameters over a few names and
        // values, with and without `=`: the copy taken for a query
        // already in order is what sorting writes
        let parts: Vec<&[u8]> = vec![
            b"a", b"a=", b"a=x", b"a=y", b"a-=x", b"b=", b"b=x", b"A=x", b"a.b=", b"",
        ];
        let mut queries: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for q in &queries {
                for p in &parts {
                    let mut q2 = q.clone();
                    if !q.is_empty() {
                        q2.push(b'&');
                    }
                    q2.extend_from_slice(p);
                    next.push(q2);
                }
            }
            queries.extend(next);
        }
        let (mut copied, mut in_order_seen, mut pairs) = (0, 0, Vec::new());
        for q in &queries {
            let mut strict = Vec::new();
            write_strict_query(q, &mut strict);
            let mut fast = b"x".to_vec();
            write_canonical_strict_query(&strict, &mut pairs, &mut fast);
            let mut slow = b"x".to_vec();
            write_canonical_query(q, &mut slow);
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(q));
            copied += usize::from(is_canonical_order(&strict));
            // the order found while the query is made strict (kept
            // parameters only) says the same
            for keep_b in [false, true] {
                let keep = |n: &[u8]| keep_b || !n.starts_with(b"b");
                let mut kept = Vec::new();
                let in_order = write_strict_query_in_order(q, &keep, &mut kept);
                let mut canonical = Vec::new();
                write_canonical_query(&kept, &mut canonical);
                if in_order {
                    assert_eq!(kept, canonical, "{}", String::from_utf8_lossy(q));
                    in_order_seen += 1;
                }
            }
        }
        assert!(
            copied > 100 && in_order_seen > 100,
            "{copied} {in_order_seen}"
        );
    }

    #[test]
    fn authorization_into_equals_sign() {
        let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
        let key = derive_signing_key(b"secret", &scope);
        let creds = Credentials {
            access_key: "AK",
            scope: &scope,
            key: &key,
        };
        let headers: [(&[u8], &[u8]); 2] =
            [(b"Host", b"b.s3.amazonaws.com"), (b"x-amz-date", b"d")];
        let req = Request {
            method: b"GET",
            path: b"/a b",
            query: b"z=1&a=2",
            headers: &headers,
            payload_hash: EMPTY_PAYLOAD_SHA256.as_bytes(),
            rules: PathRules::S3,
        };
        let mut scratch = b"left over".to_vec();
        for _ in 0..2 {
            let auth = authorization_into(&req, &creds, "20130524T000000Z", &mut scratch);
            assert_eq!(auth, sign(&req, &creds, "20130524T000000Z").authorization());
        }
    }

    #[test]
    fn sha256_and_cached_hmac() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 1000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(
                sha256(&data),
                <[u8; 32]>::from(Sha256::digest(&data)),
                "{len}"
            );
            let key = SigningKey::from_bytes([len as u8; 32]);
            assert_eq!(
                hmac_with_signing_key(&key, &data),
                hash::hmac(key.as_bytes(), &data),
                "{len}"
            );
            // the same key again, with the same first block and another
            let mut changed = data.clone();
            if let Some(b) = changed.get_mut(len.min(64).saturating_sub(1)) {
                *b ^= 0x20;
            }
            for d in [&data, &data, &changed, &changed, &data] {
                assert_eq!(
                    hmac_with_signing_key(&key, d),
                    hash::hmac(key.as_bytes(), d),
                    "{len}"
                );
            }
            // the cached pads of another key must not be reused
            let other = SigningKey::from_bytes([!(len as u8); 32]);
            assert_eq!(
                hmac_with_signing_key(&other, &data),
                hash::hmac(other.as_bytes(), &data),
                "{len}"
            );
        }
    }

    #[test]
    fn payload_hasher_in_pieces() {
        let mut h = PayloadHasher::default();
        assert!(h.is_empty());
        h.update(b"Param1=");
        h.update(b"value1");
        assert_eq!(h.len(), 13);
        assert_eq!(&h.finish_hex()[..], sha256_hex(b"Param1=value1").as_bytes());
        assert_eq!(
            &PayloadHasher::default().finish_hex()[..],
            EMPTY_PAYLOAD_SHA256.as_bytes()
        );
    }

    #[test]
    fn encode_to_slice_matches_encode_into() {
        let input = "/a b/+ü~(x)%2F".as_bytes();
        for keep in [true, false] {
            let mut v = Vec::new();
            encode_into(input, keep, &mut v);
            let mut buf = vec![0u8; encoded_len(input, keep)];
            assert_eq!(encode_to_slice(input, keep, &mut buf), Some(v.len()));
            assert_eq!(buf, v);
            assert_eq!(encode_to_slice(input, keep, &mut buf[1..]), None);
        }
    }

    #[test]
    fn scope_parts() {
        let s = Scope::parse("20150830/us-east-1/service/aws4_request").unwrap();
        assert_eq!(s.date(), "20150830");
        assert_eq!(s.region(), "us-east-1");
        assert_eq!(s.service(), "service");
    }

    #[test]
    fn scope_errors() {
        assert_eq!(
            Scope::parse("20150830/us-east-1/s3"),
            Err(ScopeError::Parts)
        );
        assert_eq!(
            Scope::parse("20151330/us-east-1/s3/aws4_request"),
            Err(ScopeError::Date)
        );
        assert_eq!(
            Scope::parse("2015083/us-east-1/s3/aws4_request"),
            Err(ScopeError::Date)
        );
        assert_eq!(
            Scope::parse("20150830//s3/aws4_request"),
            Err(ScopeError::Region)
        );
        assert_eq!(
            Scope::parse("20150830/US/s3/aws4_request"),
            Err(ScopeError::Region)
        );
        assert_eq!(
            Scope::parse("20150830/us-east-1//aws4_request"),
            Err(ScopeError::Service)
        );
        assert_eq!(
            Scope::parse("20150830/us-east-1/s3/aws4"),
            Err(ScopeError::Terminator)
        );
    }

    #[test]
    fn decode_keeps_invalid_escapes() {
        let mut out = Vec::new();
        decode_into(b"100%", &mut out);
        assert_eq!(out, b"100%");
        out.clear();
        decode_into(b"%zz%4", &mut out);
        assert_eq!(out, b"%zz%4");
        out.clear();
        decode_into(b"a%2Bb+c%2f", &mut out);
        assert_eq!(out, b"a+b+c/");
    }

    #[test]
    fn s3_uri_single_encoding() {
        let mut out = Vec::new();
        write_canonical_uri(b"/a b/%2B+(x)/%E2%82%AC/./..//", PathRules::S3, &mut out);
        assert_eq!(out, b"/a%20b/%2B%2B%28x%29/%E2%82%AC/./..//");
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_path(b"//example//"), b"/example/");
        assert_eq!(normalize_path(b"/example1/example2/../.."), b"/");
        assert_eq!(normalize_path(b"/./"), b"/");
        assert_eq!(normalize_path(b"/a/./b/../c"), b"/a/c");
    }

    #[test]
    fn query_sorting_and_bare_keys() {
        let mut out = Vec::new();
        write_canonical_query(b"b=2&a&c=x y&a=1&&d=%2B+", &mut out);
        assert_eq!(out, b"a=&a=1&b=2&c=x%20y&d=%2B%20");
    }

    #[test]
    fn above_space_by_words() {
        for len in 0..40usize {
            for at in 0..len {
                for bad in [0u8, b'\t', b'\n', b'\r', b' ', 0x1f, 0x20] {
                    let mut v: Vec<u8> = (0..len).map(|i| b'!' + (i * 37 % 200) as u8).collect();
                    assert!(all_above_space(&v), "{v:?}");
                    v[at] = bad;
                    assert!(!all_above_space(&v), "{v:?}");
                }
            }
        }
        assert!(all_above_space(&[
            0x80, 0xff, 0x21, 0xa0, 0x81, 0x80, 0xff, 0xfe, 0x21
        ]));
    }

    #[test]
    fn header_trimming() {
        let mut out = Vec::new();
        write_trimmed_value(b"  a   b\r\n   c\t ", &mut out);
        assert_eq!(out, b"a b c");
    }

    #[test]
    fn amz_date_format() {
        assert_eq!(amz_date(1440938160).unwrap(), "20150830T123600Z");
        // by hand, as chrono formats it, over four centuries and around
        // every leap rule
        let mut t = -62_167_219_200i64; // 0000-01-01T00:00:00Z
        while t < 253_402_300_800 {
            let want = chrono::DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y%m%dT%H%M%SZ")
                .to_string();
            assert_eq!(amz_date(t).as_deref(), Some(want.as_str()), "{t}");
            t += 86_399 * 7 + 3_607;
        }
        for t in [0, 951_782_400, 951_868_799, 4_107_542_400, 253_402_300_799] {
            let want = chrono::DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y%m%dT%H%M%SZ")
                .to_string();
            assert_eq!(amz_date(t).unwrap(), want);
        }
        assert_eq!(amz_date(253_402_300_800), None);
        assert_eq!(amz_date(-62_167_219_201), None);
    }
}
