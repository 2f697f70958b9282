//! Temporary credentials from the machine (EC2 instance metadata, the ECS
//! and EKS Pod Identity container endpoint): the parts that need no I/O.
//! What the services answer and how it is checked, the endpoints and their
//! rules, and when to refresh.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use zeroize::Zeroizing;

/// A set of temporary credentials, as fetched: the secret and the token are
/// wiped when dropped.
pub struct RoleCredentials {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: Zeroizing<String>,
    /// `Token`: sent as `x-amz-security-token`.
    pub token: Zeroizing<String>,
    /// `Expiration`, Unix seconds.
    pub expiration: i64,
}

impl fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RoleCredentials({}, expires {})",
            self.access_key_id, self.expiration
        )
    }
}

/// Why an answer of a credentials service was not accepted. The message
/// never holds a secret: only the service's own `Code`/`Message` and field
/// names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredError(pub String);

impl fmt::Display for CredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    code: Option<String>,
    message: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<Zeroizing<String>>,
    token: Option<Zeroizing<String>>,
    expiration: Option<String>,
}

/// Parses the JSON credentials of the instance metadata service or of the
/// container endpoint (the same shape; the first adds `Code`), as of
/// `now` (Unix seconds): `Code` must be `Success` when present, every
/// field must be there, the access key id letters and digits, and the
/// expiration in the future.
pub fn parse_credentials(body: &[u8], now: i64) -> Result<RoleCredentials, CredError> {
    // serde_json's message may quote a value: only its category is shown
    let a: Answer = serde_json::from_slice(body).map_err(|e| {
        CredError(format!(
            "the answer is not the credentials JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if let Some(code) = a.code.as_deref().filter(|c| *c != "Success") {
        let message = a.message.as_deref().unwrap_or("");
        return Err(CredError(format!(
            "the service answered Code \"{}\"{}{}",
            crate::policy::escape_for_log(code.as_bytes(), 64),
            if message.is_empty() { "" } else { ": " },
            crate::policy::escape_for_log(message.as_bytes(), 200)
        )));
    }
    let missing = |name: &str| CredError(format!("the answer has no {name}"));
    let access_key_id = a.access_key_id.ok_or_else(|| missing("AccessKeyId"))?;
    let secret_access_key = a
        .secret_access_key
        .ok_or_else(|| missing("SecretAccessKey"))?;
    let token = a.token.ok_or_else(|| missing("Token"))?;
    let expiration = a.expiration.ok_or_else(|| missing("Expiration"))?;
    if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CredError(
            "the AccessKeyId is not letters and digits".into(),
        ));
    }
    if secret_access_key.is_empty() || secret_access_key.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(CredError(
            "the SecretAccessKey is empty or not printable".into(),
        ));
    }
    if token.is_empty() || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(CredError("the Token is empty or not printable".into()));
    }
    let expiration = parse_rfc3339(&expiration).ok_or_else(|| {
        CredError(format!(
            "the Expiration \"{}\" is not a date",
            crate::policy::escape_for_log(expiration.as_bytes(), 64)
        ))
    })?;
    if expiration <= now {
        return Err(CredError(format!(
            "the credentials expired {} s ago ({})",
            now - expiration,
            format_utc(expiration)
        )));
    }
    Ok(RoleCredentials {
        access_key_id,
        secret_access_key,
        token,
        expiration,
    })
}

/// An RFC 3339 time (`2026-12-02T12:00:00Z`), as Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp())
}

/// Unix seconds as `2026-12-02T12:00:00Z`.
pub fn format_utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// When to fetch again, in Unix milliseconds, after credentials fetched at
/// `fetched_ms` that expire at `expiration_ms`: ahead of the expiration by a
/// quarter of their lifetime, at most five minutes, minus a jitter of up to
/// a tenth of the lifetime (at most a minute) drawn from `random`, so that
/// many nginx instances do not all ask at once; never sooner than a second
/// after the fetch.
pub fn refresh_at(fetched_ms: i64, expiration_ms: i64, random: u64) -> i64 {
    let lifetime = (expiration_ms - fetched_ms).max(0);
    let ahead = (lifetime / 4).min(300_000);
    let spread = (lifetime / 10).clamp(1, 60_000);
    let jitter = (random % spread as u64) as i64;
    (expiration_ms - ahead - jitter).max(fetched_ms + 1_000)
}

/// How long to wait before trying again after `failures` failed fetches in
/// a row: 1 s, 2 s, 4 s … up to a minute, plus up to a quarter more drawn
/// from `random`.
pub fn retry_after_ms(failures: u32, random: u64) -> i64 {
    let base = 1_000i64 << failures.min(6);
    let base = base.min(60_000);
    base + (random % (base as u64 / 4 + 1)) as i64
}

/// An `http://` endpoint given by IP address: what to connect to, the
/// `Host` to send and the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpEndpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header value.
    pub host: String,
    /// The path (and query), `/` at least.
    pub path: String,
}

/// Parses `http://ADDRESS[:PORT][/PATH]`. Only plain http to an IP address:
/// the metadata and container services are link-local or loopback, and no
/// name is resolved while credentials are fetched.
pub fn parse_http_endpoint(url: &str) -> Result<HttpEndpoint, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("\"{url}\" is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6
            .find(']')
            .ok_or_else(|| format!("\"{url}\": unterminated IPv6 address"))?;
        let port = &v6[end + 1..];
        (&v6[..end], port.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("\"{url}\": the host must be an IP address (no name is resolved)"))?;
    let port = port_and_path(port, 80, path, url)?;
    let host = if authority.is_empty() {
        return Err(format!("\"{url}\": no host"));
    } else {
        authority.to_owned()
    };
    Ok(HttpEndpoint {
        addr: SocketAddr::new(ip, port),
        host,
        path: path.to_owned(),
    })
}

/// An `http://` or `https://` URL: scheme, host (a name or an address),
/// port and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// `https`.
    pub tls: bool,
    /// The host as written (brackets kept for IPv6).
    pub host: String,
    /// The port (80 or 443 by default).
    pub port: u16,
    /// The path, `/` at least.
    pub path: String,
}

impl Url {
    /// The host as an address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }

    /// The `Host` header value: the host, and the port unless the scheme's.
    pub fn authority(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The port of a URL (`default` when not written; never 0), once its path
/// is checked for spaces and control bytes.
fn port_and_path(port: Option<&str>, default: u16, path: &str, url: &str) -> Result<u16, String> {
    if path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err(format!("\"{url}\": the path holds spaces or control bytes"));
    }
    match port {
        None => Ok(default),
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("\"{url}\": invalid port")),
    }
}

/// Parses `http[s]://HOST[:PORT][/PATH]`; HOST is a DNS name or an address.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("\"{url}\" is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| format!("\"{url}\": unterminated IPv6 address"))?;
        (&authority[..=end], authority[end + 1..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    if host.is_empty() || !host.chars().all(name_ok) {
        return Err(format!("\"{url}\": invalid host"));
    }
    let port = port_and_path(port, if tls { 443 } else { 80 }, path, url)?;
    Ok(Url {
        tls,
        host: host.to_ascii_lowercase(),
        port,
        path: path.to_owned(),
    })
}

/// True for the addresses AWS SDKs accept for a container credentials
/// endpoint given as a full URI over plain http: loopback, the ECS agent
/// (169.254.170.2) and EKS Pod Identity (169.254.170.23, fd00:ec2::23).
pub fn is_container_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.octets() == [169, 254, 170, 2]
                || v4.octets() == [169, 254, 170, 23]
        }
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6 == "fd00:ec2::23".parse::<std::net::Ipv6Addr>().unwrap_or(v6)
        }
    }
}

/// A short, stable name for a credentials source (FNV-1a of its
/// description), used to name its shared memory zone: the same source
/// finds the same zone after a reload.
pub fn source_id(description: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in description.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000; // 2026-05-28

    fn answer(expiration: &str) -> String {
        format!(
            r#"{{"Code":"Success","LastUpdated":"2026-05-28T00:00:00Z","Type":"AWS-HMAC",
"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"wJalr/K7MDENG+secret","Token":"IQoJb3Jp/token==",
"Expiration":"{expiration}"}}"#
        )
    }

    #[test]
    fn parses_imds_and_container_answers() {
        let c = parse_credentials(answer("2026-05-28T21:00:00Z").as_bytes(), NOW).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key.as_str(), "wJalr/K7MDENG+secret");
        assert_eq!(c.token.as_str(), "IQoJb3Jp/token==");
        assert_eq!(c.expiration, parse_rfc3339("2026-05-28T21:00:00Z").unwrap());
        // the container endpoint has no Code; offsets are accepted
        let ecs = r#"{"RoleArn":"arn:aws:iam::1:role/r","AccessKeyId":"ASIA2","SecretAccessKey":"s",
"Token":"t","Expiration":"2026-05-28T23:00:00+02:00"}"#;
        let c = parse_credentials(ecs.as_bytes(), NOW).unwrap();
        assert_eq!(c.expiration, parse_rfc3339("2026-05-28T21:00:00Z").unwrap());
        let shown = format!("{c:?}");
        assert!(shown.contains("ASIA2") && !shown.contains("Token") && !shown.contains("\"t\""));
    }

    #[test]
    fn refuses_what_is_not_good_credentials() {
        let err = |body: &str| parse_credentials(body.as_bytes(), NOW).unwrap_err().0;
        assert!(err("<html>oops</html>").contains("not the credentials JSON"));
        assert!(
            err(r#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no role"}"#)
                .contains("AssumeRoleUnauthorizedAccess")
        );
        assert!(err(&answer("2020-01-01T00:00:00Z")).contains("expired"));
        assert!(err(&answer("tomorrow")).contains("not a date"));
        assert!(err(
            r#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"2026-05-28T21:00:00Z"}"#
        )
        .contains("Token"));
        assert!(err(r#"{"AccessKeyId":"A B","SecretAccessKey":"s","Token":"t","Expiration":"2026-05-28T21:00:00Z"}"#)
            .contains("AccessKeyId"));
        // no message holds the secret or the token
        let e = err(
            r#"{"AccessKeyId":"A","SecretAccessKey":"sekrit","Token":"tok en","Expiration":"2026-05-28T21:00:00Z"}"#,
        );
        assert!(!e.contains("sekrit") && !e.contains("tok en"), "{e}");
    }

    #[test]
    fn refresh_schedule() {
        let hour = 3_600_000;
        // six hours of credentials: five minutes ahead, minus at most a minute
        for r in [0, 17, 59_999, u64::MAX] {
            let at = refresh_at(0, 6 * hour, r);
            assert!(
                (6 * hour - 360_000..=6 * hour - 300_000).contains(&at),
                "{at}"
            );
        }
        // 25 s of credentials: refreshed after 16.3 to 18.8 s
        for r in 0..100 {
            let at = refresh_at(1_000, 26_000, r * 7919);
            assert!((17_250..=19_750).contains(&at), "{at}");
        }
        // never in a loop
        assert_eq!(refresh_at(5_000, 5_100, 3), 6_000);
        assert_eq!(retry_after_ms(0, 0), 1_000);
        assert_eq!(retry_after_ms(3, 0), 8_000);
        assert!(retry_after_ms(30, u64::MAX) <= 75_000);
    }

    #[test]
    fn endpoints() {
        let e = parse_http_endpoint("http://169.254.169.254").unwrap();
        assert_eq!(
            (e.addr.to_string(), e.host.as_str(), e.path.as_str()),
            ("169.254.169.254:80".into(), "169.254.169.254", "/")
        );
        let e = parse_http_endpoint("http://127.0.0.1:8125/v2/credentials/abc?x=1").unwrap();
        assert_eq!(
            (e.addr.port(), e.path.as_str()),
            (8125, "/v2/credentials/abc?x=1")
        );
        let e = parse_http_endpoint("http://[fd00:ec2::23]/v1/credentials").unwrap();
        assert!(is_container_address(e.addr.ip()));
        assert!(parse_http_endpoint("https://169.254.169.254").is_err());
        assert!(parse_http_endpoint("http://metadata.local/").is_err());
        assert!(parse_http_endpoint("http://127.0.0.1:0/").is_err());
        assert!(parse_http_endpoint("http://127.0.0.1/a b").is_err());
        assert!(is_container_address("169.254.170.2".parse().unwrap()));
        assert!(!is_container_address("10.0.0.1".parse().unwrap()));
        let u = parse_url("https://STS.eu-west-1.amazonaws.com").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "sts.eu-west-1.amazonaws.com", 443, "/")
        );
        assert_eq!(u.authority(), "sts.eu-west-1.amazonaws.com");
        let u = parse_url("https://sts.test:8443/x").unwrap();
        assert_eq!(
            (u.port, u.authority().as_str(), u.ip()),
            (8443, "sts.test:8443", None)
        );
        assert_eq!(
            parse_url("http://[::1]:9/").unwrap().ip(),
            Some("::1".parse().unwrap())
        );
        assert!(parse_url("ftp://x").is_err() && parse_url("https://a b/").is_err());
        assert_eq!(source_id("imds http://a"), source_id("imds http://a"));
        assert_ne!(source_id("imds http://a"), source_id("imds http://b"));
    }
}
