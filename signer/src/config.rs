//! Parsing and checking of configuration values, shared by the nginx module
//! and its tests. Messages never echo a secret value.

use base64::Engine;
use zeroize::Zeroizing;

use crate::{Scope, SigningKey, SIGNING_KEY_LEN};

/// The endpoint used when none is configured.
pub const DEFAULT_ENDPOINT: &str = "s3.amazonaws.com";

/// The S3 endpoint for keys of `region` when `aws_endpoint` is not set,
/// and the other names AWS gives the same service there, which the bucket
/// check accepts as the endpoint too. The endpoint is
/// [`DEFAULT_ENDPOINT`] (the C module's default) for `us-east-1` or no
/// region, else the region's own (`s3.REGION.amazonaws.com`, `.com.cn` in
/// China), where path-style requests and new regions work. The other names
/// are the regional, global (not in China), dual-stack and dashed
/// (`s3-REGION.amazonaws.com`) forms.
pub fn default_s3_endpoints(region: &str) -> (String, Vec<String>) {
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return (DEFAULT_ENDPOINT.to_owned(), Vec::new());
    }
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let regional = format!("s3.{region}.{domain}");
    let mut others = vec![
        format!("s3.dualstack.{region}.{domain}"),
        format!("s3-{region}.{domain}"),
    ];
    if domain == "amazonaws.com.cn" {
        return (regional, others);
    }
    if region == "us-east-1" {
        others.insert(0, regional);
        (DEFAULT_ENDPOINT.to_owned(), others)
    } else {
        others.insert(0, DEFAULT_ENDPOINT.to_owned());
        (regional, others)
    }
}

/// An access key id: letters and digits only.
pub fn parse_access_key(v: &[u8]) -> Result<String, String> {
    if v.is_empty() {
        return Err("the access key is empty".into());
    }
    if !v.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err("an access key holds only letters and digits".into());
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// A credential scope, see [`Scope::parse`]. An invalid value is not
/// echoed: it may be a key written in the wrong place (two columns of a key
/// file swapped, or the wrong directive).
pub fn parse_scope(v: &[u8]) -> Result<Scope, String> {
    let text = std::str::from_utf8(v).map_err(|_| "the scope is not UTF-8".to_string())?;
    Scope::parse(text).map_err(|e| format!("invalid key scope: it {e}"))
}

/// Base64 of a 32-byte derived signing key.
pub fn parse_signing_key(v: &[u8]) -> Result<SigningKey, String> {
    // Never echo the value: it is a secret. The decoded bytes are wiped.
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| "the value is not valid base64".to_string())?,
    );
    let mut key = [0u8; SIGNING_KEY_LEN];
    if raw.len() != SIGNING_KEY_LEN {
        return Err(format!(
            "the value must decode to a {SIGNING_KEY_LEN}-byte signing key, not {} bytes",
            raw.len()
        ));
    }
    key.copy_from_slice(&raw);
    let out = SigningKey::from_bytes(key);
    zeroize::Zeroize::zeroize(&mut key);
    Ok(out)
}

/// An `aws_s3_index` value: the name of the index object (one path
/// segment, visible ASCII, without `/`, `?`, `#` or `%`), or `off` (the
/// empty string).
pub fn parse_index_name(v: &[u8]) -> Result<String, String> {
    if v == b"off" {
        return Ok(String::new());
    }
    let ok = |b: &u8| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'%' | b'\\');
    if v.is_empty() || v.len() > 255 || v == b"." || v == b".." || !v.iter().all(ok) {
        return Err(
            "the index is one name of 1 to 255 visible ASCII characters without / ? # % \\ \
             (not . or ..), or off"
                .into(),
        );
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// `aws_s3_autoindex_format html | json`.
pub fn parse_autoindex_format(v: &[u8]) -> Result<crate::listing::Format, String> {
    match v {
        b"html" => Ok(crate::listing::Format::Html),
        b"json" => Ok(crate::listing::Format::Json),
        _ => Err("the format is html or json".into()),
    }
}

/// `aws_s3_autoindex_max_entries`: 1 to 1000000.
pub fn parse_autoindex_max(v: &[u8]) -> Result<usize, String> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| "the most entries is a number from 1 to 1000000".into())
}

/// A bucket name.
pub fn parse_bucket(v: &[u8]) -> Result<String, String> {
    let ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    if v.is_empty() || v.len() > 255 || !v.iter().all(ok) {
        return Err("a bucket name is 1 to 255 of the characters a-z A-Z 0-9 . - _".into());
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// `host` or `host:port`.
pub fn parse_endpoint(v: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(v).map_err(|_| "the endpoint is not UTF-8".to_string())?;
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (text, None),
    };
    let host_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    if host.is_empty() || !host.chars().all(host_ok) {
        return Err(format!(
            "invalid endpoint \"{text}\": expected host or host:port"
        ));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("invalid port in endpoint \"{text}\""));
        }
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_end_at_the_midnight_after_their_last_day() {
        let key = |d: &str| {
            let scope = Scope::parse(&format!("{d}/us-east-1/s3/aws4_request")).unwrap();
            let k = crate::derive_signing_key(b"s", &scope);
            (scope, k)
        };
        // 2026-12-03T00:00:00Z
        assert_eq!(
            keys_end(&[key("20261201"), key("20261202")]),
            Some(1_796_256_000)
        );
        assert_eq!(
            keys_end(&[key("20261202"), key("20261201")]),
            Some(1_796_256_000)
        );
        assert_eq!(keys_end(&[]), None);
    }

    #[test]
    fn index_names() {
        assert_eq!(parse_index_name(b"index.html").unwrap(), "index.html");
        assert_eq!(parse_index_name(b"_index~1.htm").unwrap(), "_index~1.htm");
        assert_eq!(parse_index_name(b"off").unwrap(), "");
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a/b",
            b"a?b",
            b"a#b",
            b"a%2Fb",
            b"a b",
            b"a\\b",
            b"\xc3\xa9",
        ] {
            assert!(parse_index_name(bad).is_err(), "{bad:?}");
        }
        assert!(parse_index_name(&[b'a'; 256]).is_err());
    }

    #[test]
    fn signing_key() {
        assert!(parse_signing_key(b"k4EntTNoEN22pdavRF/KyeNx+e1BjtOGsCKu2CkBvnU=").is_ok());
        assert!(parse_signing_key(b"not base64!")
            .unwrap_err()
            .contains("base64"));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 31]);
        assert!(parse_signing_key(short.as_bytes())
            .unwrap_err()
            .contains("31 bytes"));
    }

    #[test]
    fn default_endpoints_follow_the_region() {
        let (ep, others) = default_s3_endpoints("eu-west-1");
        assert_eq!(ep, "s3.eu-west-1.amazonaws.com");
        assert_eq!(
            others,
            [
                "s3.amazonaws.com",
                "s3.dualstack.eu-west-1.amazonaws.com",
                "s3-eu-west-1.amazonaws.com"
            ]
        );
        let (ep, others) = default_s3_endpoints("us-east-1");
        assert_eq!(ep, DEFAULT_ENDPOINT);
        assert_eq!(
            others,
            [
                "s3.us-east-1.amazonaws.com",
                "s3.dualstack.us-east-1.amazonaws.com",
                "s3-us-east-1.amazonaws.com"
            ]
        );
        let (ep, others) = default_s3_endpoints("cn-north-1");
        assert_eq!(ep, "s3.cn-north-1.amazonaws.com.cn");
        assert!(others.iter().all(|o| o.ends_with(".amazonaws.com.cn")));
        for odd in ["", "EU-WEST-1", "eu west", "eu.west-1", "eu/x"] {
            assert_eq!(
                default_s3_endpoints(odd),
                (DEFAULT_ENDPOINT.to_owned(), vec![])
            );
        }
    }

    #[test]
    fn endpoint() {
        assert!(parse_endpoint(b"s3.amazonaws.com").is_ok());
        assert!(parse_endpoint(b"127.0.0.1:9000").is_ok());
        assert!(parse_endpoint(b"host:0").is_err());
        assert!(parse_endpoint(b"host:http").is_err());
        assert!(parse_endpoint(b"a b").is_err());
    }

    #[test]
    fn access_key_and_bucket() {
        assert!(parse_access_key(b"AKIDEXAMPLE").is_ok());
        assert!(parse_access_key(b"").is_err());
        assert!(parse_access_key(b"AK/ID").is_err());
        assert!(parse_bucket(b"my.bucket-1").is_ok());
        assert!(parse_bucket(b"bad/bucket").is_err());
    }
}

/// Whole UTC days of coverage a key set has after `today` (`YYYYMMDD`):
/// negative when even `today` is past its last key.
pub fn days_left(keys: &[ScopedKey], today: &str) -> Option<i64> {
    let last = keys.iter().map(|(s, _)| s.date()).max()?;
    let p = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok();
    Some((p(last)? - p(today)?).num_days())
}

/// When a key set's coverage ends: the Unix time of the midnight (UTC)
/// after its last key's day.
pub fn keys_end(keys: &[ScopedKey]) -> Option<i64> {
    let last = keys.iter().map(|(s, _)| s.date()).max()?;
    let day = chrono::NaiveDate::parse_from_str(last, "%Y%m%d").ok()?;
    Some(day.succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// One line of a key file: a scope and the key derived for it.
pub type ScopedKey = (Scope, SigningKey);

/// Why a key file was refused: the 1-based line and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFileError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong; never contains key material.
    pub message: String,
}

/// Parses a key file: lines `SCOPE BASE64KEY`; blank lines and lines
/// starting with `#` are ignored. Every scope must be valid, every key
/// 32 bytes, every date unique, and all lines share one region and service.
/// The keys come back sorted by date.
pub fn parse_key_file(text: &str) -> Result<Vec<ScopedKey>, KeyFileError> {
    let err = |line: usize, message: String| KeyFileError { line, message };
    let mut keys: Vec<ScopedKey> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(scope), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(err(n, "expected \"SCOPE BASE64KEY\"".into()));
        };
        let scope = parse_scope(scope.as_bytes()).map_err(|e| err(n, e))?;
        let key = parse_signing_key(key.as_bytes()).map_err(|e| err(n, e))?;
        if let Some((first, _)) = keys.first() {
            if first.region() != scope.region() || first.service() != scope.service() {
                return Err(err(
                    n,
                    format!(
                        "scope {} does not match the region and service of the first line ({}/{})",
                        scope.as_str(),
                        first.region(),
                        first.service()
                    ),
                ));
            }
        }
        if keys.iter().any(|(s, _)| s.date() == scope.date()) {
            return Err(err(n, format!("a second key for {}", scope.date())));
        }
        keys.push((scope, key));
    }
    if keys.is_empty() {
        return Err(err(0, "no keys in the file".into()));
    }
    keys.sort_by(|a, b| a.0.date().cmp(b.0.date()));
    Ok(keys)
}

#[cfg(test)]
mod key_file_tests {
    use super::*;

    const K: &str = "L4vRLWAO92X5L3Sqk5QydUSdB0nC9+1wfqLMOKLbRp4=";

    #[test]
    fn parses_and_sorts() {
        let text = format!(
            "# keys\n\n20160903/us-east-1/s3/aws4_request {K}\n  20160902/us-east-1/s3/aws4_request   {K}  \n"
        );
        let keys = parse_key_file(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].0.date(), "20160902");
    }

    #[test]
    fn errors_name_the_line() {
        let bad =
            format!("20160902/us-east-1/s3/aws4_request {K}\n20160903/us-east-1/s3/aws4_request\n");
        assert_eq!(parse_key_file(&bad).unwrap_err().line, 2);
        let dup = format!(
            "20160902/us-east-1/s3/aws4_request {K}\n20160902/us-east-1/s3/aws4_request {K}\n"
        );
        assert_eq!(parse_key_file(&dup).unwrap_err().line, 2);
        let region = format!(
            "20160902/us-east-1/s3/aws4_request {K}\n20160903/eu-west-1/s3/aws4_request {K}\n"
        );
        assert_eq!(parse_key_file(&region).unwrap_err().line, 2);
        let key = "20160902/us-east-1/s3/aws4_request AAAA\n";
        let e = parse_key_file(key).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.message.contains("AAAA"));
        assert_eq!(parse_key_file("# nothing\n").unwrap_err().line, 0);
        // the two columns swapped: the key is in the scope's place
        let swapped = format!("{K} 20160902/us-east-1/s3/aws4_request\n");
        let e = parse_key_file(&swapped).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.message.contains(K), "{}", e.message);
        assert!(!e.message.contains("L4vRLWAO92X5"), "{}", e.message);
    }
}
