//! AWS STS without I/O: the `AssumeRole` and `AssumeRoleWithWebIdentity`
//! requests (form bodies, and the SigV4 headers of a signed `AssumeRole`),
//! the regional endpoints, and the XML answers (credentials, or an error
//! with its code), read with `quick-xml`.

use std::fmt;

use quick_xml::events::Event;
use quick_xml::Reader;
use zeroize::Zeroizing;

use crate::creds::{parse_rfc3339, RoleCredentials};
use crate::{encode_into, sha256_hex, Credentials, PathRules, Request, Scope};

/// The STS API version every request names.
pub const VERSION: &str = "2011-06-15";

/// The STS endpoint of a region: regional (`https://sts.REGION.amazonaws.com`,
/// `.amazonaws.com.cn` in China), or the global one when `legacy` (as
/// `AWS_STS_REGIONAL_ENDPOINTS=legacy` asks).
pub fn endpoint(region: &str, legacy: bool) -> String {
    if legacy || region.is_empty() {
        return "https://sts.amazonaws.com".into();
    }
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sts.{region}.{suffix}")
}

fn form(pairs: &[(&str, &str)]) -> Zeroizing<String> {
    // sized for the worst encoding: a reallocation would leave a copy of
    // the token behind
    let size = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        encode_into(k.as_bytes(), false, &mut out);
        out.push(b'=');
        encode_into(v.as_bytes(), false, &mut out);
    }
    // the buffer moves into the String, not copied
    Zeroizing::new(String::from_utf8(std::mem::take(&mut *out)).unwrap_or_default())
}

/// The body of an `AssumeRole` call.
pub fn assume_role_body(
    role_arn: &str,
    session_name: &str,
    duration: Option<u32>,
    external_id: Option<&str>,
) -> Zeroizing<String> {
    let duration = duration.map(|d| d.to_string());
    let mut pairs = vec![
        ("Action", "AssumeRole"),
        ("Version", VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
    ];
    if let Some(d) = duration.as_deref() {
        pairs.push(("DurationSeconds", d));
    }
    if let Some(e) = external_id {
        pairs.push(("ExternalId", e));
    }
    form(&pairs)
}

/// The body of an `AssumeRoleWithWebIdentity` call (unsigned: the token
/// is the credential, and travels in the body).
pub fn web_identity_body(
    role_arn: &str,
    session_name: &str,
    token: &str,
    duration: Option<u32>,
) -> Zeroizing<String> {
    let duration = duration.map(|d| d.to_string());
    let mut pairs = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", token),
    ];
    if let Some(d) = duration.as_deref() {
        pairs.push(("DurationSeconds", d));
    }
    form(&pairs)
}

/// The headers of a signed STS `POST /` with a form `body` for `host`:
/// `Content-Type`, `X-Amz-Date`, the session token when there is one, and
/// `Authorization` (SigV4, service `sts`, signed over content-type, host,
/// x-amz-date and the token).
pub fn signed_post_headers(
    host: &str,
    body: &[u8],
    creds: &Credentials<'_>,
    token: Option<&str>,
    amz_date: &str,
) -> Vec<(&'static str, Zeroizing<String>)> {
    const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";
    let payload = sha256_hex(body);
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b"content-type", CONTENT_TYPE.as_bytes()),
        (b"host", host.as_bytes()),
        (b"x-amz-date", amz_date.as_bytes()),
    ];
    if let Some(t) = token {
        headers.push((b"x-amz-security-token", t.as_bytes()));
    }
    let req = Request {
        method: b"POST",
        path: b"/",
        query: b"",
        headers: &headers,
        payload_hash: payload.as_bytes(),
        rules: PathRules::Generic { normalize: true },
    };
    let signed = crate::sign(&req, creds, amz_date);
    let mut out = vec![
        ("Content-Type", Zeroizing::new(CONTENT_TYPE.to_owned())),
        ("X-Amz-Date", Zeroizing::new(amz_date.to_owned())),
    ];
    if let Some(t) = token {
        out.push(("X-Amz-Security-Token", Zeroizing::new(t.to_owned())));
    }
    out.push((
        "Authorization",
        Zeroizing::new(signed.authorization().to_owned()),
    ));
    out
}

/// The scope an STS call of `date` (`YYYYMMDD`) in `region` is signed for.
pub fn scope(date: &str, region: &str) -> Option<Scope> {
    Scope::new(
        date,
        if region.is_empty() {
            "us-east-1"
        } else {
            region
        },
        "sts",
    )
    .ok()
}

/// Why STS gave no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsError {
    /// STS's `Code` (`AccessDenied`, `ExpiredTokenException`,
    /// `InvalidIdentityToken`, `Throttling` …), if the answer had one.
    pub code: Option<String>,
    /// What to log: code and message, or what was wrong with the answer.
    pub message: String,
}

impl StsError {
    /// True when STS asks to slow down.
    pub fn throttled(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some(
                "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "TooManyRequestsException"
            )
        )
    }
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The leaf elements of an answer that matter, by local name.
#[derive(Default)]
struct Leaves {
    access_key_id: Option<String>,
    secret: Option<Zeroizing<String>>,
    token: Option<Zeroizing<String>>,
    expiration: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

pub(crate) fn entity(name: &[u8]) -> Option<char> {
    match name {
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"amp" => Some('&'),
        b"apos" => Some('\''),
        b"quot" => Some('"'),
        _ => {
            let n = name.strip_prefix(b"#")?;
            let v = match n.strip_prefix(b"x") {
                Some(hex) => u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?,
                None => std::str::from_utf8(n).ok()?.parse().ok()?,
            };
            char::from_u32(v)
        }
    }
}

fn read_leaves(xml: &[u8]) -> Result<Leaves, String> {
    let mut reader = Reader::from_reader(xml);
    let mut leaves = Leaves::default();
    let mut current: Option<Vec<u8>> = None;
    // never grows (a reallocation would leave a secret behind)
    let mut text = Zeroizing::new(String::with_capacity(xml.len()));
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = Some(e.local_name().as_ref().to_vec());
                text.clear();
            }
            Ok(Event::Text(t)) => {
                if current.is_some() {
                    text.push_str(
                        &t.decode()
                            .map_err(|_| "the answer is not UTF-8".to_string())?,
                    );
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if current.is_some() {
                    let c = entity(r.as_ref()).ok_or("unknown entity in the answer")?;
                    text.push(c);
                }
            }
            Ok(Event::CData(c)) => {
                if current.is_some() {
                    text.push_str(
                        std::str::from_utf8(c.as_ref()).map_err(|_| "the answer is not UTF-8")?,
                    );
                }
            }
            Ok(Event::End(_)) => {
                if let Some(name) = current.take() {
                    let value = text.trim().to_owned();
                    match name.as_slice() {
                        b"AccessKeyId" => leaves.access_key_id = Some(value),
                        b"SecretAccessKey" => leaves.secret = Some(Zeroizing::new(value)),
                        b"SessionToken" => leaves.token = Some(Zeroizing::new(value)),
                        b"Expiration" => leaves.expiration = Some(value),
                        b"Code" => leaves.code = Some(value),
                        b"Message" => leaves.message = Some(value),
                        _ => {}
                    }
                    text.clear();
                }
            }
            Ok(Event::Eof) => return Ok(leaves),
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "the answer is not XML (at byte {})",
                    reader.buffer_position()
                ))
            }
        }
    }
}

/// Reads an STS answer of HTTP `status`, as of `now` (Unix seconds): the
/// credentials of a 200, or the error it carries. Messages never hold a
/// secret.
pub fn parse_answer(status: u16, xml: &[u8], now: i64) -> Result<RoleCredentials, StsError> {
    let esc = |s: &str, n| crate::policy::escape_for_log(s.as_bytes(), n);
    let leaves = read_leaves(xml).map_err(|m| StsError {
        code: None,
        message: format!("STS answered {status}: {m}"),
    })?;
    if status != 200 || leaves.code.is_some() {
        let code = leaves.code.clone();
        let message = match (&leaves.code, &leaves.message) {
            (Some(c), Some(m)) => format!("STS answered {status} {}: {}", esc(c, 64), esc(m, 300)),
            (Some(c), None) => format!("STS answered {status} {}", esc(c, 64)),
            (None, _) => format!("STS answered {status}"),
        };
        return Err(StsError { code, message });
    }
    let missing = |what: &str| StsError {
        code: None,
        message: format!("the STS answer has no {what}"),
    };
    let access_key_id = leaves.access_key_id.ok_or_else(|| missing("AccessKeyId"))?;
    let secret_access_key = leaves.secret.ok_or_else(|| missing("SecretAccessKey"))?;
    let token = leaves.token.ok_or_else(|| missing("SessionToken"))?;
    let expiration = leaves.expiration.ok_or_else(|| missing("Expiration"))?;
    let bad = |m: String| StsError {
        code: None,
        message: m,
    };
    if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad("the STS AccessKeyId is not letters and digits".into()));
    }
    // they go into request heads: printable ASCII only (an entity could
    // have put a line break in)
    let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
    if !printable(&secret_access_key) || !printable(&token) {
        return Err(bad(
            "the STS answer has an empty or unprintable secret or token".into(),
        ));
    }
    let expiration = parse_rfc3339(&expiration).ok_or_else(|| {
        bad(format!(
            "the STS Expiration \"{}\" is not a date",
            esc(&expiration, 64)
        ))
    })?;
    if expiration <= now {
        return Err(bad(format!(
            "the STS credentials expired {} s ago",
            now - expiration
        )));
    }
    Ok(RoleCredentials {
        access_key_id,
        secret_access_key,
        token,
        expiration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    #[test]
    fn bodies_and_endpoints() {
        assert_eq!(
            assume_role_body("arn:aws:iam::123456789012:role/reader", "nginx", Some(900), Some("ext id")).as_str(),
            "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freader\
&RoleSessionName=nginx&DurationSeconds=900&ExternalId=ext%20id"
        );
        let b = web_identity_body("arn:aws:iam::1:role/r", "s", "eyJ.a+b/c=", None);
        assert!(
            b.ends_with("&WebIdentityToken=eyJ.a%2Bb%2Fc%3D"),
            "{}",
            b.as_str()
        );
        assert_eq!(
            endpoint("eu-west-1", false),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            endpoint("cn-north-1", false),
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(endpoint("eu-west-1", true), "https://sts.amazonaws.com");
    }

    #[test]
    fn credentials_answer() {
        let xml = br#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalr/K7MDENG+bPx&amp;y</SecretAccessKey>
      <SessionToken>IQoJb3Jp/Zz+==</SessionToken>
      <Expiration>2026-05-28T21:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;
        let c = parse_answer(200, xml, NOW).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.secret_access_key.as_str(), "wJalr/K7MDENG+bPx&y");
        assert_eq!(c.token.as_str(), "IQoJb3Jp/Zz+==");
        // an entity cannot smuggle a line break (or a space) into a header
        for (from, to) in [
            ("IQoJb3Jp/Zz+==", "IQoJ&#13;&#10;x-amz-acl: public-read"),
            ("IQoJb3Jp/Zz+==", "IQoJ b3Jp"),
            ("wJalr/K7MDENG+bPx&amp;y", "wJalr&#9;K7"),
        ] {
            let bad = String::from_utf8_lossy(xml).replace(from, to);
            let e = match parse_answer(200, bad.as_bytes(), NOW) {
                Ok(_) => panic!("accepted {to}"),
                Err(e) => e,
            };
            assert!(e.message.contains("unprintable"), "{}", e.message);
        }
    }

    #[test]
    fn error_answers() {
        let err = |status, xml: &str| parse_answer(status, xml.as_bytes(), NOW).unwrap_err();
        let e = err(
            403,
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
<Code>AccessDenied</Code><Message>User: arn:aws:sts::1:assumed-role/x is not authorized to perform: sts:AssumeRole</Message>
</Error><RequestId>1</RequestId></ErrorResponse>"#,
        );
        assert_eq!(e.code.as_deref(), Some("AccessDenied"));
        assert!(
            e.message.contains("403 AccessDenied: User: arn:aws:sts::1"),
            "{}",
            e.message
        );
        assert!(!e.throttled());
        let t = err(400, "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>");
        assert!(t.throttled());
        assert!(
            err(200, "<html>").message.contains("no AccessKeyId")
                || err(200, "<html>").message.contains("not XML")
        );
        assert!(err(502, "Bad Gateway").message.contains("502"));
        let expired =
            "<R><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
<SessionToken>t</SessionToken><Expiration>2020-01-01T00:00:00Z</Expiration></Credentials></R>";
        assert!(err(200, expired).message.contains("expired"));
        // a secret never reaches a message
        let e = err(200, "<R><Credentials><AccessKeyId>A B</AccessKeyId><SecretAccessKey>sekrit</SecretAccessKey>\
<SessionToken>tok</SessionToken><Expiration>2026-05-28T21:00:00Z</Expiration></Credentials></R>");
        assert!(
            !e.message.contains("sekrit") && !e.message.contains("tok"),
            "{}",
            e.message
        );
    }
}
