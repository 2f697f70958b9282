//! Listing pages of a bucket "directory" (`aws_s3_autoindex`): the
//! ListObjectsV2 request that replaces a directory GET, a streaming reader
//! of S3's XML answer, and the HTML and JSON pages written from it.
//!
//! Everything here is pure: the module feeds the reader the answer's bytes
//! as they arrive and sends what the writers produce.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::policy::Checked;
use crate::{decode_into, encode_into};

/// Most keys S3 returns in one ListObjectsV2 answer.
pub const PAGE_KEYS: usize = 1000;

/// Most bytes of one element of the answer (a `Contents` with a 1024-byte
/// key, escaped, is a few KiB): past that the answer is refused rather
/// than buffered.
pub const MAX_PENDING: usize = 64 * 1024;

/// When the checked head asks for a "directory" (an S3 key ending in `/`,
/// or the bucket itself), writes into `out` the same head asking S3 for
/// its listing instead, `GET /?continuation-token=…&delimiter=%2F&
/// list-type=2&max-keys=…&prefix=…` (at `/bucket/` in path style), with
/// the header lines kept (but `Range`, conditions and `Accept-Encoding`)
/// and what followed
/// the head, and returns the
/// prefix listed (the key, decoded). `None` for any other key: the head is
/// sent as it is.
pub fn list_head(
    checked: &Checked<'_>,
    token: Option<&[u8]>,
    max_keys: usize,
    out: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    let path = checked.path.as_slice();
    let start = checked.key_start.min(path.len());
    let key = &path[start..];
    if !(key.is_empty() || key.ends_with(b"/")) {
        return None;
    }
    let mut prefix = Vec::with_capacity(key.len());
    decode_into(key, &mut prefix);
    out.clear();
    out.extend_from_slice(checked.head.method);
    out.push(b' ');
    let root: &[u8] = if start == 0 { b"/" } else { &path[..start] };
    out.extend_from_slice(root);
    out.push(b'?');
    list_query(&prefix, token, max_keys, out);
    out.extend_from_slice(checked.head.version);
    out.extend_from_slice(b"\r\n");
    for (name, _, line) in checked.head.headers() {
        // a listing is whole and plain: no range of it, no condition on
        // it, no compression
        let conditional = [
            &b"range"[..],
            b"accept-encoding",
            b"if-range",
            b"if-match",
            b"if-none-match",
            b"if-modified-since",
            b"if-unmodified-since",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
        if !conditional {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(checked.head.after());
    Some(prefix)
}

/// Appends the ListObjectsV2 query for `prefix`, in canonical order.
pub fn list_query(prefix: &[u8], token: Option<&[u8]>, max_keys: usize, out: &mut Vec<u8>) {
    if let Some(t) = token {
        out.extend_from_slice(b"continuation-token=");
        encode_into(t, false, out);
        out.push(b'&');
    }
    out.extend_from_slice(b"delimiter=%2F&list-type=2&max-keys=");
    out.extend_from_slice(max_keys.clamp(1, PAGE_KEYS).to_string().as_bytes());
    out.extend_from_slice(b"&prefix=");
    encode_into(prefix, false, out);
}

/// The value of the first parameter `name` of a query, decoded (`+` as a
/// space).
pub fn query_value(query: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    for (k, v, _) in crate::query_parts(query) {
        if k == name {
            let plus: Vec<u8> = v
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            let mut out = Vec::with_capacity(v.len());
            decode_into(&plus, &mut out);
            return Some(out);
        }
    }
    None
}

/// One entry of a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The whole key (of an object) or common prefix (of a "directory",
    /// ending in `/`), decoded.
    pub key: &'a [u8],
    /// A common prefix.
    pub dir: bool,
    /// The object's size.
    pub size: u64,
    /// The object's `LastModified`, as S3 wrote it.
    pub modified: &'a [u8],
    /// The answer's `Prefix`, when it came before the entry.
    pub prefix: Option<&'a [u8]>,
}

/// Why an answer is not a listing that can be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListError {
    /// Not well-formed XML, or cut short.
    Xml(String),
    /// Another document than `ListBucketResult`.
    NotAListing,
    /// An element longer than [`MAX_PENDING`].
    TooLong,
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::Xml(m) => write!(f, "the listing is not well-formed XML: {m}"),
            ListError::NotAListing => f.write_str("the answer is not a ListBucketResult"),
            ListError::TooLong => {
                write!(f, "an element of the listing is over {MAX_PENDING} bytes")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Root {
    #[default]
    Before,
    Inside,
    After,
}

/// A streaming reader of a ListObjectsV2 answer: bytes go in as they
/// arrive, each entry comes out once its element is complete. Only the
/// element being read is kept, so memory stays bounded whatever the size
/// of the answer.
#[derive(Debug, Default)]
pub struct ListReader {
    pending: Vec<u8>,
    root: Root,
    /// `IsTruncated` was `true`.
    pub truncated: bool,
    /// `NextContinuationToken`, decoded.
    pub next_token: Option<Vec<u8>>,
    /// `ContinuationToken`: the token of the request, echoed.
    pub token: Option<Vec<u8>>,
    /// `Prefix`: the prefix of the request, echoed.
    pub prefix: Option<Vec<u8>>,
    // the element being read
    field: Vec<u8>,
    text: Vec<u8>,
    key: Vec<u8>,
    size: u64,
    modified: Vec<u8>,
}

/// What XML allows after the root element: white space, comments and
/// processing instructions.
fn is_epilog(mut rest: &[u8]) -> bool {
    loop {
        rest = rest.trim_ascii_start();
        let (open, close): (&[u8], &[u8]) = if rest.starts_with(b"<!--") {
            (b"<!--", b"-->")
        } else if rest.starts_with(b"<?") {
            (b"<?", b"?>")
        } else {
            return rest.is_empty();
        };
        match memchr::memmem::find(&rest[open.len()..], close) {
            Some(i) => rest = &rest[open.len() + i + close.len()..],
            None => return false,
        }
    }
}

impl ListReader {
    /// Reads `data`, the next bytes of the answer; `emit` gets every entry
    /// completed by them.
    pub fn feed(&mut self, data: &[u8], emit: &mut dyn FnMut(Entry<'_>)) -> Result<(), ListError> {
        if self.pending.is_empty() {
            // most calls: parse the new bytes where they are
            let done = self.parse(data, false, emit)?;
            self.pending.extend_from_slice(&data[done..]);
        } else {
            self.pending.extend_from_slice(data);
            let pending = std::mem::take(&mut self.pending);
            let done = self.parse(&pending, false, emit);
            self.pending = pending;
            let done = done?;
            self.pending.drain(..done);
        }
        if self.pending.len() > MAX_PENDING {
            return Err(ListError::TooLong);
        }
        Ok(())
    }

    /// The answer is complete: reads what is left, which must close the
    /// listing.
    pub fn finish(&mut self, emit: &mut dyn FnMut(Entry<'_>)) -> Result<(), ListError> {
        let pending = std::mem::take(&mut self.pending);
        let done = self.parse(&pending, true, emit)?;
        if self.root != Root::After || !is_epilog(&pending[done..]) {
            return Err(ListError::Xml("the answer ends before the listing".into()));
        }
        Ok(())
    }

    /// Parses `data` from its start, applying each complete top-level
    /// element; returns how many bytes were applied (the rest is parsed
    /// again with more data, unless `last`).
    fn parse(
        &mut self,
        data: &[u8],
        last: bool,
        emit: &mut dyn FnMut(Entry<'_>),
    ) -> Result<usize, ListError> {
        if self.root == Root::After {
            return Ok(0);
        }
        // a UTF-8 byte order mark before the declaration (which quick-xml
        // skips without counting it in its positions)
        let skip = if self.root == Root::Before && data.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let mut reader = Reader::from_reader(&data[skip..]);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        let mut depth: usize = if self.root == Root::Inside { 1 } else { 0 };
        let mut done = 0;
        loop {
            let event = match reader.read_event() {
                Ok(e) => e,
                Err(e) if last => return Err(ListError::Xml(e.to_string())),
                Err(_) => return Ok(done),
            };
            let pos = usize::try_from(reader.buffer_position())
                .map_or(data.len(), |p| (p + skip).min(data.len()));
            match event {
                Event::Eof => return Ok(done),
                Event::Start(e) => {
                    depth += 1;
                    let name = e.local_name();
                    match depth {
                        1 if name.as_ref() == b"ListBucketResult" => {
                            self.root = Root::Inside;
                            done = pos;
                        }
                        1 => return Err(ListError::NotAListing),
                        2 => {
                            self.text.clear();
                            self.key.clear();
                            self.modified.clear();
                            self.size = 0;
                        }
                        3 => {
                            self.field.clear();
                            self.field.extend_from_slice(name.as_ref());
                            self.text.clear();
                        }
                        _ => {}
                    }
                }
                Event::Empty(e) => match depth {
                    0 if e.local_name().as_ref() == b"ListBucketResult" => {
                        self.root = Root::After;
                        return Ok(pos);
                    }
                    0 => return Err(ListError::NotAListing),
                    1 => {
                        self.text.clear();
                        self.leaf(e.local_name().as_ref());
                        done = pos;
                    }
                    _ => {}
                },
                Event::Text(t) if depth >= 2 => self.text.extend_from_slice(t.as_ref()),
                Event::CData(t) if depth >= 2 => self.text.extend_from_slice(t.as_ref()),
                Event::GeneralRef(r) if depth >= 2 => {
                    let c = crate::sts::entity(r.as_ref())
                        .ok_or_else(|| ListError::Xml("an unknown entity".into()))?;
                    let mut b = [0u8; 4];
                    self.text
                        .extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
                Event::End(e) => {
                    match depth {
                        0 => return Err(ListError::Xml("an end tag outside the listing".into())),
                        1 => {
                            self.root = Root::After;
                            return Ok(pos);
                        }
                        2 => {
                            let name = e.local_name();
                            match name.as_ref() {
                                b"Contents" => emit(Entry {
                                    key: &self.key,
                                    dir: false,
                                    size: self.size,
                                    modified: &self.modified,
                                    prefix: self.prefix.as_deref(),
                                }),
                                b"CommonPrefixes" => emit(Entry {
                                    key: &self.key,
                                    dir: true,
                                    size: 0,
                                    modified: b"",
                                    prefix: self.prefix.as_deref(),
                                }),
                                other => {
                                    let other = other.to_vec();
                                    self.leaf(&other);
                                }
                            }
                            done = pos;
                        }
                        3 => {
                            match self.field.as_slice() {
                                b"Key" | b"Prefix" => {
                                    std::mem::swap(&mut self.key, &mut self.text);
                                }
                                b"Size" => {
                                    self.size = std::str::from_utf8(&self.text)
                                        .ok()
                                        .and_then(|s| s.trim().parse().ok())
                                        .ok_or_else(|| ListError::Xml("a bad Size".into()))?;
                                }
                                b"LastModified" => {
                                    std::mem::swap(&mut self.modified, &mut self.text);
                                }
                                _ => {}
                            }
                            self.text.clear();
                        }
                        _ => {}
                    }
                    depth -= 1;
                }
                _ => {
                    if depth == 0 {
                        done = pos;
                    }
                }
            }
        }
    }

    /// A top-level leaf element and its text.
    fn leaf(&mut self, name: &[u8]) {
        let value = std::mem::take(&mut self.text);
        match name {
            b"IsTruncated" => self.truncated = value.trim_ascii() == b"true",
            b"NextContinuationToken" => self.next_token = Some(value),
            b"ContinuationToken" => self.token = Some(value),
            b"Prefix" => self.prefix = Some(value),
            _ => {}
        }
    }
}

/// The two page formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// As nginx's `autoindex`.
    Html,
    /// As nginx's `autoindex_format json`.
    Json,
}

/// The name an entry is listed under, relative to the listed `prefix`:
/// `None` for an entry that cannot be listed with a link that fetches it
/// (the prefix's own "folder" object, an empty segment, `.` or `..`, a key
/// outside the prefix).
pub fn entry_name<'a>(prefix: &[u8], entry: &Entry<'a>) -> Option<&'a [u8]> {
    let rest = entry.key.strip_prefix(prefix)?;
    let name = if entry.dir {
        rest.strip_suffix(b"/")?
    } else {
        rest
    };
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return None;
    }
    Some(name)
}

/// Appends the start of a page listing `uri` (the request's decoded URI).
pub fn write_head(format: Format, uri: &[u8], out: &mut Vec<u8>) {
    match format {
        Format::Html => {
            out.extend_from_slice(b"<html>\r\n<head><title>Index of ");
            escape_html(uri, out);
            out.extend_from_slice(b"</title></head>\r\n<body>\r\n<h1>Index of ");
            escape_html(uri, out);
            out.extend_from_slice(b"</h1><hr><pre><a href=\"../\">../</a>\r\n");
        }
        Format::Json => out.extend_from_slice(b"["),
    }
}

/// Appends one entry named `name` (see [`entry_name`]); `first` for the
/// first entry of the page.
pub fn write_entry(format: Format, first: bool, name: &[u8], entry: &Entry<'_>, out: &mut Vec<u8>) {
    let time = Time::parse(entry.modified);
    match format {
        Format::Html => {
            out.extend_from_slice(b"<a href=\"");
            encode_link(name, out);
            if entry.dir {
                out.push(b'/');
            }
            out.extend_from_slice(b"\">");
            escape_html(name, out);
            if entry.dir {
                out.push(b'/');
            }
            out.extend_from_slice(b"</a>");
            let width = String::from_utf8_lossy(name).chars().count() + usize::from(entry.dir);
            out.resize(out.len() + 51usize.saturating_sub(width).max(1), b' ');
            let date = time.map_or_else(|| "-".to_owned(), |t| t.html());
            out.extend_from_slice(format!("{date:<17} ").as_bytes());
            let size = if entry.dir {
                "-".to_owned()
            } else {
                entry.size.to_string()
            };
            out.extend_from_slice(format!("{size:>19}\r\n").as_bytes());
        }
        Format::Json => {
            out.extend_from_slice(if first { b"\r\n" } else { b",\r\n" });
            out.extend_from_slice(b"{ \"name\":\"");
            escape_json(name, out);
            out.extend_from_slice(if entry.dir {
                b"\", \"type\":\"directory\""
            } else {
                b"\", \"type\":\"file\""
            });
            if let Some(t) = time {
                out.extend_from_slice(b", \"mtime\":\"");
                out.extend_from_slice(t.http().as_bytes());
                out.push(b'"');
            }
            if !entry.dir {
                out.extend_from_slice(format!(", \"size\":{}", entry.size).as_bytes());
            }
            out.extend_from_slice(b" }");
        }
    }
}

/// Appends the end of a page; `cut` is the number of entries listed when
/// more were left out (`aws_s3_autoindex_max_entries`).
pub fn write_tail(format: Format, cut: Option<usize>, out: &mut Vec<u8>) {
    match format {
        Format::Html => {
            out.extend_from_slice(b"</pre><hr>");
            if let Some(n) = cut {
                out.extend_from_slice(
                    format!("<p>Only the first {n} entries are listed.</p>").as_bytes(),
                );
            }
            out.extend_from_slice(b"</body>\r\n</html>\r\n");
        }
        Format::Json => out.extend_from_slice(b"\r\n]\r\n"),
    }
}

/// A link to `name` relative to the listing: every byte outside the
/// unreserved set percent-encoded, so that nothing in a key (`:`, `?`,
/// `#`, `%`, `+`, a space, quotes, `<`) is read as anything but itself.
pub fn encode_link(name: &[u8], out: &mut Vec<u8>) {
    encode_into(name, false, out);
}

/// Text for HTML content and attribute values.
pub fn escape_html(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            0..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f => out.extend_from_slice(b"&#xFFFD;"),
            _ => out.push(b),
        }
    }
}

/// Text for a JSON string.
pub fn escape_json(text: &[u8], out: &mut Vec<u8>) {
    // a name that is not UTF-8 (S3 keys are; a server's answer may not be)
    // keeps the JSON valid, with U+FFFD for what is not
    let text = String::from_utf8_lossy(text);
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            // "</script>" stays inert in a page that embeds the JSON
            b'<' => out.extend_from_slice(b"\\u003c"),
            _ => out.push(b),
        }
    }
}

/// A `LastModified` time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Time {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Time {
    /// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
    fn parse(s: &[u8]) -> Option<Time> {
        let s = std::str::from_utf8(s).ok()?;
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
        if s.len() < 19 || s.as_bytes()[4] != b'-' || s.as_bytes()[10] != b'T' {
            return None;
        }
        let t = Time {
            year: i32::try_from(num(0..4)?).ok()?,
            month: num(5..7)?,
            day: num(8..10)?,
            hour: num(11..13)?,
            minute: num(14..16)?,
            second: num(17..19)?,
        };
        chrono::NaiveDate::from_ymd_opt(t.year, t.month, t.day)?;
        (t.hour < 24 && t.minute < 60 && t.second < 61).then_some(t)
    }

    /// `02-Dec-2026 10:11`, as nginx's autoindex.
    fn html(&self) -> String {
        format!(
            "{:02}-{}-{} {:02}:{:02}",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute
        )
    }

    /// `Wed, 02 Dec 2026 10:11:12 GMT`, as nginx's JSON autoindex.
    fn http(&self) -> String {
        use chrono::Datelike;
        let wd =
            chrono::NaiveDate::from_ymd_opt(self.year, self.month, self.day).map_or("Mon", |d| {
                match d.weekday() {
                    chrono::Weekday::Mon => "Mon",
                    chrono::Weekday::Tue => "Tue",
                    chrono::Weekday::Wed => "Wed",
                    chrono::Weekday::Thu => "Thu",
                    chrono::Weekday::Fri => "Fri",
                    chrono::Weekday::Sat => "Sat",
                    chrono::Weekday::Sun => "Sun",
                }
            });
        format!(
            "{wd}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{self, Addressing, Client, Policy, QueryPolicy, S3Policy};
    use crate::wire::Workspace;
    use crate::PathRules;

    #[test]
    fn json_names_stay_json() {
        let mut out = Vec::new();
        escape_json(b"a\"b\\c</script>\x01\xff\xfe\xc3\xa9", &mut out);
        let text = String::from_utf8(out).expect("UTF-8");
        assert_eq!(
            text,
            "a\\\"b\\\\c\\u003c/script>\\u0001\u{fffd}\u{fffd}\u{e9}"
        );
        let parsed: String = serde_json::from_str(&format!("\"{text}\"")).expect("JSON");
        assert_eq!(parsed, "a\"b\\c</script>\u{1}\u{fffd}\u{fffd}\u{e9}");
    }

    fn policy(buckets: &[String], addressing: Addressing) -> Policy<'_> {
        Policy {
            methods: policy::MethodSet::ALL,
            rules: PathRules::S3,
            query: QueryPolicy::All,
            s3: Some(S3Policy {
                buckets,
                addressing: Some(addressing),
                endpoint: "s3.amazonaws.com",
                also: &[],
                listing: true,
            }),
            forward_amz: &[],
        }
    }

    fn rewrite(
        head: &[u8],
        addressing: Addressing,
        token: Option<&[u8]>,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let buckets = vec!["bkt".to_owned()];
        let p = policy(&buckets, addressing);
        let mut ws = Workspace::default();
        let client = Client::default();
        let checked = policy::check_in(head, &p, &client, &mut ws).expect("checked");
        let mut out = Vec::new();
        let prefix = list_head(&checked, token, 1000, &mut out)?;
        Some((out, prefix))
    }

    #[test]
    fn directory_heads_become_list_requests() {
        let head = b"GET /docs/a%20b+c/ HTTP/1.1\r\nHost: bkt.s3.amazonaws.com\r\nX: y\r\nRange: bytes=0-1\r\nIf-None-Match: \"x\"\r\nAccept-Encoding: gzip\r\n\r\n";
        let (out, prefix) = rewrite(head, Addressing::Virtual, None).unwrap();
        assert_eq!(prefix, b"docs/a b+c/");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /?delimiter=%2F&list-type=2&max-keys=1000&prefix=docs%2Fa%20b%2Bc%2F HTTP/1.1\r\nHost: bkt.s3.amazonaws.com\r\nX: y\r\n\r\n"
        );
        let head = b"HEAD /bkt/x/?v=1 HTTP/1.0\r\nHost: s3.amazonaws.com\r\n\r\n";
        let (out, prefix) = rewrite(head, Addressing::Path, Some(b"t+/=")).unwrap();
        assert_eq!(prefix, b"x/");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HEAD /bkt/?continuation-token=t%2B%2F%3D&delimiter=%2F&list-type=2&max-keys=1000&prefix=x%2F HTTP/1.0\r\nHost: s3.amazonaws.com\r\n\r\n"
        );
        // the bucket's root
        let head = b"GET /bkt HTTP/1.1\r\nHost: s3.amazonaws.com\r\n\r\n";
        let (out, prefix) = rewrite(head, Addressing::Path, None).unwrap();
        assert!(prefix.is_empty());
        assert!(out.starts_with(b"GET /bkt?delimiter") || out.starts_with(b"GET /bkt/?delimiter"));
        let head = b"GET / HTTP/1.1\r\nHost: bkt.s3.amazonaws.com\r\n\r\n";
        let (out, _) = rewrite(head, Addressing::Virtual, None).unwrap();
        assert!(
            out.starts_with(b"GET /?delimiter=%2F&list-type=2&max-keys=1000&prefix= HTTP/1.1\r\n")
        );
        // an object is not listed
        let head = b"GET /docs/a HTTP/1.1\r\nHost: bkt.s3.amazonaws.com\r\n\r\n";
        assert!(rewrite(head, Addressing::Virtual, None).is_none());
    }

    #[test]
    fn query_values() {
        assert_eq!(
            query_value(b"a=1&continuation-token=x%2By+z", b"continuation-token").unwrap(),
            b"x+y z"
        );
        assert_eq!(query_value(b"a=1", b"b"), None);
    }

    const ANSWER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><Prefix>d/</Prefix><KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><ContinuationToken>abc</ContinuationToken><Contents><Key>d/&lt;script&gt;a&amp;b"&#39;.txt</Key><LastModified>2026-12-02T10:11:12.000Z</LastModified><ETag>"x"</ETag><Size>123</Size><Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>d/ünï +%.bin</Key><LastModified>2026-01-31T23:59:59Z</LastModified><Size>0</Size></Contents><CommonPrefixes><Prefix>d/sub dir/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>d/x&amp;y/</Prefix></CommonPrefixes><NextContinuationToken>n+x/=</NextContinuationToken></ListBucketResult>
"#;

    type Got = Vec<(Vec<u8>, bool, u64, Vec<u8>)>;

    fn read_in_pieces(xml: &[u8], piece: usize) -> (ListReader, Got) {
        let mut r = ListReader::default();
        let mut got = Vec::new();
        let mut emit =
            |e: Entry<'_>| got.push((e.key.to_vec(), e.dir, e.size, e.modified.to_vec()));
        for chunk in xml.chunks(piece.max(1)) {
            r.feed(chunk, &mut emit).unwrap();
        }
        r.finish(&mut emit).unwrap();
        (r, got)
    }

    #[test]
    fn reads_an_answer_in_any_pieces() {
        let (whole, expected) = read_in_pieces(ANSWER.as_bytes(), ANSWER.len());
        assert_eq!(expected.len(), 4);
        assert_eq!(expected[0].0, "d/<script>a&b\"'.txt".as_bytes());
        assert_eq!(expected[0].2, 123);
        assert_eq!(expected[0].3, b"2026-12-02T10:11:12.000Z");
        assert_eq!(expected[1].0, "d/ünï +%.bin".as_bytes());
        assert!(expected[2].1 && expected[2].0 == b"d/sub dir/");
        assert_eq!(expected[3].0, b"d/x&y/");
        assert!(whole.truncated);
        assert_eq!(whole.next_token.as_deref(), Some(&b"n+x/="[..]));
        assert_eq!(whole.token.as_deref(), Some(&b"abc"[..]));
        assert_eq!(whole.prefix.as_deref(), Some(&b"d/"[..]));
        for piece in 1..40 {
            let (r, got) = read_in_pieces(ANSWER.as_bytes(), piece);
            assert_eq!(got, expected, "pieces of {piece}");
            assert_eq!(r.next_token, whole.next_token);
            assert!(r.truncated);
        }
    }

    #[test]
    fn a_byte_order_mark_and_an_epilog_are_xml() {
        let mut with = b"\xEF\xBB\xBF".to_vec();
        with.extend_from_slice(ANSWER.as_bytes());
        with.extend_from_slice(b"\n<!-- served by x -->\n<?pi data?>\r\n");
        let (_, expected) = read_in_pieces(ANSWER.as_bytes(), ANSWER.len());
        for piece in [1, 2, 3, 4, 7, 64, with.len()] {
            let (r, got) = read_in_pieces(&with, piece);
            assert_eq!(got, expected, "pieces of {piece}");
            assert!(r.truncated);
        }
        assert!(is_epilog(b""));
        assert!(is_epilog(b" <!-- a --> <?b?> "));
        assert!(!is_epilog(b"<!-- open"));
        assert!(!is_epilog(b"<x/>"));
        assert!(!is_epilog(b"text"));
    }

    #[test]
    fn refuses_what_is_not_a_complete_listing() {
        let mut r = ListReader::default();
        let mut emit = |_: Entry<'_>| {};
        let err = r.feed(
            b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>",
            &mut emit,
        );
        assert_eq!(err, Err(ListError::NotAListing));
        let mut r = ListReader::default();
        r.feed(&ANSWER.as_bytes()[..300], &mut emit).unwrap();
        assert!(r.finish(&mut emit).is_err());
        let mut r = ListReader::default();
        let mut long = b"<ListBucketResult><Contents><Key>".to_vec();
        long.resize(MAX_PENDING + 100, b'a');
        assert_eq!(r.feed(&long, &mut emit), Err(ListError::TooLong));
        let mut r = ListReader::default();
        r.feed(
            b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
            &mut emit,
        )
        .unwrap();
        r.finish(&mut emit).unwrap();
        assert!(!r.truncated);
        let mut r = ListReader::default();
        r.feed(
            b"<ListBucketResult><Key>&bogus;</Key></ListBucketResult>",
            &mut emit,
        )
        .unwrap_err();
    }

    #[test]
    fn names_and_pages() {
        let e = |key: &'static [u8], dir| Entry {
            key,
            dir,
            size: 5,
            modified: b"2026-12-02T10:11:12.000Z",
            prefix: None,
        };
        assert_eq!(entry_name(b"d/", &e(b"d/a", false)), Some(&b"a"[..]));
        assert_eq!(entry_name(b"d/", &e(b"d/s/", true)), Some(&b"s"[..]));
        assert_eq!(entry_name(b"d/", &e(b"d/", false)), None);
        assert_eq!(entry_name(b"d/", &e(b"d//", true)), None);
        assert_eq!(entry_name(b"d/", &e(b"d/..", false)), None);
        assert_eq!(entry_name(b"d/", &e(b"x/a", false)), None);
        let mut out = Vec::new();
        write_head(Format::Html, b"/a<b>/", &mut out);
        write_entry(
            Format::Html,
            true,
            b"<script>\"&'+ %:",
            &e(b"", false),
            &mut out,
        );
        write_entry(Format::Html, false, b"s", &e(b"", true), &mut out);
        write_tail(Format::Html, Some(2), &mut out);
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("<title>Index of /a&lt;b&gt;/</title>"));
        assert!(html.contains(
            "<a href=\"%3Cscript%3E%22%26%27%2B%20%25%3A\">&lt;script&gt;&quot;&amp;&#39;+ %:</a>"
        ));
        assert!(html.contains("02-Dec-2026 10:11                   5\r\n"));
        assert!(html.contains("<a href=\"s/\">s/</a>"));
        assert!(html.contains("Only the first 2 entries"));
        let mut out = Vec::new();
        write_head(Format::Json, b"/", &mut out);
        write_entry(
            Format::Json,
            true,
            b"a\"\\</script>\x01",
            &e(b"", false),
            &mut out,
        );
        write_entry(Format::Json, false, b"s", &e(b"", true), &mut out);
        write_tail(Format::Json, None, &mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json[0]["name"], "a\"\\</script>\u{1}");
        assert_eq!(json[0]["size"], 5);
        assert_eq!(json[0]["mtime"], "Wed, 02 Dec 2026 10:11:12 GMT");
        assert_eq!(json[1]["type"], "directory");
        assert!(!String::from_utf8_lossy(&out).contains("</script>"));
    }
}
