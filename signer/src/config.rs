//! Parsing and checking of configuration values, shared by the nginx module
//! and its tests. Messages never echo a secret value.

use base64::Engine;

use crate::{Scope, SigningKey, SIGNING_KEY_LEN};

/// The endpoint used when none is configured.
pub const DEFAULT_ENDPOINT: &str = "s3.amazonaws.com";

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

/// A credential scope, see [`Scope::parse`].
pub fn parse_scope(v: &[u8]) -> Result<Scope, String> {
    let text = std::str::from_utf8(v).map_err(|_| "the scope is not UTF-8".to_string())?;
    Scope::parse(text).map_err(|e| format!("invalid key scope \"{text}\": it {e}"))
}

/// Base64 of a 32-byte derived signing key.
pub fn parse_signing_key(v: &[u8]) -> Result<SigningKey, String> {
    // Never echo the value: it is a secret.
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v)
        .map_err(|_| "the value is not valid base64".to_string())?;
    let len = raw.len();
    raw.try_into().map_err(|_| {
        format!("the value must decode to a {SIGNING_KEY_LEN}-byte signing key, not {len} bytes")
    })
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
