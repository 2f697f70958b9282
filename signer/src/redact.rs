//! Blanking a secret out of a response body read piece by piece.
//!
//! An S3 `SignatureDoesNotMatch` answer holds the canonical request the
//! server computed, in text (`<CanonicalRequest>`) and as spaced hex bytes
//! (`<CanonicalRequestBytes>`, `47 45 54 0a ...`). With temporary
//! credentials that canonical request holds the session token, and the
//! answer goes to the client. A [`Redactor`] overwrites the token, in both
//! forms, with `*`, byte for byte, so the body keeps its length (and its
//! `Content-Length`).
//!
//! The body comes in buffers, and an occurrence may begin in one and end in
//! the next. The part in the later buffer is always blanked. The part at
//! the end of the earlier buffer is blanked when it is at least
//! [`MIN_TAIL`] bytes long; a shorter one (fewer than 16 characters of a
//! token hundreds long, and the first characters of an AWS session token
//! are the same for every token) cannot be told from ordinary text and is
//! left, since that buffer has to go on before the next one is seen.

/// The shortest beginning of the secret blanked at the end of a buffer
/// without seeing what follows.
pub const MIN_TAIL: usize = 16;

/// Blanks a secret, and its bytes in spaced hex, out of the buffers of a
/// body, in order: what it keeps between buffers is how much of each form
/// the last one ended with (no copy of the secret).
#[derive(Clone, Copy, Debug, Default)]
pub struct Redactor {
    plain: usize,
    hex: usize,
}

/// One form of the secret, byte by byte.
trait Form {
    fn len(&self) -> usize;
    /// Byte `i` of the form (hex digits lowercase).
    fn at(&self, i: usize) -> u8;
    /// True when `b` stands for byte `i` of the form.
    fn matches(&self, i: usize, b: u8) -> bool;
}

struct Plain<'s>(&'s [u8]);

impl Form for Plain<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
    fn matches(&self, i: usize, b: u8) -> bool {
        self.0.get(i) == Some(&b)
    }
}

/// `49 51 6f ...`: each byte in hex (either case), a space between.
struct SpacedHex<'s>(&'s [u8]);

impl Form for SpacedHex<'_> {
    fn len(&self) -> usize {
        (self.0.len() * 3).saturating_sub(1)
    }
    fn at(&self, i: usize) -> u8 {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let Some(&byte) = self.0.get(i / 3) else {
            return 0;
        };
        match i % 3 {
            0 => HEX[usize::from(byte >> 4)],
            1 => HEX[usize::from(byte & 15)],
            _ => b' ',
        }
    }
    fn matches(&self, i: usize, b: u8) -> bool {
        i < self.len() && b.to_ascii_lowercase() == self.at(i)
    }
}

/// The longest `b` below `m` for which the form's first `b` bytes are
/// also the last `b` of its first `m`: where an occurrence may start
/// again when one begun `m` bytes back does not go on.
fn border(form: &impl Form, m: usize) -> usize {
    (1..m)
        .rev()
        .find(|&b| (0..b).all(|i| form.at(i) == form.at(m - b + i)))
        .unwrap_or(0)
}

impl Redactor {
    /// Blanks every occurrence of `secret` in `buf`, the next buffer of the
    /// body (nothing for an empty secret). The same secret must be given
    /// for every buffer of a body.
    pub fn redact(&mut self, secret: &[u8], buf: &mut [u8]) {
        if secret.is_empty() {
            return;
        }
        self.plain = blank(&Plain(secret), self.plain, buf);
        self.hex = blank(&SpacedHex(secret), self.hex, buf);
    }
}

/// Blanks `form` in `buf`, given that the last buffer ended with its first
/// `carried` bytes; returns how many of its first bytes this one ends with.
fn blank(form: &impl Form, carried: usize, buf: &mut [u8]) -> usize {
    let n = form.len();
    let mut from = 0;
    // the rest of an occurrence begun in the last buffer: the longest
    // beginning it ended with, else a shorter one within it
    let mut m = carried;
    while m > 0 {
        let rest = (n - m).min(buf.len());
        if (0..rest).all(|i| form.matches(m + i, buf[i])) {
            buf[..rest].fill(b'*');
            if m + rest < n {
                return m + rest;
            }
            from = rest;
            break;
        }
        m = border(form, m);
    }
    // whole occurrences
    let mut j = from;
    while j + n <= buf.len() {
        if (0..n).all(|i| form.matches(i, buf[j + i])) {
            buf[j..j + n].fill(b'*');
            j += n;
        } else {
            j += 1;
        }
    }
    // the longest beginning of one that the buffer ends with
    let start = buf.len().saturating_sub(n - 1).max(from);
    for k in start..buf.len() {
        let tail = buf.len() - k;
        if (0..tail).all(|i| form.matches(i, buf[k + i])) {
            if tail >= MIN_TAIL {
                buf[k..].fill(b'*');
            }
            return tail;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"IQoJb3JpZ2luX2VjEXAMPLE/TOKEN+with=base64chars0123456789";

    fn spaced_hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn body() -> Vec<u8> {
        format!(
            "<Error><Code>SignatureDoesNotMatch</Code><CanonicalRequest>GET\n/k\n\n\
             host:h\nx-amz-security-token:{}\n\nhost;x-amz-security-token\nUNSIGNED-PAYLOAD\
             </CanonicalRequest><CanonicalRequestBytes>47 45 54 0a {} 0a</CanonicalRequestBytes>\
             <Upper>{}</Upper></Error>",
            String::from_utf8_lossy(TOKEN),
            spaced_hex(TOKEN),
            spaced_hex(TOKEN).to_ascii_uppercase(),
        )
        .into_bytes()
    }

    fn leaks(out: &[u8]) -> bool {
        let text = String::from_utf8_lossy(out);
        // any 16 bytes of the token, in either form
        TOKEN.windows(MIN_TAIL).any(|w| {
            text.contains(&*String::from_utf8_lossy(w))
                || text
                    .to_ascii_lowercase()
                    .contains(&spaced_hex(&w[..MIN_TAIL / 3 + 1]))
        })
    }

    #[test]
    fn every_form_is_blanked_and_the_length_kept() {
        let mut b = body();
        let len = b.len();
        Redactor::default().redact(TOKEN, &mut b);
        assert_eq!(b.len(), len);
        assert!(!leaks(&b), "{}", String::from_utf8_lossy(&b));
        let text = String::from_utf8_lossy(&b);
        assert!(text.contains("<Code>SignatureDoesNotMatch</Code>"));
        assert!(text.contains("x-amz-security-token:****"));
        assert!(text.contains("47 45 54 0a ****"));
    }

    #[test]
    fn in_buffers_cut_anywhere() {
        let whole = body();
        let mut once = whole.clone();
        Redactor::default().redact(TOKEN, &mut once);
        // two cuts at every pair of places (one byte steps near the token)
        for size in [1usize, 2, 3, 5, 7, 15, 16, 17, 40, 64, 100, 333] {
            let mut out = Vec::new();
            let mut r = Redactor::default();
            for piece in whole.chunks(size) {
                let mut p = piece.to_vec();
                r.redact(TOKEN, &mut p);
                out.extend_from_slice(&p);
            }
            assert_eq!(out.len(), whole.len());
            assert!(
                !leaks(&out),
                "size {size}: {}",
                String::from_utf8_lossy(&out)
            );
            // at most MIN_TAIL - 1 bytes left at a cut, never more
            let differ = out.iter().zip(&once).filter(|(a, b)| a != b).count();
            assert!(differ < 3 * MIN_TAIL * 3, "size {size}");
        }
    }

    #[test]
    fn a_start_within_a_start_that_does_not_go_on_is_found() {
        // "ABAB" ends the first buffer: the longest beginning is "ABAB",
        // which does not go on; "AB" (its border) does
        let secret = b"ABAB0123456789ABCDEFGHIJ";
        let mut first = b"x:ABAB".to_vec();
        let mut second = b"AB0123456789ABCDEFGHIJ and more".to_vec();
        let mut r = Redactor::default();
        r.redact(secret, &mut first);
        r.redact(secret, &mut second);
        // a beginning this short is left (see MIN_TAIL)
        assert_eq!(&first[..], b"x:ABAB");
        assert_eq!(&second[..], b"********************** and more");
    }

    #[test]
    fn other_text_is_left_alone() {
        let text = b"<Error><Code>AccessDenied</Code><Message>IQoJ is not 47 45</Message></Error>";
        let mut b = text.to_vec();
        let mut r = Redactor::default();
        r.redact(TOKEN, &mut b);
        assert_eq!(&b[..], &text[..]);
        let mut empty = text.to_vec();
        Redactor::default().redact(b"", &mut empty);
        assert_eq!(&empty[..], &text[..]);
    }
}
