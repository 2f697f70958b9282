//! The signing decision: what a location lets a request be before it is
//! signed with the location's credentials.
//!
//! [`check`] takes the request head the proxy built (and whatever follows
//! it in the same buffer), the client's own request line, and the
//! location's [`Policy`]. It either refuses, with a [`Refused`] that says
//! why, or returns the head with the target exactly as it will be sent and
//! signed: under S3 rules the strict form of the path, and for every
//! service the strict form of the query with only the parameters the
//! policy forwards.
//!
//! A refusal is the client's or the configuration's doing, never the
//! upstream's: the module answers it itself and sends nothing.

use std::fmt;

use crate::wire::{parse_head_into, Head, HeadError, Workspace};
use crate::{percent_at, requote_path, write_strict_query_in_order, PathRules};

/// A set of HTTP methods, among those the module can sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodSet(u8);

impl MethodSet {
    /// The methods a set can hold, in the order `Allow` lists them.
    pub const NAMES: [&'static str; 7] =
        ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];

    /// GET and HEAD: object reads.
    pub const READ: MethodSet = MethodSet(0b11);

    /// Every method in [`MethodSet::NAMES`].
    pub const ALL: MethodSet = MethodSet(0b111_1111);

    /// Parses method names (any case); an unknown name is an error naming it.
    pub fn parse(names: &[&[u8]]) -> Result<MethodSet, String> {
        let mut bits = 0u8;
        for name in names {
            let i = Self::NAMES
                .iter()
                .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!(
                        "unknown method \"{}\" ({})",
                        String::from_utf8_lossy(name),
                        Self::NAMES.join(", ")
                    )
                })?;
            bits |= 1 << i;
        }
        Ok(MethodSet(bits))
    }

    /// True when `method`, as sent on the wire (uppercase), is in the set.
    pub fn allows(&self, method: &[u8]) -> bool {
        Self::NAMES
            .iter()
            .enumerate()
            .any(|(i, n)| self.0 & (1 << i) != 0 && n.as_bytes() == method)
    }

    /// The value of an `Allow` header for this set: `GET, HEAD`.
    pub fn allow_header(&self) -> String {
        Self::NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a request names its S3 bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// `Host: bucket.endpoint`, path `/key`.
    Virtual,
    /// `Host: endpoint`, path `/bucket/key`.
    Path,
}

/// Which client query parameters reach the service, signed. Whatever the
/// policy, `X-Amz-*` parameters (the query-signing ones) never do.
#[derive(Clone, Copy, Debug)]
pub enum QueryPolicy<'a> {
    /// Every parameter.
    All,
    /// None: the request goes out without a query.
    None,
    /// Only these names, each in its strict encoding (see
    /// [`QueryPolicy::strict_name`]).
    Only(&'a [Vec<u8>]),
}

impl QueryPolicy<'_> {
    /// Whether a parameter, given by its name in the strict encoding, is
    /// forwarded.
    pub fn keeps(&self, strict_name: &[u8]) -> bool {
        if is_amz_param(strict_name) {
            return false;
        }
        match self {
            QueryPolicy::All => true,
            QueryPolicy::None => false,
            QueryPolicy::Only(names) => names.iter().any(|n| n.as_slice() == strict_name),
        }
    }

    /// A parameter name as the configuration gives it, in the strict
    /// encoding the comparison uses.
    pub fn strict_name(name: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(name.len());
        crate::encode_into(name, false, &mut out);
        out
    }
}

/// True for a query parameter name (strict encoding) of the `X-Amz-*`
/// family, which carries query signatures and is never a client's to set.
pub fn is_amz_param(strict_name: &[u8]) -> bool {
    strict_name.len() >= 6 && strict_name[..6].eq_ignore_ascii_case(b"x-amz-")
}

/// The S3 side of a policy: which bucket a request may address and how.
#[derive(Clone, Copy, Debug)]
pub struct S3Policy<'a> {
    /// The buckets a request may address (`aws_s3_bucket`); empty: any.
    pub buckets: &'a [String],
    /// The addressing style required; `None` accepts either.
    pub addressing: Option<Addressing>,
    /// The endpoint, `host` or `host:port`.
    pub endpoint: &'a str,
    /// Other names of the same endpoint, host only, accepted as it (AWS's
    /// regional, global and dual-stack names, when `aws_endpoint` is not
    /// set).
    pub also: &'a [String],
    /// Requests for the bucket itself (an empty key: ListObjects) are
    /// signed, for GET and HEAD only.
    pub listing: bool,
}

/// What a location lets a signed request be.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// The methods signed.
    pub methods: MethodSet,
    /// Canonical URI rules of the key.
    pub rules: PathRules,
    /// The client query parameters forwarded.
    pub query: QueryPolicy<'a>,
    /// Bucket rules, for an S3 key; `None` for other services.
    pub s3: Option<S3Policy<'a>>,
    /// The client `x-amz-*` headers forwarded (`aws_forward_amz_headers`):
    /// a write with another one is refused (see [`Refusal::Dropped`]).
    pub forward_amz: &'a [String],
}

impl Policy<'_> {
    /// Everything allowed: any method, any query, any bucket (tests, fuzzing).
    pub fn permissive(rules: PathRules) -> Policy<'static> {
        Policy {
            methods: MethodSet::ALL,
            rules,
            query: QueryPolicy::All,
            s3: None,
            forward_amz: &[],
        }
    }
}

/// The client's request as nginx received it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client<'a> {
    /// The decoded, normalized URI (`$uri`).
    pub uri: &'a [u8],
    /// The request target as the client sent it (`$request_uri`).
    pub target: &'a [u8],
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The head is malformed, or holds lines nginx did not build.
    Head(HeadError),
    /// The client's request target holds a raw `#`: nginx chose the
    /// location by the part before it, the wire would carry it all.
    Fragment,
    /// A line of the client's decoded URI (after a `%0D%0A`) is in the head.
    Injected,
    /// The method is not signed here.
    Method,
    /// The `Host` does not address a configured bucket in the style allowed.
    Host,
    /// The path does not start with a configured bucket (path style).
    Bucket,
    /// Dot segments would take a normalizing server out of the bucket.
    Climb,
    /// A request for the bucket itself (ListObjects, bucket operations)
    /// where listing is off, or with a method other than GET or HEAD.
    BucketRequest,
    /// A write (any method but GET and HEAD) with a query parameter or an
    /// `x-amz-*` header that is not forwarded: without it the service
    /// would do another operation (`PUT ?tagging` becomes an overwrite,
    /// `x-amz-copy-source` an empty object), so it is refused, not dropped.
    Dropped,
}

impl Refusal {
    /// The status the client gets.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Head(e) if !e.is_injected() => 500,
            Refusal::Head(_) | Refusal::Fragment | Refusal::Injected | Refusal::Dropped => 400,
            Refusal::Method => 405,
            Refusal::Host | Refusal::Bucket | Refusal::Climb | Refusal::BucketRequest => 403,
        }
    }

    /// A short name for the reason, stable for counters and log limits.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Head(e) if !e.is_injected() => "head",
            Refusal::Head(_) | Refusal::Injected | Refusal::Fragment => "injected",
            Refusal::Method | Refusal::Dropped => "method",
            Refusal::Host | Refusal::Bucket | Refusal::Climb => "bucket",
            Refusal::BucketRequest => "listing",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Head(e) => write!(f, "the upstream request head cannot be signed: {e}"),
            Refusal::Fragment => f.write_str("the request target holds a raw '#'"),
            Refusal::Injected => {
                f.write_str("a line break decoded from the URI reached the upstream request head")
            }
            Refusal::Method => f.write_str("the method is not signed here"),
            Refusal::Host => f.write_str("the Host does not address the configured bucket"),
            Refusal::Bucket => f.write_str("the path does not start with the configured bucket"),
            Refusal::Climb => f.write_str("dot segments in the path leave the bucket"),
            Refusal::BucketRequest => {
                f.write_str("a request for the bucket itself (aws_s3_listing)")
            }
            Refusal::Dropped => f.write_str(
                "a write carries a query parameter or x-amz-* header that is not forwarded \
                 (aws_forward_query_params, aws_forward_amz_headers)",
            ),
        }
    }
}

/// A refusal and what was sent, for the one log line: `Host` and target,
/// control bytes escaped, shortened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub kind: Refusal,
    /// The method, `Host` and target of the head (or what could be read of
    /// it), safe to log.
    pub detail: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.detail)
    }
}

/// A head the policy accepts, with its target as it will be sent.
#[derive(Debug)]
pub struct Checked<'a> {
    /// The parsed head.
    pub head: Head<'a>,
    /// The path to send and sign: the strict form under S3 rules, the
    /// path as built otherwise.
    pub path: Vec<u8>,
    /// The query to send and sign: the forwarded parameters in their
    /// strict form.
    pub query: Vec<u8>,
    /// True when `query` is its own canonical form (its parameters, all
    /// with `=`, sorted as the canonical request lists them).
    pub query_in_order: bool,
    /// The rules the path was checked under.
    pub rules: PathRules,
    /// Where the object key starts in `path` (after `/` or `/bucket/`);
    /// `path.len()` for the bucket itself; 0 without S3 rules.
    pub key_start: usize,
}

/// Decides whether the head at the start of `bytes` may be signed under
/// `policy`; see the module documentation.
pub fn check<'a>(
    bytes: &'a [u8],
    policy: &Policy<'_>,
    client: &Client<'_>,
) -> Result<Checked<'a>, Refused> {
    check_in(bytes, policy, client, &mut Workspace::default())
}

/// [`check`] with the workspace's buffers: the head's lines, path and
/// query are taken from it (give them back with [`Workspace::recycle`]),
/// so that nothing is allocated once they have grown.
pub fn check_in<'a>(
    bytes: &'a [u8],
    policy: &Policy<'_>,
    client: &Client<'_>,
    ws: &mut Workspace,
) -> Result<Checked<'a>, Refused> {
    let first_line = || {
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or(b"");
        format!("\"{}\"", escape_for_log(line, 200))
    };
    if uri_line_in_head(client.uri, bytes) {
        return Err(Refused {
            kind: Refusal::Injected,
            detail: first_line(),
        });
    }
    let mut lines = std::mem::take(&mut ws.lines);
    let head = match parse_head_into(bytes, &mut lines) {
        Ok(parts) => parts.into_head(bytes, lines),
        Err(e) => {
            ws.lines = lines;
            return Err(Refused {
                kind: Refusal::Head(e),
                detail: first_line(),
            });
        }
    };
    let refuse = |kind: Refusal, head: Head<'_>, ws: &mut Workspace| {
        let detail = describe(&head);
        ws.lines = head.lines_back();
        Err(Refused { kind, detail })
    };
    if memchr::memchr(b'#', client.target).is_some() {
        return refuse(Refusal::Fragment, head, ws);
    }
    if !policy.methods.allows(head.method) {
        return refuse(Refusal::Method, head, ws);
    }
    // a write goes out with every part that says which operation it is,
    // or not at all
    let write = !matches!(head.method, b"GET" | b"HEAD");
    let mut path = std::mem::take(&mut ws.path);
    path.clear();
    match policy.rules {
        PathRules::S3 => requote_path(head.path, &mut path),
        PathRules::Generic { .. } => path.extend_from_slice(head.path),
    }
    let mut key_start = 0;
    if let Some(s3) = &policy.s3 {
        match check_s3(&head, &path, policy.rules == PathRules::S3, s3) {
            Ok(_)
                if !policy.forward_amz.is_empty()
                    && !copy_source_in_bucket(&head, &path, policy.forward_amz, s3) =>
            {
                ws.path = path;
                return refuse(Refusal::Bucket, head, ws);
            }
            Ok(start) => key_start = start,
            Err(kind) => {
                ws.path = path;
                return refuse(kind, head, ws);
            }
        }
    }
    let mut query = std::mem::take(&mut ws.query);
    query.clear();
    let (query_in_order, dropped) = if write {
        strict_query_of_write(head.query, policy, &mut query)
    } else {
        let keep = |name: &[u8]| policy.query.keeps(name);
        (
            write_strict_query_in_order(head.query, &keep, &mut query),
            false,
        )
    };

    if !query_in_order && policy.rules == PathRules::S3 {
        // a name given twice goes out with its values in the order they
        // are signed in: servers that keep the order a name's values came
        // in (MinIO) then agree with those that sort them (AWS)
        crate::sort_repeated_names(&mut query, &mut ws.scratch, &mut ws.pairs);
    }
    // a write goes out with every part that says which operation it is,
    // or not at all
    if write && (dropped || header_dropped_on_write(head.raw, &head.lines, policy)) {
        ws.path = path;
        ws.query = query;
        return refuse(Refusal::Dropped, head, ws);
    }
    Ok(Checked {
        head,
        path,
        query,
        query_in_order,
        rules: policy.rules,
        key_start,
    })
}

/// With `x-amz-copy-source` forwarded (CopyObject, UploadPartCopy read
/// the object it names), that object must be in a bucket the request may
/// address too: one of `aws_s3_bucket`, or without it the bucket the
/// request itself addresses. `[/]bucket/key[?versionId=...]`,
/// percent-decoded, with no `.` or `..` segment in the key (a server that
/// resolves them would read elsewhere). An access point ARN is refused:
/// its bucket cannot be told.
fn copy_source_in_bucket(
    head: &Head<'_>,
    path: &[u8],
    forward: &[String],
    s3: &S3Policy<'_>,
) -> bool {
    const NAME: &str = "x-amz-copy-source";
    if !crate::wire::is_listed(NAME.as_bytes(), forward) {
        return true;
    }
    head.headers()
        .filter(|(name, ..)| name.eq_ignore_ascii_case(NAME.as_bytes()))
        .all(|(_, value, _)| {
            let raw = value.split(|&b| b == b'?').next().unwrap_or(b"");
            let mut source = Vec::with_capacity(raw.len());
            crate::decode_into(raw, &mut source);
            let source = source.strip_prefix(b"/").unwrap_or(&source);
            let Some(slash) = source.iter().position(|&b| b == b'/') else {
                return false;
            };
            let (bucket, key) = (&source[..slash], &source[slash + 1..]);
            let allowed = if s3.buckets.is_empty() {
                !matches!(bucket, b"" | b"." | b"..") && addressed_bucket(head, path, s3) == bucket
            } else {
                s3.buckets.iter().any(|b| b.as_bytes() == bucket)
            };
            allowed
                && !key.is_empty()
                && !source.starts_with(b"arn:")
                && !key
                    .split(|&b| b == b'/')
                    .any(|seg| seg == b"." || seg == b"..")
        })
}

/// The bucket a request addresses where `aws_s3_bucket` names none, as
/// S3 reads it: the label before `.endpoint` in the `Host` (whatever
/// `aws_s3_addressing` says), the first path segment when the `Host` is
/// the endpoint or an address, else the whole `Host` (a CNAME bucket).
/// A `Host` is lowercased: bucket names in one are.
fn addressed_bucket<'h>(head: &Head<'h>, path: &'h [u8], s3: &S3Policy<'_>) -> Vec<u8> {
    let (name, port) = split_host(head.host());
    let ep = split_host(s3.endpoint.as_bytes());
    let ep_name = ep.0;
    let name = name.strip_suffix(b".").unwrap_or(name);
    let names = std::iter::once(ep_name).chain(s3.also.iter().map(|a| a.as_bytes()));
    for known in names {
        if let Some(n) = name.len().checked_sub(known.len() + 1) {
            if name[n] == b'.' && name[n + 1..].eq_ignore_ascii_case(known) {
                return name[..n].to_ascii_lowercase();
            }
        }
    }
    let at_endpoint = is_endpoint(name, port, ep, s3) || is_ip_literal(name);
    if at_endpoint || s3.addressing == Some(Addressing::Path) {
        first_segment(path).0.to_vec()
    } else {
        name.to_ascii_lowercase()
    }
}

/// For a write: an `x-amz-*` header signing would drop.
#[inline(never)]
fn header_dropped_on_write(raw: &[u8], lines: &[crate::wire::Line], policy: &Policy<'_>) -> bool {
    crate::wire::dropped_on_write(raw, lines, policy.forward_amz).is_some()
}

/// For a write: the strict query, whether it is in canonical order, and
/// whether a parameter that names the operation was dropped.
#[inline(never)]
fn strict_query_of_write(raw: &[u8], policy: &Policy<'_>, out: &mut Vec<u8>) -> (bool, bool) {
    let dropped = std::cell::Cell::new(false);
    let keep = |name: &[u8]| {
        let kept = policy.query.keeps(name);
        if !kept && !harmless_to_drop(name) {
            dropped.set(true);
        }
        kept
    };
    let in_order = write_strict_query_in_order(raw, &keep, out);
    (in_order, dropped.get())
}

/// Query parameters (strict names) a write may lose on the way without
/// becoming another operation: those of a query signature (the request is
/// signed again), the checksum ones, and `x-id`, which SDKs add to name
/// the operation for logs. Any other `X-Amz-*` parameter (a presigner
/// moves headers such as `x-amz-tagging` into the query) is refused.
fn harmless_to_drop(strict_name: &[u8]) -> bool {
    const SIGNING: [&[u8]; 7] = [
        b"X-Amz-Algorithm",
        b"X-Amz-Credential",
        b"X-Amz-Date",
        b"X-Amz-Expires",
        b"X-Amz-SignedHeaders",
        b"X-Amz-Signature",
        b"X-Amz-Security-Token",
    ];
    strict_name == b"x-id"
        || SIGNING.contains(&strict_name)
        || crate::wire::is_checksum_header(strict_name)
}

/// Method, `Host` and target of a head, for a log line.
fn describe(head: &Head<'_>) -> String {
    let mut target = head.path.to_vec();
    if !head.query.is_empty() {
        target.push(b'?');
        target.extend_from_slice(head.query);
    }
    format!(
        "{} \"{}\", Host \"{}\"",
        escape_for_log(head.method, 16),
        escape_for_log(&target, 200),
        escape_for_log(head.host(), 100)
    )
}

/// True when a line of the decoded URI (what follows a CR or LF in it) is
/// found at the start of a line of the head: a `%0D%0A` in the client's
/// URI reached the head through `$uri` or a capture.
///
/// Each line start of the head is compared with each URI line, so the
/// work is head lines times URI lines, each comparison ending at the
/// first byte that differs; past a bound on that product (a URI of
/// thousands of line breaks against a head of thousands of lines) the
/// request is taken as injected rather than checked.
fn uri_line_in_head(uri: &[u8], head: &[u8]) -> bool {
    const MAX_PAIRS: usize = 1 << 16;
    let is_break = |b: &u8| *b == b'\r' || *b == b'\n';
    if memchr::memchr2(b'\r', b'\n', uri).is_none() {
        return false;
    }
    // the lines after a break: what follows a CR or LF up to the next one
    let uri_lines = || uri.split(is_break).skip(1).filter(|l| !l.is_empty());
    let n_uri = uri_lines().count();
    let mut pairs = 0usize;
    for nl in memchr::memchr_iter(b'\n', head) {
        pairs += n_uri;
        if pairs > MAX_PAIRS {
            return true;
        }
        let rest = &head[nl + 1..];
        if uri_lines().any(|line| rest.starts_with(line)) {
            return true;
        }
    }
    false
}

/// `host[:port]` split; a bracketed IPv6 address keeps its brackets.
fn split_host(value: &[u8]) -> (&[u8], Option<&[u8]>) {
    match value.iter().rposition(|&b| b == b':') {
        Some(i)
            if !value.ends_with(b"]")
                && (value.first() == Some(&b'[') || !value[..i].contains(&b':')) =>
        {
            (&value[..i], Some(&value[i + 1..]))
        }
        _ => (value, None),
    }
}

/// Ports agree: both absent, equal, or one absent and the other a
/// scheme's default.
fn same_port(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y,
        (Some(p), None) | (None, Some(p)) => p == b"80" || p == b"443",
    }
}

/// An IP address literal: never a bucket's virtual host.
fn is_ip_literal(name: &[u8]) -> bool {
    match name.first() {
        Some(b'[') => true,
        // an IPv4 address starts with a digit; an IPv6 one is bracketed in
        // a Host, but a bare one is an address too
        Some(c) if c.is_ascii_digit() || name.contains(&b':') => {
            std::str::from_utf8(name).is_ok_and(|s| s.parse::<std::net::IpAddr>().is_ok())
        }
        _ => false,
    }
}

/// `name` and `port` (of a `Host`) are the endpoint (`ep`, split) or one
/// of its other names in `s3`.
#[inline]
fn is_endpoint(
    name: &[u8],
    port: Option<&[u8]>,
    ep: (&[u8], Option<&[u8]>),
    s3: &S3Policy<'_>,
) -> bool {
    same_port(port, ep.1)
        && (name.eq_ignore_ascii_case(ep.0)
            || s3
                .also
                .iter()
                .any(|a| name.eq_ignore_ascii_case(a.as_bytes())))
}

/// `name` equals `bucket` + `.` + `endpoint`, ignoring case.
fn is_bucket_host(name: &[u8], bucket: &[u8], endpoint: &[u8]) -> bool {
    name.len() == bucket.len() + 1 + endpoint.len()
        && name[..bucket.len()].eq_ignore_ascii_case(bucket)
        && name[bucket.len()] == b'.'
        && name[bucket.len() + 1..].eq_ignore_ascii_case(endpoint)
}

/// The first segment of a strict path and what follows it (`/b/k` gives
/// `b` and `/k`).
fn first_segment(path: &[u8]) -> (&[u8], &[u8]) {
    let p = path.strip_prefix(b"/").unwrap_or(path);
    match p.iter().position(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i..]),
        None => (p, b""),
    }
}

/// True when a `.` starts a segment of `rest` (at its start or after a
/// `/`), eight bytes a round. In a path in S3's strict form, where `.` and
/// `/` are never escaped, no other path can hold a dot segment.
fn dot_starts_a_segment(rest: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let at = |j: usize| rest[j] == b'.' && (j == 0 || rest[j - 1] == b'/');
    let mut i = 0;
    while let Some(w) = rest.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(w) else {
            break;
        };
        // a zero byte where a `.` is
        let x = u64::from_le_bytes(word) ^ (ONES * u64::from(b'.'));
        if x.wrapping_sub(ONES) & !x & HIGH != 0 && (i..i + 8).any(at) {
            return true;
        }
        i += 8;
    }
    (i..rest.len()).any(at)
}

/// Where the decoded segments of `rest` (the path after the bucket) lead a
/// server that resolves dot segments, counting empty segments as nothing
/// (a server may merge slashes). Segments end at `/` and at `%2F`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// `..` more often than names: above the bucket (never when the walk
    /// stops at the top, as in a bucket named by the Host).
    Climbs,
    /// Dot segments that come back to the bucket itself (`x/..`, `.`).
    Root,
    /// Anywhere else: a key, as sent.
    Key,
}

/// `strict`: `rest` is in S3's strict form, which most keys walk through
/// at a glance.
fn walk(rest: &[u8], clamp: bool, strict: bool) -> Walk {
    if strict && !dot_starts_a_segment(rest) {
        Walk::Key
    } else {
        walk_segments(rest, clamp)
    }
}

/// [`walk`], segment by segment.
fn walk_segments(rest: &[u8], clamp: bool) -> Walk {
    let mut depth = 0i64;
    let mut dotted = false;
    // the current segment: decoded length (up to 3) and whether it is all dots
    let (mut len, mut dots) = (0usize, true);
    let mut end_segment = |len: usize, dots: bool| -> bool {
        match (len, dots) {
            (0, _) => {}
            (1, true) => dotted = true,
            (2, true) => {
                dotted = true;
                depth -= 1;
                if depth < 0 {
                    if !clamp {
                        return true;
                    }
                    depth = 0;
                }
            }
            _ => depth += 1,
        }
        false
    };
    let mut i = 0;
    while i < rest.len() {
        let (b, step) = match percent_at(rest, i) {
            Some(b) => (b, 3),
            None => (rest[i], 1),
        };
        i += step;
        if b == b'/' {
            if end_segment(len, dots) {
                return Walk::Climbs;
            }
            (len, dots) = (0, true);
        } else {
            len = (len + 1).min(3);
            dots &= b == b'.';
        }
    }
    if end_segment(len, dots) {
        Walk::Climbs
    } else if dotted && depth == 0 {
        Walk::Root
    } else {
        Walk::Key
    }
}

/// Where the key starts in `path`, if the head may address it.
/// `strict`: `path` is in S3's strict form.
fn check_s3(
    head: &Head<'_>,
    path: &[u8],
    strict: bool,
    s3: &S3Policy<'_>,
) -> Result<usize, Refusal> {
    let (name, port) = split_host(head.host());
    // `host.` is the same host to DNS, and to addressed_bucket
    let name = name.strip_suffix(b".").unwrap_or(name);
    let (ep_name, ep_port) = split_host(s3.endpoint.as_bytes());
    // asked only where the style is not settled otherwise
    let at_endpoint = || is_endpoint(name, port, (ep_name, ep_port), s3) || is_ip_literal(name);
    let (first, after_first) = first_segment(path);
    let path_bucket = s3.buckets.iter().any(|b| b.as_bytes() == first);
    let style = if s3.buckets.is_empty() {
        match s3.addressing {
            Some(a) => a,
            None if at_endpoint() => Addressing::Path,
            None => Addressing::Virtual,
        }
    } else {
        // `Host: bucket`: a CNAME bucket to AWS
        let cname = s3
            .buckets
            .iter()
            .any(|b| name.eq_ignore_ascii_case(b.as_bytes()));
        let virtual_ok = same_port(port, ep_port)
            && (cname
                || s3.buckets.iter().any(|b| {
                    is_bucket_host(name, b.as_bytes(), ep_name)
                        || s3
                            .also
                            .iter()
                            .any(|a| is_bucket_host(name, b.as_bytes(), a.as_bytes()))
                }));
        match s3.addressing {
            Some(Addressing::Virtual) if virtual_ok => Addressing::Virtual,
            Some(Addressing::Virtual) => return Err(Refusal::Host),
            Some(Addressing::Path) if !at_endpoint() => return Err(Refusal::Host),
            Some(Addressing::Path) if !path_bucket => return Err(Refusal::Bucket),
            Some(Addressing::Path) => Addressing::Path,
            None if virtual_ok => {
                // a server that routes by path reads a CNAME bucket's path's
                // first segment as the bucket: without `aws_s3_addressing
                // virtual`, the request must pass as path style too
                if cname {
                    if !path_bucket {
                        return Err(Refusal::Bucket);
                    }
                    key_checks(Addressing::Path, strict, head, path, after_first, s3)?;
                }
                Addressing::Virtual
            }
            None if at_endpoint() && path_bucket => Addressing::Path,
            None if at_endpoint() => return Err(Refusal::Bucket),
            None => return Err(Refusal::Host),
        }
    };
    key_checks(style, strict, head, path, after_first, s3)
}

/// Where the key starts in `path` read in `style` (`after_first`: what
/// follows its first segment), if the request may address it: never above
/// the bucket, and the bucket itself (no key, or dot segments that come
/// back to it) only for a GET or HEAD where listing is allowed.
fn key_checks(
    style: Addressing,
    strict: bool,
    head: &Head<'_>,
    path: &[u8],
    after_first: &[u8],
    s3: &S3Policy<'_>,
) -> Result<usize, Refusal> {
    let (key_start, walked) = match style {
        // the bucket is in the Host: `..` cannot leave it
        Addressing::Virtual => (path.len().min(1), walk(path, true, strict)),
        Addressing::Path => (
            (path.len() - after_first.len() + 1).min(path.len()),
            walk(after_first, false, strict),
        ),
    };
    if walked == Walk::Climbs {
        return Err(Refusal::Climb);
    }
    // a key of slashes only is the bucket itself to a server that merges
    // slashes
    let root = path[key_start..].iter().all(|&b| b == b'/') || walked == Walk::Root;
    if root && !(s3.listing && matches!(head.method, b"GET" | b"HEAD")) {
        return Err(Refusal::BucketRequest);
    }
    Ok(key_start)
}

/// Bytes for a log line: printable ASCII as it is, everything else (and
/// `"` and `\`) as `\xNN`, at most `max` input bytes (then `...`).
pub fn escape_for_log(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) + 8);
    for &b in bytes.iter().take(max) {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    if bytes.len() > max {
        out.push_str("...");
    }
    out
}

/// `text` with every form of `secret` a log line could carry (as it is,
/// and percent-encoded with upper- or lowercase hex) replaced by
/// `<redacted>`.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let mut encoded = Vec::with_capacity(secret.len() * 3);
    crate::encode_into(secret.as_bytes(), false, &mut encoded);
    let upper = String::from_utf8_lossy(&encoded).into_owned();
    let lower = lower_hex_escapes(&upper);
    let mut out = text.replace(secret, "<redacted>");
    for form in [upper, lower] {
        if form != secret {
            out = out.replace(&form, "<redacted>");
        }
    }
    out
}

/// `%AB` escapes in lowercase (`%ab`).
fn lower_hex_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(b'%');
            out.push(b[i + 1].to_ascii_lowercase());
            out.push(b[i + 2].to_ascii_lowercase());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKETS: &[String] = &[];

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn s3<'a>(buckets: &'a [String], addressing: Option<Addressing>, listing: bool) -> Policy<'a> {
        Policy {
            methods: MethodSet::READ,
            rules: PathRules::S3,
            query: QueryPolicy::None,
            s3: Some(S3Policy {
                buckets,
                addressing,
                endpoint: "s3.amazonaws.com",
                also: &[],
                listing,
            }),
            forward_amz: &[],
        }
    }

    fn head(method: &str, target: &str, host: &str) -> Vec<u8> {
        format!("{method} {target} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .into_bytes()
    }

    fn verdict(p: &Policy<'_>, raw: &[u8]) -> Result<(String, String), Refusal> {
        check(raw, p, &Client::default())
            .map(|c| {
                (
                    String::from_utf8(c.path).unwrap(),
                    String::from_utf8(c.query).unwrap(),
                )
            })
            .map_err(|r| r.kind)
    }

    #[test]
    fn methods() {
        let m = MethodSet::parse(&[b"get", b"PUT"]).unwrap();
        assert!(m.allows(b"GET") && m.allows(b"PUT") && !m.allows(b"HEAD") && !m.allows(b"get"));
        assert_eq!(m.allow_header(), "GET, PUT");
        assert!(MethodSet::parse(&[b"TRACE"]).unwrap_err().contains("TRACE"));
        let b = names(&["my-bucket"]);
        let p = s3(&b, None, false);
        assert_eq!(
            verdict(&p, &head("PUT", "/k", "my-bucket.s3.amazonaws.com")),
            Err(Refusal::Method)
        );
    }

    #[test]
    fn other_names_of_the_endpoint() {
        let b = names(&["my-bucket"]);
        let (endpoint, also) = crate::config::default_s3_endpoints("eu-west-1");
        let mut p = s3(&b, None, false);
        if let Some(s) = p.s3.as_mut() {
            s.endpoint = &endpoint;
            s.also = &also;
        }
        let ok = Ok(("/k".into(), "".into()));
        for host in [
            "my-bucket.s3.eu-west-1.amazonaws.com",
            "my-bucket.s3.amazonaws.com",
            "MY-BUCKET.s3.dualstack.eu-west-1.amazonaws.com",
            "my-bucket.s3-eu-west-1.amazonaws.com:443",
        ] {
            assert_eq!(verdict(&p, &head("GET", "/k", host)), ok, "{host}");
        }
        for host in [
            "s3.eu-west-1.amazonaws.com",
            "s3.amazonaws.com",
            "s3.dualstack.eu-west-1.amazonaws.com",
        ] {
            assert_eq!(
                verdict(&p, &head("GET", "/my-bucket/k", host)),
                Ok(("/my-bucket/k".into(), "".into())),
                "{host}"
            );
            // another bucket, at any name of the endpoint
            assert_eq!(
                verdict(&p, &head("GET", "/other/k", host)),
                Err(Refusal::Bucket),
                "{host}"
            );
        }
        // another region's endpoint, another bucket, another port: refused
        for host in [
            "my-bucket.s3.us-west-2.amazonaws.com",
            "other.s3.eu-west-1.amazonaws.com",
            "my-bucket.s3.amazonaws.com:8080",
            "my-bucket.s3.eu-west-1.amazonaws.com.evil.example",
        ] {
            assert_eq!(
                verdict(&p, &head("GET", "/k", host)),
                Err(Refusal::Host),
                "{host}"
            );
        }
        // path style only: the other names are the endpoint too
        if let Some(s) = p.s3.as_mut() {
            s.addressing = Some(Addressing::Path);
        }
        assert_eq!(
            verdict(&p, &head("GET", "/my-bucket/k", "s3.amazonaws.com")),
            Ok(("/my-bucket/k".into(), "".into()))
        );
        assert_eq!(
            verdict(
                &p,
                &head("GET", "/my-bucket/k", "my-bucket.s3.amazonaws.com")
            ),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn a_trailing_dot_is_the_same_host() {
        // without aws_s3_bucket, the endpoint with a dot is still the
        // endpoint: its first path segment is the bucket, not a key
        let p = s3(BUCKETS, None, false);
        for host in [
            "s3.amazonaws.com",
            "s3.amazonaws.com.",
            "S3.AMAZONAWS.COM.:443",
        ] {
            assert_eq!(
                verdict(&p, &head("GET", "/anybucket", host)),
                Err(Refusal::BucketRequest),
                "{host}"
            );
            assert!(
                verdict(&p, &head("GET", "/anybucket/k", host)).is_ok(),
                "{host}"
            );
        }
        let b = names(&["b"]);
        let p = s3(&b, None, false);
        assert!(verdict(&p, &head("GET", "/k", "b.s3.amazonaws.com.")).is_ok());
        assert_eq!(
            verdict(&p, &head("GET", "/k", "c.s3.amazonaws.com.")),
            Err(Refusal::Host)
        );
    }

    #[test]
    fn query_policy() {
        let b = names(&["b"]);
        let host = "b.s3.amazonaws.com";
        let mut p = s3(&b, None, false);
        // default for S3: no client parameter; a cache-buster still gets the object
        assert_eq!(
            verdict(&p, &head("GET", "/k?v=123", host)),
            Ok(("/k".into(), "".into()))
        );
        assert_eq!(
            verdict(&p, &head("GET", "/k?acl", host)),
            Ok(("/k".into(), "".into()))
        );
        let allowed = vec![
            QueryPolicy::strict_name(b"versionId"),
            QueryPolicy::strict_name(b"partNumber"),
        ];
        p.query = QueryPolicy::Only(&allowed);
        assert_eq!(
            verdict(
                &p,
                &head(
                    "GET",
                    "/k?versionId=a+b&response-content-type=text/html&partNumber=2",
                    host
                )
            ),
            Ok(("/k".into(), "versionId=a%20b&partNumber=2".into()))
        );
        // an encoded name is the same name
        assert_eq!(
            verdict(&p, &head("GET", "/k?version%49d=1", host)),
            Ok(("/k".into(), "versionId=1".into()))
        );
        p.query = QueryPolicy::All;
        assert_eq!(
            verdict(
                &p,
                &head(
                    "GET",
                    "/k?X-Amz-Expires=604800&x-amz-credential=x&%58-Amz-Date=1&a=1",
                    host
                )
            ),
            Ok(("/k".into(), "a=1".into()))
        );
    }

    #[test]
    fn bucket_requests() {
        let b = names(&["b"]);
        let p = s3(&b, None, false);
        let vhost = "b.s3.amazonaws.com";
        for target in ["/", "/?list-type=2", "/?policy", "/?versions"] {
            assert_eq!(
                verdict(&p, &head("GET", target, vhost)),
                Err(Refusal::BucketRequest),
                "{target}"
            );
        }
        for target in ["/b", "/b/", "/b?list-type=2"] {
            assert_eq!(
                verdict(&p, &head("GET", target, "127.0.0.1:9000")),
                Err(Refusal::BucketRequest),
                "{target}"
            );
        }
        let on = s3(&b, None, true);
        assert!(verdict(&on, &head("GET", "/?list-type=2", vhost)).is_ok());
        assert!(verdict(&on, &head("HEAD", "/b/", "127.0.0.1:9000")).is_ok());
        let mut writes = s3(&b, None, true);
        writes.methods = MethodSet::ALL;
        assert_eq!(
            verdict(&writes, &head("DELETE", "/?publicAccessBlock", vhost)),
            Err(Refusal::BucketRequest)
        );
        assert_eq!(
            verdict(&writes, &head("PUT", "/", vhost)),
            Err(Refusal::BucketRequest)
        );
        assert!(verdict(&writes, &head("PUT", "/k", vhost)).is_ok());
        // without a bucket: "/" in virtual style, one segment in path style
        let none = s3(BUCKETS, None, false);
        assert_eq!(
            verdict(&none, &head("GET", "/", "x.s3.amazonaws.com")),
            Err(Refusal::BucketRequest)
        );
        assert_eq!(
            verdict(&none, &head("GET", "/x/", "s3.amazonaws.com")),
            Err(Refusal::BucketRequest)
        );
        assert!(verdict(&none, &head("GET", "/x/k", "s3.amazonaws.com")).is_ok());
    }

    #[test]
    fn exact_buckets() {
        let b = names(&["my-bucket", "second"]);
        let any = s3(&b, None, false);
        let virt = s3(&b, Some(Addressing::Virtual), false);
        let path = s3(&b, Some(Addressing::Path), false);
        let ok = |p: &Policy<'_>, t: &str, h: &str| verdict(p, &head("GET", t, h)).is_ok();
        let err = |p: &Policy<'_>, t: &str, h: &str| verdict(p, &head("GET", t, h)).unwrap_err();
        assert!(ok(&virt, "/k", "my-bucket.s3.amazonaws.com"));
        assert!(ok(&virt, "/k", "SECOND.s3.amazonaws.com:443"));
        assert!(ok(&virt, "/k", "my-bucket"));
        assert_eq!(
            err(&virt, "/k", "my-bucket.s3.amazonaws.com.evil.example"),
            Refusal::Host
        );
        assert_eq!(err(&virt, "/k", "my-bucket.evil.example"), Refusal::Host);
        assert_eq!(err(&virt, "/k", "other.s3.amazonaws.com"), Refusal::Host);
        assert_eq!(
            err(&virt, "/my-bucket/k", "s3.amazonaws.com"),
            Refusal::Host
        );
        assert!(ok(&path, "/my-bucket/k", "s3.amazonaws.com"));
        assert!(ok(&path, "/second/k", "127.0.0.1:9000"));
        assert!(ok(&path, "/second/k", "[::1]:9000"));
        assert_eq!(
            err(&path, "/my-bucket/k", "other-bucket.s3.amazonaws.com"),
            Refusal::Host
        );
        assert_eq!(
            err(&path, "/my-bucket/k", "minio.internal:9000"),
            Refusal::Host
        );
        assert_eq!(
            err(&path, "/my-bucketx/k", "s3.amazonaws.com"),
            Refusal::Bucket
        );
        assert_eq!(err(&path, "/other/k", "s3.amazonaws.com"), Refusal::Bucket);
        // either style without aws_s3_addressing, each exact
        assert!(ok(&any, "/k", "my-bucket.s3.amazonaws.com"));
        assert!(ok(&any, "/my-bucket/k", "127.0.0.1:8080"));
        assert_eq!(
            err(&any, "/my-bucket/k", "other-bucket.s3.amazonaws.com"),
            Refusal::Host
        );
        assert_eq!(err(&any, "/other/k", "127.0.0.1:8080"), Refusal::Bucket);
        // `Host: bucket` without aws_s3_addressing: a CNAME bucket to AWS,
        // path style to a server that routes by path; it must pass as both
        assert!(ok(&any, "/my-bucket/k", "my-bucket"));
        assert!(ok(&any, "/second/k", "MY-BUCKET"));
        assert_eq!(err(&any, "/other/k", "my-bucket"), Refusal::Bucket);
        assert_eq!(err(&any, "/k", "my-bucket"), Refusal::Bucket);
        assert_eq!(
            err(&any, "/my-bucket/", "my-bucket"),
            Refusal::BucketRequest
        );
        assert_eq!(err(&any, "/my-bucket", "my-bucket"), Refusal::BucketRequest);
        assert_eq!(
            err(&any, "/my-bucket/../other/k", "my-bucket"),
            Refusal::Climb
        );
        let writes = Policy {
            methods: MethodSet::ALL,
            ..any
        };
        let delete = |t: &str, host: &str| {
            verdict(&writes, &head("DELETE", t, host))
                .map(|_| ())
                .unwrap_err()
        };
        assert_eq!(delete("/my-bucket/", "my-bucket"), Refusal::BucketRequest);
        assert_eq!(delete("/other/", "my-bucket"), Refusal::Bucket);
        // aws_s3_addressing virtual: the CNAME bucket as AWS reads it
        assert!(ok(&virt, "/other/k", "my-bucket"));
    }

    #[test]
    fn a_write_that_would_lose_what_names_its_operation_is_refused() {
        let names = [b"uploadId".to_vec(), b"partNumber".to_vec()];
        let forward = ["x-amz-meta-colour".to_string()];
        let p = Policy {
            methods: MethodSet::ALL,
            query: QueryPolicy::Only(&names),
            forward_amz: &forward,
            ..Policy::permissive(PathRules::S3)
        };
        let with = |method: &str, target: &str, extra: &str| {
            let raw = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
            verdict(&p, raw.as_bytes())
        };
        // parameters: dropped from reads, refused on writes
        assert_eq!(
            with("GET", "/b/k?tagging", ""),
            Ok(("/b/k".into(), "".into()))
        );
        assert_eq!(with("PUT", "/b/k?tagging", ""), Err(Refusal::Dropped));
        assert_eq!(with("DELETE", "/b/k?tagging", ""), Err(Refusal::Dropped));
        assert_eq!(with("POST", "/b/k?restore", ""), Err(Refusal::Dropped));
        assert_eq!(with("PUT", "/b/k?acl=", ""), Err(Refusal::Dropped));
        // but the forwarded ones, the SDKs' x-id and query-signing leftovers
        assert_eq!(
            with("PUT", "/b/k?partNumber=1&uploadId=u&x-id=UploadPart", ""),
            Ok(("/b/k".into(), "partNumber=1&uploadId=u".into()))
        );
        assert!(with("PUT", "/b/k?X-Amz-Date=x&X-Amz-Signature=y", "").is_ok());
        assert_eq!(
            with("PUT", "/b/k?X-Amz-Date=x&x-amz-tagging=a%3Db", ""),
            Err(Refusal::Dropped)
        );
        assert_eq!(
            with("PUT", "/b/k?x-amz-server-side-encryption=AES256", ""),
            Err(Refusal::Dropped)
        );
        // headers: the same
        let copy = "x-amz-copy-source: other/secret\r\n";
        assert!(with("GET", "/b/k", copy).is_ok());
        assert_eq!(with("PUT", "/b/k", copy), Err(Refusal::Dropped));
        assert_eq!(
            with("PUT", "/b/k", "X-Amz-Tagging: a=b\r\n"),
            Err(Refusal::Dropped)
        );
        assert_eq!(
            with("DELETE", "/b/k", "x-amz-mfa: 1 2\r\n"),
            Err(Refusal::Dropped)
        );
        assert_eq!(
            with("PUT", "/b/k", "x-amz-acl: public-read\r\n"),
            Err(Refusal::Dropped)
        );
        assert_eq!(
            with("PUT", "/b/k", "x-amz-storage-class: GLACIER\r\n"),
            Err(Refusal::Dropped)
        );
        assert!(with("PUT", "/b/k", "X-Amz-Meta-Colour: red\r\n").is_ok());
        assert_eq!(
            with("PUT", "/b/k", "X-Amz-Meta-Size: 9\r\n"),
            Err(Refusal::Dropped)
        );
        let pattern = ["x-amz-meta-*".to_string()];
        let p = Policy {
            forward_amz: &pattern,
            ..p
        };
        let raw = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nX-Amz-Meta-Size: 9\r\nx-amz-meta-a: b\r\n\r\n";
        assert!(verdict(&p, raw).is_ok());
        let raw = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nx-amz-metadata-directive: COPY\r\n\r\n";
        assert_eq!(verdict(&p, raw).map(|_| ()), Err(Refusal::Dropped));
        // what SDKs add on their own, and the signer's own headers
        assert!(with(
            "PUT",
            "/b/k",
            "x-amz-checksum-crc32: AAAAAA==\r\nx-amz-sdk-checksum-algorithm: CRC32\r\n\
             x-amz-checksum-algorithm: CRC32\r\nx-amz-user-agent: aws-sdk-js/3\r\n\
             X-Amz-Acl: private\r\nx-amz-storage-class: STANDARD\r\n\
             x-amz-date: 1\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\nAuthorization: x\r\n"
        )
        .is_ok());
    }

    #[test]
    fn uri_lines_are_looked_for_at_line_starts_with_a_bound_on_the_work() {
        let head = b"GET /k HTTP/1.1\r\nHost: h\r\nX-Injected: 1\r\nAccept: */*\r\n\r\n";
        assert!(!uri_line_in_head(b"/k", head));
        assert!(uri_line_in_head(b"/k\r\nX-Injected: 1", head));
        assert!(uri_line_in_head(b"/k\nX-Inj", head));
        // found only at the start of a line
        assert!(!uri_line_in_head(b"/k\nInjected: 1", head));
        assert!(!uri_line_in_head(b"/k\r\n\r\n", head));
        // a thousand lines that are nowhere in the head: checked
        let many = b"/k\nab".repeat(1000);
        assert!(!uri_line_in_head(&many, head));
        let mut found = many.clone();
        found.extend_from_slice(b"\nAccept");
        assert!(uri_line_in_head(&found, head));
        // past the bound (URI lines times head lines), taken as injected
        let big_head = [
            &b"GET /k HTTP/1.1\r\n"[..],
            &b"a: b\r\n".repeat(100),
            b"\r\n",
        ]
        .concat();
        assert!(uri_line_in_head(&b"/k\nzz".repeat(1000), &big_head));
        assert!(!uri_line_in_head(&b"/k\nzz".repeat(100), &big_head));
    }

    #[test]
    fn a_forwarded_copy_source_must_name_an_object_of_the_bucket() {
        let buckets = ["my-bucket".to_string()];
        let forward = ["x-amz-copy-source".to_string()];
        let p = Policy {
            methods: MethodSet::ALL,
            forward_amz: &forward,
            ..s3(&buckets, Some(Addressing::Path), false)
        };
        let copy = |source: &str| {
            let raw = format!(
                "PUT /my-bucket/dst HTTP/1.1\r\nHost: s3.amazonaws.com\r\n\
                 x-amz-copy-source: {source}\r\n\r\n"
            );
            verdict(&p, raw.as_bytes()).map(|_| ())
        };
        assert_eq!(copy("my-bucket/src"), Ok(()));
        assert_eq!(copy("/my-bucket/a%20b/c?versionId=3"), Ok(()));
        assert_eq!(copy("other/secret"), Err(Refusal::Bucket));
        assert_eq!(copy("/other/secret"), Err(Refusal::Bucket));
        assert_eq!(copy("my%2Dbucket2/x"), Err(Refusal::Bucket));
        assert_eq!(copy("%6Fther/secret"), Err(Refusal::Bucket));
        assert_eq!(copy("my-bucket/../other/secret"), Err(Refusal::Bucket));
        assert_eq!(
            copy("my-bucket/a/%2E%2E/%2E%2E/other/x"),
            Err(Refusal::Bucket)
        );
        assert_eq!(copy("my-bucket"), Err(Refusal::Bucket));
        assert_eq!(copy("my-bucket/"), Err(Refusal::Bucket));
        assert_eq!(
            copy("arn:aws:s3:us-east-1:1:accesspoint/ap/object/k"),
            Err(Refusal::Bucket)
        );
        // without aws_s3_bucket: the bucket the request addresses
        for (addressing, host, target) in [
            (
                Some(Addressing::Virtual),
                "my-bucket.s3.amazonaws.com",
                "/dst",
            ),
            (None, "my-bucket.s3.amazonaws.com", "/dst"),
            (Some(Addressing::Path), "s3.amazonaws.com", "/my-bucket/dst"),
            (None, "s3.amazonaws.com", "/my-bucket/dst"),
        ] {
            let any = Policy {
                methods: MethodSet::ALL,
                forward_amz: &forward,
                ..s3(&[], addressing, false)
            };
            let copy = |source: &str| {
                let raw = format!(
                    "PUT {target} HTTP/1.1\r\nHost: {host}\r\n\
                     x-amz-copy-source: {source}\r\n\r\n"
                );
                verdict(&any, raw.as_bytes()).map(|_| ())
            };
            assert_eq!(copy("my-bucket/src"), Ok(()), "{host}{target}");
            assert_eq!(copy("other/x"), Err(Refusal::Bucket), "{host}{target}");
            assert_eq!(copy("/other/x"), Err(Refusal::Bucket), "{host}{target}");
            assert_eq!(
                copy("My-Bucket/src"),
                Err(Refusal::Bucket),
                "{host}{target}"
            );
        }
        // aws_s3_addressing path, no bucket, and a bucket's Host: S3 reads
        // the bucket from the Host, not from the client's first segment
        let any = Policy {
            methods: MethodSet::ALL,
            forward_amz: &forward,
            ..s3(&[], Some(Addressing::Path), false)
        };
        let raw = b"PUT /secret/x HTTP/1.1\r\nHost: my-bucket.s3.amazonaws.com\r\n\
                    x-amz-copy-source: secret/obj\r\n\r\n";
        assert_ne!(verdict(&any, raw).map(|_| ()), Ok(()));
    }

    #[test]
    fn the_quick_look_for_dot_segments_misses_none() {
        // every strict path of up to five pieces: where the quick look
        // finds no `.` starting a segment, the walk finds a plain key
        let pieces: [&[u8]; 7] = [b"/", b".", b"..", b"a", b"%20", b"a.b", b"abcdefg"];
        let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in paths.iter().filter(|p| p.len() < 40) {
                for piece in pieces {
                    let mut q = p.clone();
                    q.extend_from_slice(piece);
                    next.push(q);
                }
            }
            paths.extend(next);
        }
        let (mut skipped, mut walked) = (0, 0);
        for p in &paths {
            let at_a_glance = !dot_starts_a_segment(p);
            let slow = p
                .iter()
                .enumerate()
                .any(|(j, &b)| b == b'.' && (j == 0 || p[j - 1] == b'/'));
            assert_eq!(at_a_glance, !slow, "{}", String::from_utf8_lossy(p));
            if at_a_glance {
                skipped += 1;
                for clamp in [false, true] {
                    assert_eq!(
                        walk_segments(p, clamp),
                        Walk::Key,
                        "{}",
                        String::from_utf8_lossy(p)
                    );
                }
            } else {
                walked += 1;
            }
        }
        assert!(skipped > 1000 && walked > 1000, "{skipped} {walked}");
        assert!(!dot_starts_a_segment(b"/photos/2026/11/cat%20%281%29.jpg"));
        assert!(dot_starts_a_segment(b"/photos/2026/11/cat%20%281%29/.jpg"));
        assert!(dot_starts_a_segment(b"."));
    }

    #[test]
    fn dot_segments_in_path_style() {
        let b = names(&["my-bucket"]);
        let path = s3(&b, Some(Addressing::Path), false);
        let v = |t: &str| verdict(&path, &head("GET", t, "s3.amazonaws.com"));
        assert_eq!(v("/my-bucket/../other-bucket/k"), Err(Refusal::Climb));
        assert_eq!(v("/my-bucket/a/../../other/k"), Err(Refusal::Climb));
        assert_eq!(v("/my-bucket/%2E%2E/other/k"), Err(Refusal::Climb));
        assert_eq!(v("/my-bucket/..%2Fother/k"), Err(Refusal::Climb));
        assert_eq!(v("/my-bucket//../other/k"), Err(Refusal::Climb));
        assert_eq!(v("/my-bucket/.."), Err(Refusal::Climb));
        assert!(v("/my-bucket/a/../b").is_ok());
        assert!(v("/my-bucket/./a//b").is_ok());
        assert!(v("/my-bucket/..a/b..").is_ok());
        // dot segments that come back to the bucket itself are the bucket
        // to a server that resolves them: a listing, or a bucket-level write
        assert_eq!(v("/my-bucket/x/.."), Err(Refusal::BucketRequest));
        assert_eq!(v("/my-bucket/x/../"), Err(Refusal::BucketRequest));
        assert_eq!(v("/my-bucket/."), Err(Refusal::BucketRequest));
        assert_eq!(v("/my-bucket/%2E"), Err(Refusal::BucketRequest));
        assert_eq!(v("/my-bucket/./"), Err(Refusal::BucketRequest));
        assert!(v("/my-bucket/x/../y").is_ok());
        // and so do slashes alone, to a server that merges them
        assert_eq!(v("/my-bucket//"), Err(Refusal::BucketRequest));
        assert_eq!(v("/my-bucket///"), Err(Refusal::BucketRequest));
        assert!(v("/my-bucket//k").is_ok());
        assert!(v("/my-bucket/k//").is_ok());
        // ... where listing is allowed, a GET or HEAD of it is signed
        let listing = Policy {
            methods: MethodSet::ALL,
            ..s3(&b, Some(Addressing::Path), true)
        };
        assert!(verdict(
            &listing,
            &head("GET", "/my-bucket/x/..", "s3.amazonaws.com")
        )
        .is_ok());
        assert_eq!(
            verdict(
                &listing,
                &head("DELETE", "/my-bucket/x/..", "s3.amazonaws.com")
            ),
            Err(Refusal::BucketRequest)
        );
        // a dot segment in virtual-host style never leaves the bucket, but
        // may come back to it
        let virt = s3(&b, Some(Addressing::Virtual), false);
        let vv = |t: &str| verdict(&virt, &head("GET", t, "my-bucket.s3.amazonaws.com"));
        assert!(vv("/../k").is_ok());
        assert!(vv("/a/../../k").is_ok());
        assert_eq!(vv("/.."), Err(Refusal::BucketRequest));
        assert_eq!(vv("/x/.."), Err(Refusal::BucketRequest));
        assert_eq!(vv("//"), Err(Refusal::BucketRequest));
        assert_eq!(vv("/."), Err(Refusal::BucketRequest));
        assert!(vv("/x/./y").is_ok());
    }

    #[test]
    fn injected_lines() {
        let p = Policy::permissive(PathRules::S3);
        // %0D%0A in $uri, placed in proxy_pass: the client's Host line and
        // the real head after it
        let raw = b"GET /var/x HTTP/1.1\r\nHost: other.localhost\r\n\r\n HTTP/1.0\r\nHost: real\r\nConnection: close\r\n\r\n";
        assert_eq!(
            verdict(&p, raw),
            Err(Refusal::Head(HeadError::TrailingBytes))
        );
        // a header line that ends with the proxy's own protocol
        let raw = b"GET /x HTTP/1.1\r\nX-Pad: HTTP/1.0\r\nHost: real\r\n\r\n";
        assert_eq!(
            verdict(&p, raw),
            Err(Refusal::Head(HeadError::VersionInHeader))
        );
        // in a header value: a second Host
        let raw = b"GET /x HTTP/1.0\r\nHost: real\r\nX-Orig: /a\r\nHost: evil\r\n\r\n";
        assert_eq!(verdict(&p, raw), Err(Refusal::Head(HeadError::Host(2))));
        // a harmless-looking line is found by the decoded URI's own line
        let raw = b"GET /x HTTP/1.0\r\nHost: real\r\nX-Orig: /a\r\nX-Injected: 1\r\n\r\n";
        let client = Client {
            uri: b"/a\r\nX-Injected: 1",
            target: b"/a%0D%0AX-Injected:%201",
        };
        assert_eq!(check(raw, &p, &client).unwrap_err().kind, Refusal::Injected);
        // the same URI signed as sent, encoded (proxy_pass without a URI part)
        let raw = b"GET /a%0D%0AX-Injected:%201 HTTP/1.0\r\nHost: real\r\n\r\n";
        assert!(check(raw, &p, &client).is_ok());
        // a raw '#'
        let client = Client {
            uri: b"/a",
            target: b"/a#/../b",
        };
        let raw = b"GET /a#/../b HTTP/1.0\r\nHost: real\r\n\r\n";
        assert_eq!(check(raw, &p, &client).unwrap_err().kind, Refusal::Fragment);
    }

    #[test]
    fn log_escaping_and_redaction() {
        assert_eq!(
            escape_for_log(b"/a\nb\"\\\x7f\xff", 100),
            "/a\\x0Ab\\x22\\x5C\\x7F\\xFF"
        );
        assert_eq!(escape_for_log(b"abcdef", 3), "abc...");
        let token = "FQo+/tok=en";
        let text = "a FQo+/tok=en b FQo%2B%2Ftok%3Den c FQo%2b%2ftok%3den d";
        assert_eq!(
            redact(text, token),
            "a <redacted> b <redacted> c <redacted> d"
        );
        assert_eq!(redact("x", ""), "x");
    }
}
