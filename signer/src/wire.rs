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
use crate::{requote_path, write_strict_query, Credentials, PathRules, Signed};

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
    /// The body is an `aws-chunked` upload going on as it is (see
    /// [`streaming`]): its `x-amz-decoded-content-length` and `x-amz-trailer`
    /// are kept and signed too.
    pub streaming: bool,
}

/// The `x-amz-content-sha256` of an `aws-chunked` upload whose chunks and
/// trailer carry no signature of their own.
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/// What a head says of S3's `aws-chunked` upload framing (the body in
/// chunks with their own size lines and a trailer, as current AWS SDKs
/// send uploads over HTTPS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streaming {
    /// No `aws-chunked` content coding: the body is the object's bytes.
    No,
    /// `aws-chunked` with unsigned chunks and trailer
    /// ([`STREAMING_UNSIGNED_TRAILER`]), one decoded length and at most one
    /// trailer name: the framing can go on as it is, signed as such.
    UnsignedTrailer,
    /// `aws-chunked` any other way: chunk signatures chained to the
    /// client's own signature, or headers missing or repeated. It cannot be
    /// signed again, and signed as a plain body it would be stored framing
    /// and all.
    Other,
}

/// Whether the head's body is an `aws-chunked` upload, and which kind.
///
/// Servers tell the framing by `x-amz-content-sha256` (a `STREAMING-*`
/// value) and `x-amz-decoded-content-length`, with or without
/// `Content-Encoding: aws-chunked`: minio-go sends chunk-signed uploads
/// over plain HTTP without it. Any of the three makes the body
/// `aws-chunked`; only one that also names the encoding can go on as it
/// is.
pub fn streaming(head: &Head<'_>) -> Streaming {
    const STREAMING: &[u8] = b"streaming-";
    let encoded = head.headers().any(|(name, value, _)| {
        name.eq_ignore_ascii_case(b"content-encoding")
            && value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"aws-chunked"))
    });
    let framed = head.headers().any(|(name, value, _)| {
        (name.eq_ignore_ascii_case(b"x-amz-content-sha256")
            && value
                .get(..STREAMING.len())
                .is_some_and(|v| v.eq_ignore_ascii_case(STREAMING)))
            || name.eq_ignore_ascii_case(b"x-amz-decoded-content-length")
    });
    if !encoded && !framed {
        return Streaming::No;
    }
    if !encoded {
        return Streaming::Other;
    }
    let values = |name: &[u8]| {
        let mut v = head
            .headers()
            .filter(move |(n, _, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v, _)| v);
        (v.next(), v.next().is_some())
    };
    let unsigned =
        values(b"x-amz-content-sha256") == (Some(STREAMING_UNSIGNED_TRAILER.as_bytes()), false);
    let length = match values(b"x-amz-decoded-content-length") {
        (Some(v), false) => parse_length(v).is_some(),
        _ => false,
    };
    // a trailer names checksums only: any other header there would reach
    // the server unsigned
    let trailer = match values(b"x-amz-trailer") {
        (_, true) => false,
        (None, false) => true,
        (Some(names), false) => names.split(|&b| b == b',').all(|n| {
            let n = n.trim_ascii();
            n.len() > 15 && n[..15].eq_ignore_ascii_case(b"x-amz-checksum-")
        }),
    };
    if unsigned && length && trailer {
        Streaming::UnsignedTrailer
    } else {
        Streaming::Other
    }
}

/// Kept and signed with an `aws-chunked` upload that goes on as it is.
fn is_streaming_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"x-amz-decoded-content-length")
        || name.eq_ignore_ascii_case(b"x-amz-trailer")
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

/// Where one header line is in the head: the name is `start..colon`, the
/// value (trimmed) `vstart..vend`, the whole line with its CRLF `start..end`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Line {
    start: u32,
    colon: u32,
    vstart: u32,
    vend: u32,
    end: u32,
    kind: Kind,
}

/// What a header line is to the signer, found once when the head is parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    /// Not the signer's: kept as it is, not signed.
    #[default]
    Other,
    /// An `x-amz-*` header a client may forward: kept and signed when
    /// listed, else dropped.
    Amz,
    /// `Authorization` or a header the signer sets itself: always dropped.
    Signers,
}

/// `name` (token characters only) equals `lower` (lowercase letters,
/// digits and `-`) but for case, eight bytes a round: for a token
/// character `b`, `b | 0x20` is such a byte `l` only when `b` is `l` or
/// its uppercase (0x0D and 0x10, which would also fold onto `-` and `0`,
/// are no token characters).
fn token_is(name: &[u8], lower: &[u8]) -> bool {
    if name.len() != lower.len() {
        return false;
    }
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    name.chunks(8)
        .zip(lower.chunks(8))
        .all(|(n, l)| word(n) | (0x2020_2020_2020_2020 & word_mask(n.len())) == word(l))
}

/// Ones in the low `n` bytes of a word.
fn word_mask(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// The kind of a header name (token characters only).
fn kind_of(name: &[u8]) -> Kind {
    if name.len() >= 6 && token_is(&name[..6], b"x-amz-") {
        let own = match name.len() {
            10 => token_is(name, b"x-amz-date"),
            20 => {
                token_is(name, b"x-amz-content-sha256") || token_is(name, b"x-amz-security-token")
            }
            _ => false,
        };
        if own {
            Kind::Signers
        } else {
            Kind::Amz
        }
    } else if token_is(name, b"authorization") {
        Kind::Signers
    } else {
        Kind::Other
    }
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
    /// How the body is framed.
    pub body: Body,
    /// Length of the head including the blank line.
    pub len: usize,
    pub(crate) raw: &'a [u8],
    pub(crate) lines: Vec<Line>,
    host: usize,
}

impl<'a> Head<'a> {
    /// Every header as (name, value, whole line including CRLF), in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8], &'a [u8])> + '_ {
        let raw = self.raw;
        self.lines.iter().map(move |l| {
            (
                &raw[l.start as usize..l.colon as usize],
                &raw[l.vstart as usize..l.vend as usize],
                &raw[l.start as usize..l.end as usize],
            )
        })
    }

    /// Every header line with its kind.
    fn entries(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8], &'a [u8], Kind)> + '_ {
        let raw = self.raw;
        self.lines.iter().map(move |l| {
            (
                &raw[l.start as usize..l.colon as usize],
                &raw[l.vstart as usize..l.vend as usize],
                &raw[l.start as usize..l.end as usize],
                l.kind,
            )
        })
    }

    /// The value of the one `Host` header.
    pub fn host(&self) -> &'a [u8] {
        self.lines
            .get(self.host)
            .map_or(b"", |l| &self.raw[l.vstart as usize..l.vend as usize])
    }

    /// Gives the buffer of header lines back (to a workspace).
    pub(crate) fn lines_back(self) -> Vec<Line> {
        self.lines
    }

    /// The bytes after the head in the buffer it was parsed from (the
    /// start of its body).
    pub fn after(&self) -> &'a [u8] {
        self.raw.get(self.len..).unwrap_or(b"")
    }

    /// How many header lines there are.
    pub fn header_count(&self) -> usize {
        self.lines.len()
    }
}

/// Buffers reused from one signing to the next (one per worker), so that
/// signing a head allocates nothing once they have grown to the usual
/// sizes. Secret material left in them is wiped by [`Workspace::wipe`].
#[derive(Default)]
pub struct Workspace {
    pub(crate) lines: Vec<Line>,
    pub(crate) path: Vec<u8>,
    pub(crate) query: Vec<u8>,
    pub(crate) canonical: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) pairs: Vec<(u32, u32, u32)>,
}

impl Workspace {
    /// Takes back the buffers of a checked head.
    pub fn recycle(&mut self, checked: crate::policy::Checked<'_>) {
        let crate::policy::Checked {
            head, path, query, ..
        } = checked;
        self.lines = head.lines;
        self.path = path;
        self.query = query;
    }

    /// Wipes what the last signing left in the buffers (the canonical
    /// request holds the session token, when there is one).
    pub fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(self.canonical.as_mut_slice());
        self.canonical.clear();
        zeroize::Zeroize::zeroize(self.scratch.as_mut_slice());
        self.scratch.clear();
    }
}

/// RFC 9110 token characters (method and header names).
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// The CR of the CRLF that ends the line starting at `pos`, with no other
/// CR, LF or NUL before it.
fn line_end(bytes: &[u8], pos: usize) -> Result<usize, HeadError> {
    let rest = bytes.get(pos..).unwrap_or(b"");
    match memchr::memchr3(b'\r', b'\n', 0, rest) {
        Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => Ok(pos + i),
        // A stray byte inside the head, unless no blank line ends the head
        // at all (then nothing in it is a head yet).
        Some(i) if memchr::memmem::find(&rest[i..], b"\r\n\r\n").is_some() => {
            Err(HeadError::LineBreak)
        }
        _ => Err(HeadError::Unterminated),
    }
}

/// Parses the head at the start of `bytes` and checks that it holds only
/// lines a proxy builds: every line ends with CRLF and holds no other CR,
/// LF or NUL; the request line is `METHOD SP /target SP HTTP/1.x`; header
/// names are tokens, nothing is folded, no header line ends with a
/// protocol version; one `Host`; at most one framing header with a value
/// the proxy writes; and nothing follows the head but its own body (when
/// `Content-Length` says how long it is).
pub fn parse_head(bytes: &[u8]) -> Result<Head<'_>, HeadError> {
    let mut lines = Vec::with_capacity(16);
    parse_head_into(bytes, &mut lines).map(|p| p.into_head(bytes, lines))
}

/// What [`parse_head_into`] finds besides the header lines.
pub(crate) struct Parts<'a> {
    method: &'a [u8],
    path: &'a [u8],
    query: &'a [u8],
    version: &'a [u8],
    body: Body,
    len: usize,
    host: usize,
}

impl<'a> Parts<'a> {
    pub(crate) fn into_head(self, raw: &'a [u8], lines: Vec<Line>) -> Head<'a> {
        Head {
            method: self.method,
            path: self.path,
            query: self.query,
            version: self.version,
            body: self.body,
            len: self.len,
            raw,
            lines,
            host: self.host,
        }
    }
}

/// [`parse_head`] with the header lines written to `lines` (cleared
/// first). One pass over the head: every line's end is found once, and a
/// stray CR, LF or NUL anywhere in the head is reported before any other
/// fault (as is a head without its blank line).
pub(crate) fn parse_head_into<'a>(
    bytes: &'a [u8],
    lines: &mut Vec<Line>,
) -> Result<Parts<'a>, HeadError> {
    lines.clear();
    if bytes.len() > u32::MAX as usize {
        return Err(HeadError::Unterminated);
    }
    // The first fault other than a line break: reported once every line is
    // known to be whole.
    let mut fault: Option<HeadError> = None;
    let eol = line_end(bytes, 0)?;
    let line = &bytes[..eol];
    let sp1 = memchr::memchr(b' ', line);
    let sp2 = memchr::memrchr(b' ', line);
    let (mut method, mut path, mut query, mut version): (&[u8], &[u8], &[u8], &[u8]) =
        (b"", b"", b"", b"");
    match (sp1, sp2) {
        (Some(sp1), Some(sp2))
            if sp1 != sp2 && sp1 != 0 && line[..sp1].iter().all(|&b| is_tchar(b)) =>
        {
            let target = &line[sp1 + 1..sp2];
            if !matches!(&line[sp2 + 1..], b"HTTP/1.0" | b"HTTP/1.1") {
                fault = Some(HeadError::Version);
            } else if target.first() != Some(&b'/') {
                fault = Some(HeadError::Target);
            }
            (path, query) = match memchr::memchr(b'?', target) {
                Some(i) => (&target[..i], &target[i + 1..]),
                None => (target, &b""[..]),
            };
            method = &line[..sp1];
            version = &line[sp2..];
        }
        _ => fault = Some(HeadError::RequestLine),
    }
    let mut pos = eol + 2;
    let (mut hosts, mut lengths, mut chunked, mut connections) = (0, 0, 0, 0);
    let mut host = 0;
    let mut body = Body::None;
    let len = loop {
        if bytes.get(pos..pos + 2) == Some(b"\r\n") {
            break pos + 2;
        }
        let end = line_end(bytes, pos)?;
        let at = pos;
        pos = end + 2;
        if fault.is_some() {
            continue;
        }
        let hl = &bytes[at..end];
        if matches!(hl.first(), Some(b' ' | b'\t')) {
            fault = Some(HeadError::Folded);
            continue;
        }
        let k = hl.iter().position(|&b| !is_tchar(b)).unwrap_or(hl.len());
        if k == 0 || hl.get(k) != Some(&b':') {
            fault = Some(match memchr::memchr(b':', hl) {
                Some(c) if c > 0 => HeadError::HeaderName,
                _ => HeadError::HeaderLine,
            });
            continue;
        }
        if matches!(hl.last(), Some(b'0' | b'1'))
            && hl.len() >= 9
            && &hl[hl.len() - 9..hl.len() - 1] == b" HTTP/1."
        {
            fault = Some(HeadError::VersionInHeader);
            continue;
        }
        let name = &hl[..k];
        let raw_value = &hl[k + 1..];
        let lead = raw_value
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let mut value = &raw_value[lead..];
        while let [rest @ .., b' ' | b'\t'] = value {
            value = rest;
        }
        let vstart = at + k + 1 + lead;
        let line = Line {
            start: at as u32,
            colon: (at + k) as u32,
            vstart: vstart as u32,
            vend: (vstart + value.len()) as u32,
            end: pos as u32,
            kind: kind_of(name),
        };
        match name.len() {
            4 if token_is(name, b"host") => {
                hosts += 1;
                host = lines.len();
            }
            14 if token_is(name, b"content-length") => {
                lengths += 1;
                match parse_length(value) {
                    Some(n) => body = Body::Length(n),
                    None => {
                        fault = Some(HeadError::Framing);
                        continue;
                    }
                }
            }
            17 if token_is(name, b"transfer-encoding") => {
                chunked += 1;
                if !value.eq_ignore_ascii_case(b"chunked") {
                    fault = Some(HeadError::Framing);
                    continue;
                }
                body = Body::Chunked;
            }
            10 if token_is(name, b"connection") => connections += 1,
            _ => {}
        }
        lines.push(line);
    };
    if let Some(e) = fault {
        return Err(e);
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
    Ok(Parts {
        method,
        path,
        query,
        version,
        body,
        len,
        host,
    })
}

/// A `Content-Length` value: 1 to 19 digits.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
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

/// A signed head in one owned buffer (tests, fuzzing, tools): see
/// [`sign_head`]. The module writes heads into memory of its own with
/// [`sign_head_in`].
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

/// Signs a head the policy accepted (see [`crate::policy::check`]) into a
/// new buffer: [`sign_head_in`] with buffers of its own.
pub fn sign_head(checked: &Checked<'_>, how: &HeadSigning<'_>) -> SignedHead {
    let mut ws = Workspace::default();
    let sig = sign_head_in(checked, how, &mut ws);
    let mut head = vec![0u8; sig.len()];
    let auth = sig.write(checked, how, &ws, &mut head).unwrap_or(0..0);
    let authorization = String::from_utf8_lossy(&head[auth]).into_owned();
    let signed = Signed::from_parts(
        std::mem::take(&mut ws.canonical),
        sig.canonical_end,
        sig.signed.clone(),
        sig.signature,
        authorization,
    );
    ws.wipe();
    SignedHead {
        head,
        signed,
        dropped: sig.dropped,
    }
}

/// How many forwarded `x-amz-*` headers fit the signed header list
/// without a heap allocation.
const INLINE_FORWARDED: usize = 8;

/// The signature of a head, made by [`sign_head_in`]: the new head is
/// [`HeadSignature::len`] bytes long and [`HeadSignature::write`] writes
/// it. The canonical request and the string to sign stay in the
/// workspace.
#[derive(Clone, Debug)]
pub struct HeadSignature {
    /// How many client or stale `Authorization`/`x-amz-*` lines are dropped.
    pub dropped: usize,
    canonical_end: usize,
    signed: std::ops::Range<usize>,
    signature: [u8; 32],
    hex: [u8; 64],
    len: usize,
}

/// The signed header lists of the signer's own headers, by whether
/// `x-amz-content-sha256` and `x-amz-security-token` are in.
const OWN_LISTS: [&str; 4] = [
    "host;x-amz-date",
    "host;x-amz-date;x-amz-security-token",
    "host;x-amz-content-sha256;x-amz-date",
    "host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
];

/// Signs a head the policy accepted (see [`crate::policy::check_in`]):
/// the request line gets the checked target, the client's and stale
/// `Authorization`/`x-amz-*` lines are dropped (but the forwarded ones),
/// and the signer's own headers are appended. The canonical request goes
/// to the workspace (where [`Workspace::wipe`] clears it); nothing is
/// allocated once the workspace has grown.
pub fn sign_head_in(
    checked: &Checked<'_>,
    how: &HeadSigning<'_>,
    ws: &mut Workspace,
) -> HeadSignature {
    let head = &checked.head;
    let sha_header = how.content_sha256_header.then_some(how.payload_hash);
    // the forwarded x-amz-* headers, signed with the signer's own
    let mut forwarded: [(&[u8], &[u8]); INLINE_FORWARDED] = [(b"", b""); INLINE_FORWARDED];
    let mut n = 0;
    let mut more: Vec<(&[u8], &[u8])> = Vec::new();
    let mut dropped = 0;
    let mut kept_len = 0;
    for (name, value, line, kind) in head.entries() {
        if kind == Kind::Other {
            kept_len += line.len();
        } else if kind == Kind::Signers || !kept_amz(name, how, head.method) {
            dropped += 1;
        } else {
            kept_len += line.len();
            if n < INLINE_FORWARDED {
                forwarded[n] = (name, value);
                n += 1;
            } else {
                more.push((name, value));
            }
        }
    }

    let Workspace {
        canonical: buf,
        scratch,
        pairs,
        ..
    } = ws;
    buf.clear();
    buf.extend_from_slice(head.method);
    buf.push(b'\n');
    match (how.rules, checked.rules) {
        // the checked path is the strict form, its own canonical URI
        (PathRules::S3, PathRules::S3) if !checked.path.is_empty() => {
            buf.extend_from_slice(&checked.path)
        }
        (PathRules::Generic { normalize: true }, _) if !checked.path.is_empty() => {
            scratch.clear();
            crate::normalize_into(&checked.path, scratch);
            crate::encode_into(scratch, true, buf);
        }
        (rules, _) => crate::write_canonical_uri(&checked.path, rules, buf),
    }
    buf.push(b'\n');
    if checked.query_in_order {
        buf.extend_from_slice(&checked.query);
    } else {
        crate::write_canonical_strict_query(&checked.query, pairs, buf);
    }
    buf.push(b'\n');
    let signed = if n == 0 {
        // the usual case: the signer's own headers only, in order, and
        // their values need no trimming but the Host's and the token's
        buf.extend_from_slice(b"host:");
        crate::write_trimmed_value(head.host(), buf);
        if let Some(sha) = sha_header {
            buf.extend_from_slice(b"\nx-amz-content-sha256:");
            buf.extend_from_slice(sha.as_bytes());
        }
        buf.extend_from_slice(b"\nx-amz-date:");
        buf.extend_from_slice(how.amz_date.as_bytes());
        if let Some(token) = how.session_token {
            buf.extend_from_slice(b"\nx-amz-security-token:");
            crate::write_trimmed_value(token.as_bytes(), buf);
        }
        buf.extend_from_slice(b"\n\n");
        let list = OWN_LISTS
            [usize::from(sha_header.is_some()) * 2 + usize::from(how.session_token.is_some())];
        let start = buf.len();
        buf.extend_from_slice(list.as_bytes());
        start..buf.len()
    } else {
        let mut all: Vec<(&[u8], &[u8])> = Vec::new();
        let mut list: [(&[u8], &[u8]); INLINE_FORWARDED + 4] = [(b"", b""); INLINE_FORWARDED + 4];
        list[0] = (b"host", head.host());
        let mut k = 1;
        if let Some(sha) = sha_header {
            list[k] = (b"x-amz-content-sha256", sha.as_bytes());
            k += 1;
        }
        list[k] = (b"x-amz-date", how.amz_date.as_bytes());
        k += 1;
        if let Some(token) = how.session_token {
            list[k] = (b"x-amz-security-token", token.as_bytes());
            k += 1;
        }
        list[k..k + n].copy_from_slice(&forwarded[..n]);
        k += n;
        let to_sign: &[(&[u8], &[u8])] = if more.is_empty() {
            &list[..k]
        } else {
            all.extend_from_slice(&list[..k]);
            all.extend_from_slice(&more);
            &all
        };
        crate::write_headers(to_sign, buf)
    };
    buf.push(b'\n');
    buf.extend_from_slice(how.payload_hash.as_bytes());
    let canonical_end = buf.len();
    let hash = crate::sha256(buf);
    crate::write_string_to_sign(how.amz_date, how.creds.scope, &hash, buf);
    let signature = crate::hmac_with_signing_key(how.creds.key, &buf[canonical_end..]);
    let mut hex = [0u8; 64];
    crate::hex_lower(&signature, &mut hex);
    // the length of what `emit` writes, line by line
    let mut len = head.method.len() + 1 + checked.path.len() + head.version.len() + 2;
    if !checked.query.is_empty() {
        len += 1 + checked.query.len();
    }
    len += kept_len;
    if let Some(sha) = sha_header {
        len += "x-amz-content-sha256: \r\n".len() + sha.len();
    }
    len += "x-amz-date: \r\n".len() + how.amz_date.len();
    if let Some(token) = how.session_token {
        len += "x-amz-security-token: \r\n".len() + token.len();
    }
    len += "Authorization:  Credential=/, SignedHeaders=, Signature=\r\n\r\n".len()
        + crate::ALGORITHM.len()
        + how.creds.access_key.len()
        + how.creds.scope.as_str().len()
        + signed.len()
        + hex.len();
    HeadSignature {
        dropped,
        canonical_end,
        signed,
        signature,
        hex,
        len,
    }
}

/// Where the bytes of a head go.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn pos(&self) -> usize;
}

struct Fill<'b> {
    buf: &'b mut [u8],
    at: usize,
    short: bool,
}

impl Sink for Fill<'_> {
    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.at..self.at + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.at += bytes.len();
            }
            None => self.short = true,
        }
    }
    fn pos(&self) -> usize {
        self.at
    }
}

impl HeadSignature {
    /// The length of the signed head.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: a head has at least its request line.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the signed head into the first [`HeadSignature::len`] bytes
    /// of `out`; returns where the `Authorization` value is in it, or
    /// `None` when `out` is too short. `checked`, `how` and `ws` must be
    /// those the signature was made with.
    pub fn write(
        &self,
        checked: &Checked<'_>,
        how: &HeadSigning<'_>,
        ws: &Workspace,
        out: &mut [u8],
    ) -> Option<std::ops::Range<usize>> {
        let mut fill = Fill {
            buf: out,
            at: 0,
            short: false,
        };
        let auth = self.emit(checked, how, &ws.canonical, &mut fill);
        (!fill.short && fill.at == self.len).then_some(auth)
    }

    /// The canonical request that was hashed.
    pub fn canonical_request<'w>(&self, ws: &'w Workspace) -> &'w [u8] {
        ws.canonical.get(..self.canonical_end).unwrap_or(b"")
    }

    /// The string to sign.
    pub fn string_to_sign<'w>(&self, ws: &'w Workspace) -> &'w str {
        std::str::from_utf8(ws.canonical.get(self.canonical_end..).unwrap_or(b"")).unwrap_or("")
    }

    /// The lowercase hex signature.
    pub fn signature_hex(&self) -> &str {
        std::str::from_utf8(&self.hex).unwrap_or("")
    }

    /// The new head, into `sink`; returns where the `Authorization` value is.
    fn emit(
        &self,
        checked: &Checked<'_>,
        how: &HeadSigning<'_>,
        canonical: &[u8],
        out: &mut impl Sink,
    ) -> std::ops::Range<usize> {
        let head = &checked.head;
        let raw = head.raw;
        // the request line as it came, when its target is already what is
        // sent (the usual case): one copy
        let first = head.lines.first().map_or(0, |l| l.start as usize);
        let mut line_len = head.method.len() + 1 + checked.path.len() + head.version.len() + 2;
        if !checked.query.is_empty() {
            line_len += 1 + checked.query.len();
        }
        if first == line_len && checked.path == head.path && checked.query == head.query {
            out.put(&raw[..first]);
        } else {
            out.put(head.method);
            out.put(b" ");
            out.put(&checked.path);
            if !checked.query.is_empty() {
                out.put(b"?");
                out.put(&checked.query);
            }
            out.put(head.version);
            out.put(b"\r\n");
        }
        // the header lines kept, each run of adjacent ones in one copy
        let mut run = 0..0;
        for l in &head.lines {
            let keep = match l.kind {
                Kind::Other => true,
                Kind::Amz => kept_amz(&raw[l.start as usize..l.colon as usize], how, head.method),
                Kind::Signers => false,
            };
            if !keep {
                continue;
            }
            if run.end != l.start as usize {
                out.put(&raw[run]);
                run = l.start as usize..l.start as usize;
            }
            run.end = l.end as usize;
        }
        out.put(&raw[run]);
        if how.content_sha256_header {
            out.put(b"x-amz-content-sha256: ");
            out.put(how.payload_hash.as_bytes());
            out.put(b"\r\n");
        }
        out.put(b"x-amz-date: ");
        out.put(how.amz_date.as_bytes());
        out.put(b"\r\n");
        if let Some(token) = how.session_token {
            out.put(b"x-amz-security-token: ");
            out.put(token.as_bytes());
            out.put(b"\r\n");
        }
        out.put(b"Authorization: ");
        let start = out.pos();
        out.put(crate::ALGORITHM.as_bytes());
        out.put(b" Credential=");
        out.put(how.creds.access_key.as_bytes());
        out.put(b"/");
        out.put(how.creds.scope.as_str().as_bytes());
        out.put(b", SignedHeaders=");
        out.put(canonical.get(self.signed.clone()).unwrap_or(b""));
        out.put(b", Signature=");
        out.put(&self.hex);
        let end = out.pos();
        out.put(b"\r\n\r\n");
        start..end
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

/// The first client `x-amz-*` header of a head that signing drops (it is
/// neither in `forward` nor a checksum header, see [`is_checksum_header`])
/// and whose loss changes what a write does: any but `x-amz-user-agent`,
/// the streaming ones (see [`streaming`]) and those that ask for S3's
/// default.
pub(crate) fn dropped_on_write<'a>(
    raw: &'a [u8],
    lines: &[Line],
    forward: &[String],
) -> Option<&'a [u8]> {
    lines
        .iter()
        .filter(|l| l.kind == Kind::Amz)
        .map(|l| {
            (
                &raw[l.start as usize..l.colon as usize],
                &raw[l.vstart as usize..l.vend as usize],
            )
        })
        .find(|(name, value)| {
            !is_listed(name, forward)
                && !is_streaming_header(name)
                && !is_checksum_header(name)
                && !name.eq_ignore_ascii_case(b"x-amz-user-agent")
                && !asks_for_the_default(name, value)
        })
        .map(|(name, _)| name)
}

/// `x-amz-acl: private` and `x-amz-storage-class: STANDARD` (what rclone
/// sends when so configured): what S3 does without them, so dropping them
/// changes nothing.
fn asks_for_the_default(name: &[u8], value: &[u8]) -> bool {
    (name.eq_ignore_ascii_case(b"x-amz-acl") && value.eq_ignore_ascii_case(b"private"))
        || (name.eq_ignore_ascii_case(b"x-amz-storage-class") && value == b"STANDARD")
}

/// The `x-amz-checksum-*` headers S3 defines for writes (the five
/// algorithms, `-algorithm`, `-type`) and `x-amz-sdk-checksum-algorithm`:
/// the checksums SDKs send on their own (`x-amz-checksum-crc32`, `-algorithm` and
/// `-type` of a multipart upload). With a write they are always forwarded
/// and signed: S3 then checks the body it gets against the client's
/// checksum, and the parts of a multipart upload agree with the algorithm
/// it was created with. (On a GET or HEAD they follow
/// `aws_forward_amz_headers`, like any other.) (`x-amz-user-agent`, which the AWS SDKs
/// for JavaScript and Rust add in every runtime, is dropped, and no reason
/// to refuse a write: see [`dropped_on_write`].)
pub(crate) fn is_checksum_header(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 8] = [
        b"x-amz-checksum-crc32",
        b"x-amz-checksum-crc32c",
        b"x-amz-checksum-crc64nvme",
        b"x-amz-checksum-sha1",
        b"x-amz-checksum-sha256",
        b"x-amz-checksum-algorithm",
        b"x-amz-checksum-type",
        b"x-amz-sdk-checksum-algorithm",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// An `x-amz-*` header of the head that is kept and signed: listed, a
/// checksum header of a write, or a streaming header of an upload that
/// goes on as it is.
fn kept_amz(name: &[u8], how: &HeadSigning<'_>, method: &[u8]) -> bool {
    is_listed(name, how.forward)
        || (is_checksum_header(name) && !matches!(method, b"GET" | b"HEAD"))
        || (how.streaming && is_streaming_header(name))
}

/// True when a header name is in an `aws_forward_amz_headers` list: named,
/// or under a `prefix*` pattern (`x-amz-meta-*`), in any case.
pub(crate) fn is_listed(name: &[u8], list: &[String]) -> bool {
    list.iter().any(|l| match l.as_bytes().strip_suffix(b"*") {
        Some(prefix) => name
            .get(..prefix.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(prefix)),
        None => name.eq_ignore_ascii_case(l.as_bytes()),
    })
}

/// The value of the first header with this name (case-insensitive).
pub fn header_value<'a>(head: &Head<'a>, name: &[u8]) -> Option<&'a [u8]> {
    head.headers()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{derive_signing_key, Scope, EMPTY_PAYLOAD_SHA256};

    /// Signs `raw` with the S3 API reference example's credentials.
    fn sign_test_head(raw: &[u8], forward: &[String]) -> SignedHead {
        sign_test_body(raw, forward, EMPTY_PAYLOAD_SHA256, false)
    }

    /// [`sign_test_head`] with a payload hash and `streaming` of its own.
    fn sign_test_body(
        raw: &[u8],
        forward: &[String],
        payload_hash: &str,
        streaming: bool,
    ) -> SignedHead {
        let scope = Scope::parse("20130524/us-east-1/s3/aws4_request").unwrap();
        let key = derive_signing_key(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
        let how = HeadSigning {
            creds: Credentials {
                access_key: "AKIAIOSFODNN7EXAMPLE",
                scope: &scope,
                key: &key,
            },
            amz_date: "20130524T000000Z",
            payload_hash,
            content_sha256_header: true,
            session_token: None,
            rules: PathRules::S3,
            forward,
            streaming,
        };
        let policy = crate::policy::Policy {
            forward_amz: forward,
            ..crate::policy::Policy::permissive(PathRules::S3)
        };
        let checked = crate::policy::check(raw, &policy, &Default::default()).unwrap();
        sign_head(&checked, &how)
    }

    #[test]
    fn aws_chunked_uploads() {
        let kind = |lines: &str| {
            let raw = format!("PUT /k HTTP/1.1\r\nHost: h\r\n{lines}Content-Length: 9\r\n\r\n");
            let head = parse_head(raw.as_bytes()).unwrap();
            streaming(&head)
        };
        let good = "x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
                    x-amz-decoded-content-length: 6\r\nx-amz-trailer: x-amz-checksum-crc32\r\n";
        // the framing without the coding (minio-go over plain HTTP sends
        // chunk signatures so): aws-chunked all the same, and it cannot go on
        assert_eq!(kind(good), Streaming::Other);
        assert_eq!(
            kind("x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\n"),
            Streaming::Other
        );
        assert_eq!(
            kind("X-Amz-Content-Sha256: streaming-unsigned-payload-trailer\r\n"),
            Streaming::Other
        );
        assert_eq!(
            kind("x-amz-decoded-content-length: 6\r\n"),
            Streaming::Other
        );
        assert_eq!(
            kind("x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"),
            Streaming::No
        );
        assert_eq!(kind(""), Streaming::No);
        for coding in [
            "aws-chunked",
            "AWS-Chunked",
            "gzip, aws-chunked",
            "aws-chunked ,gzip",
        ] {
            let lines = format!("Content-Encoding: {coding}\r\n{good}");
            assert_eq!(kind(&lines), Streaming::UnsignedTrailer, "{coding}");
        }
        // also with the coding on a line of its own
        let lines = format!("Content-Encoding: gzip\r\nContent-Encoding: aws-chunked\r\n{good}");
        assert_eq!(kind(&lines), Streaming::UnsignedTrailer);
        let two = "Content-Encoding: aws-chunked\r\n\
            x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\nx-amz-decoded-content-length: 6\r\n\
            x-amz-trailer: x-amz-checksum-crc32, X-Amz-Checksum-SHA256\r\n";
        assert_eq!(kind(two), Streaming::UnsignedTrailer);
        let no_trailer = "Content-Encoding: aws-chunked\r\n\
            x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\nx-amz-decoded-content-length: 6\r\n";
        assert_eq!(kind(no_trailer), Streaming::UnsignedTrailer);
        for other in [
            // chunk signatures chained to the client's own signature
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\n\
             x-amz-decoded-content-length: 6\r\n",
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER\r\n\
             x-amz-decoded-content-length: 6\r\nx-amz-trailer: x-amz-checksum-crc32\r\n",
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\
             x-amz-decoded-content-length: 6\r\n",
            // no decoded length, a bad one, two of them
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n",
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
             x-amz-decoded-content-length: 6x\r\n",
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
             x-amz-decoded-content-length: 6\r\nx-amz-decoded-content-length: 7\r\n",
            // two hashes, two trailers
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
             x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\nx-amz-decoded-content-length: 6\r\n",
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
             x-amz-decoded-content-length: 6\r\nx-amz-trailer: a\r\nx-amz-trailer: b\r\n",
            // a trailer that is not a checksum
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
             x-amz-decoded-content-length: 6\r\nx-amz-trailer: x-amz-acl\r\n",
            "Content-Encoding: aws-chunked\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
             x-amz-decoded-content-length: 6\r\nx-amz-trailer: x-amz-checksum-crc32, x-amz-meta-a\r\n",
        ] {
            assert_eq!(kind(other), Streaming::Other, "{other}");
        }
    }

    #[test]
    fn an_aws_chunked_upload_keeps_and_signs_its_own_headers() {
        let raw = b"PUT /k HTTP/1.1\r\nHost: h\r\nContent-Encoding: aws-chunked\r\n\
x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\nx-amz-decoded-content-length: 6\r\n\
x-amz-trailer: x-amz-checksum-crc32\r\nx-amz-checksum-crc32: AAAAAA==\r\nContent-Length: 9\r\n\r\n";
        let s = sign_test_body(raw, &[], STREAMING_UNSIGNED_TRAILER, true);
        let text = String::from_utf8(s.head.clone()).unwrap();
        assert!(
            text.contains("\r\nx-amz-decoded-content-length: 6\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nx-amz-trailer: x-amz-checksum-crc32\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nx-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n"));
        assert!(
            text.contains("\r\nx-amz-checksum-crc32: AAAAAA==\r\n"),
            "{text}"
        );
        assert_eq!(text.matches("\r\nx-amz-content-sha256:").count(), 1);
        assert!(text.contains(
            "SignedHeaders=host;x-amz-checksum-crc32;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-trailer,"
        ));
        let canonical = String::from_utf8_lossy(s.signed.canonical_request()).into_owned();
        assert!(
            canonical.ends_with("\nSTREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            "{canonical}"
        );
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
    fn token_names_by_words() {
        let names: [&[u8]; 6] = [
            b"host",
            b"x-amz-",
            b"x-amz-date",
            b"x-amz-content-sha256",
            b"authorization",
            b"transfer-encoding",
        ];
        for lower in names {
            assert!(token_is(lower, lower));
            assert!(token_is(&lower.to_ascii_uppercase(), lower));
            for i in 0..lower.len() {
                // every other token character in any one place differs
                for b in (0u8..=255).filter(|&b| is_tchar(b)) {
                    let mut n = lower.to_vec();
                    n[i] = b;
                    let same = b.eq_ignore_ascii_case(&lower[i]);
                    assert_eq!(
                        token_is(&n, lower),
                        same,
                        "{:?} {:?}",
                        String::from_utf8_lossy(&n),
                        b
                    );
                }
            }
            assert!(!token_is(&lower[1..], lower));
        }
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
