//! The counters `aws_auth_status` shows, and their Prometheus text form.
//!
//! The module keeps one `u64` per [`Counter`] in a shared memory zone
//! (atomic adds, no lock); this file names them and renders them. No
//! counter is labelled with anything a request carries: no key, path,
//! host or credential.

use std::fmt::Write;

/// One counter: its index in the zone's array is `self as usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A request head signed by `aws_sign` (the module's own headers).
    SignedHeader,
    /// A request signed through `$s3_auth_token`/`$aws_date` (and a
    /// `$s3_auth_token` evaluated outside the proxy).
    SignedVariables,
    /// A presigned URL made (`$aws_presigned_url`).
    SignedPresigned,
    /// Refused: the method is not signed here (405).
    RefusedMethod,
    /// Refused: the Host or path does not address the configured bucket,
    /// or dot segments leave it (403).
    RefusedBucket,
    /// Refused: a request for the bucket itself where listing is off (403).
    RefusedListing,
    /// Refused: a line of the client's URI reached the head, or a raw `#`
    /// (400).
    RefusedInjected,
    /// Refused: a head the module cannot sign as sent (500).
    RefusedHead,
    /// Refused: no credentials for now (no key for the day, role
    /// credentials not fetched or expired) (500).
    RefusedNoCredentials,
    /// Refused: a body to sign that was not read whole (500).
    RefusedBody,
    /// Refused: a body over `aws_payload_max_size` (413).
    RefusedBodyTooLarge,
    /// Refused: an upstream the module cannot sign for (not `http(s)`, or
    /// a chunked body streamed by the proxy) (500).
    RefusedUnsignable,
    /// Not presigned: no URL could be made for the request.
    RefusedPresign,
    /// The upstream answered a signed request with 2xx.
    Upstream2xx,
    /// ... with 3xx.
    Upstream3xx,
    /// ... with 403 (`SignatureDoesNotMatch`, `AccessDenied`, ...).
    Upstream403,
    /// ... with another 4xx.
    Upstream4xx,
    /// ... with 5xx.
    Upstream5xx,
    /// No response from the upstream to a signed request (nginx answered
    /// 502 or 504 itself).
    UpstreamNone,
    /// Role credentials fetched and stored.
    RefreshOk,
    /// A role credentials fetch that failed.
    RefreshFailed,
}

/// How many counters the zone holds.
pub const COUNTERS: usize = Counter::RefreshFailed as usize + 1;

/// Every counter, in index order.
pub const ALL: [Counter; COUNTERS] = [
    Counter::SignedHeader,
    Counter::SignedVariables,
    Counter::SignedPresigned,
    Counter::RefusedMethod,
    Counter::RefusedBucket,
    Counter::RefusedListing,
    Counter::RefusedInjected,
    Counter::RefusedHead,
    Counter::RefusedNoCredentials,
    Counter::RefusedBody,
    Counter::RefusedBodyTooLarge,
    Counter::RefusedUnsignable,
    Counter::RefusedPresign,
    Counter::Upstream2xx,
    Counter::Upstream3xx,
    Counter::Upstream403,
    Counter::Upstream4xx,
    Counter::Upstream5xx,
    Counter::UpstreamNone,
    Counter::RefreshOk,
    Counter::RefreshFailed,
];

/// A family of counters: name, help text, label name.
struct Family {
    name: &'static str,
    help: &'static str,
    label: &'static str,
}

const SIGNED: Family = Family {
    name: "aws_auth_signed_requests_total",
    help: "Requests signed, by how.",
    label: "mode",
};
const REFUSED: Family = Family {
    name: "aws_auth_refused_requests_total",
    help: "Requests the module refused to sign, by reason.",
    label: "reason",
};
const UPSTREAM: Family = Family {
    name: "aws_auth_upstream_responses_total",
    help: "Upstream responses to signed requests, by status class (none: no response).",
    label: "status",
};
const REFRESHES: Family = Family {
    name: "aws_auth_credential_refreshes_total",
    help: "Role credential fetches, by result.",
    label: "result",
};

impl Counter {
    /// The counter's family and label value.
    fn family_and_label(self) -> (&'static Family, &'static str) {
        match self {
            Counter::SignedHeader => (&SIGNED, "header"),
            Counter::SignedVariables => (&SIGNED, "variables"),
            Counter::SignedPresigned => (&SIGNED, "presigned"),
            Counter::RefusedMethod => (&REFUSED, "method"),
            Counter::RefusedBucket => (&REFUSED, "bucket"),
            Counter::RefusedListing => (&REFUSED, "listing"),
            Counter::RefusedInjected => (&REFUSED, "injected"),
            Counter::RefusedHead => (&REFUSED, "head"),
            Counter::RefusedNoCredentials => (&REFUSED, "no_credentials"),
            Counter::RefusedBody => (&REFUSED, "body"),
            Counter::RefusedBodyTooLarge => (&REFUSED, "body_too_large"),
            Counter::RefusedUnsignable => (&REFUSED, "unsignable_upstream"),
            Counter::RefusedPresign => (&REFUSED, "presign"),
            Counter::Upstream2xx => (&UPSTREAM, "2xx"),
            Counter::Upstream3xx => (&UPSTREAM, "3xx"),
            Counter::Upstream403 => (&UPSTREAM, "403"),
            Counter::Upstream4xx => (&UPSTREAM, "4xx"),
            Counter::Upstream5xx => (&UPSTREAM, "5xx"),
            Counter::UpstreamNone => (&UPSTREAM, "none"),
            Counter::RefreshOk => (&REFRESHES, "ok"),
            Counter::RefreshFailed => (&REFRESHES, "failed"),
        }
    }

    /// The counter for an upstream status (`0`: no response). 403 is
    /// apart from the other 4xx: a signature refused shows there.
    pub fn for_upstream_status(status: u32) -> Counter {
        match status {
            200..=299 => Counter::Upstream2xx,
            300..=399 => Counter::Upstream3xx,
            403 => Counter::Upstream403,
            400..=499 => Counter::Upstream4xx,
            500..=599 => Counter::Upstream5xx,
            // 1xx never ends a response; anything else is no HTTP status
            _ => Counter::UpstreamNone,
        }
    }
}

/// A gauge line: the seconds until one role source's credentials, or one
/// key file's keys, expire.
#[derive(Clone, Debug)]
pub struct Expiry<'a> {
    /// What the source is: a role source's description, or a key file's
    /// path (never a secret).
    pub source: &'a str,
    /// Seconds left; negative once expired; `None` before a first fetch.
    pub seconds: Option<i64>,
}

/// Escapes a label value for the text format: `\`, `"` and line feeds.
fn label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The Prometheus text exposition (format 0.0.4) of the counters, in
/// [`ALL`] order, of the role sources' expiries and of the key files'.
pub fn render(
    values: &[u64; COUNTERS],
    expiries: &[Expiry<'_>],
    key_files: &[Expiry<'_>],
) -> String {
    let mut out = String::with_capacity(4096);
    let mut last: Option<&'static str> = None;
    for (c, v) in ALL.iter().zip(values) {
        let (family, label) = c.family_and_label();
        if last != Some(family.name) {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} counter", family.name);
            last = Some(family.name);
        }
        let _ = writeln!(out, "{}{{{}=\"{label}\"}} {v}", family.name, family.label);
    }
    gauge(
        &mut out,
        "aws_auth_credentials_expire_in_seconds",
        "Seconds until a role source's credentials expire (negative: expired).",
        "source",
        expiries,
    );
    gauge(
        &mut out,
        "aws_auth_key_file_expire_in_seconds",
        "Seconds until the last key of an aws_signing_key_file ends (negative: ended).",
        "file",
        key_files,
    );
    out
}

/// A gauge family: a line per expiry that has a value.
fn gauge(out: &mut String, name: &str, help: &str, label: &str, expiries: &[Expiry<'_>]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for e in expiries {
        if let Some(s) = e.seconds {
            let _ = write!(out, "{name}{{{label}=\"");
            label_value(out, e.source);
            let _ = writeln!(out, "\"}} {s}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, c) in ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn renders_every_counter_once_with_help_and_type() {
        let mut values = [0u64; COUNTERS];
        for (i, v) in values.iter_mut().enumerate() {
            *v = 1000 + i as u64;
        }
        let text = render(
            &values,
            &[
                Expiry {
                    source: "imds http://169.254.169.254",
                    seconds: Some(42),
                },
                Expiry {
                    source: "ecs \"quoted\"\\",
                    seconds: Some(-3),
                },
                Expiry {
                    source: "not yet",
                    seconds: None,
                },
            ],
            &[Expiry {
                source: "/etc/nginx/aws-keys",
                seconds: Some(86_400),
            }],
        );
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), COUNTERS + 3);
        for (i, c) in ALL.iter().enumerate() {
            let (family, label) = c.family_and_label();
            let line = format!(
                "{}{{{}=\"{label}\"}} {}",
                family.name,
                family.label,
                1000 + i
            );
            assert_eq!(samples[i], line);
        }
        assert!(text.contains(
            "aws_auth_credentials_expire_in_seconds{source=\"imds http://169.254.169.254\"} 42\n"
        ));
        assert!(text.contains(
            "aws_auth_credentials_expire_in_seconds{source=\"ecs \\\"quoted\\\"\\\\\"} -3\n"
        ));
        assert!(!text.contains("not yet"));
        assert!(text
            .contains("aws_auth_key_file_expire_in_seconds{file=\"/etc/nginx/aws-keys\"} 86400\n"));
        assert_eq!(text.matches("# TYPE ").count(), 6);
        for family in [SIGNED, REFUSED, UPSTREAM, REFRESHES] {
            assert_eq!(
                text.matches(&format!("# TYPE {} counter\n", family.name))
                    .count(),
                1
            );
            assert_eq!(text.matches(&format!("# HELP {} ", family.name)).count(), 1);
        }
    }

    #[test]
    fn upstream_status_classes() {
        assert_eq!(Counter::for_upstream_status(200), Counter::Upstream2xx);
        assert_eq!(Counter::for_upstream_status(206), Counter::Upstream2xx);
        assert_eq!(Counter::for_upstream_status(304), Counter::Upstream3xx);
        assert_eq!(Counter::for_upstream_status(403), Counter::Upstream403);
        assert_eq!(Counter::for_upstream_status(404), Counter::Upstream4xx);
        assert_eq!(Counter::for_upstream_status(499), Counter::Upstream4xx);
        assert_eq!(Counter::for_upstream_status(503), Counter::Upstream5xx);
        assert_eq!(Counter::for_upstream_status(0), Counter::UpstreamNone);
        assert_eq!(Counter::for_upstream_status(600), Counter::UpstreamNone);
    }
}
