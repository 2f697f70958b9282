//! Blanking a secret out of a response body read piece by piece.
//!
//! An S3 `SignatureDoesNotMatch` answer holds the canonical request the
//! server computed, in text (`<CanonicalRequest>`) and as spaced hex bytes
//! (`<CanonicalRequestBytes>`, `47 45 54 0a ...`). With temporary
//! credentials that canonical request holds the session token, and the
//! answer goes to the client. A [`Redactor`] overwrites, with `*` and byte
//! for byte (the body keeps its length and its `Content-Length`):
//!
//! - the whole content of both elements, whatever it holds. An XML writer
//!   escapes `<` in text, so the content ends at the next `<`. What is
//!   blanked does not depend on the content, so a client that puts text of
//!   its own in the canonical request (a path, a header) learns nothing
//!   from what is blanked;
//! - elsewhere, every whole occurrence of the secret, as text or spaced
//!   hex, within one buffer.
//!
//! The element's opening tag is found across buffers (it is public text);
//! no byte is held back.

/// Blanks the canonical request elements, and the secret, out of the
/// buffers of a body, in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Redactor {
    state: State,
}

#[derive(Clone, Copy, Debug, Default)]
enum State {
    /// Outside: this many bytes of [`OPEN`] seen last.
    #[default]
    Outside,
    Open(usize),
    /// In the opening tag, after [`OPEN`]: up to its `>`.
    Tag,
    /// In the element's content: up to the next `<`.
    Content,
}

/// The start of `<CanonicalRequest>` and `<CanonicalRequestBytes>`.
const OPEN: &[u8] = b"<CanonicalRequest";

/// One form of the secret, byte by byte.
trait Form {
    fn len(&self) -> usize;
    /// True when `b` stands for byte `i` of the form.
    fn matches(&self, i: usize, b: u8) -> bool;
}

struct Plain<'s>(&'s [u8]);

impl Form for Plain<'_> {
    fn len(&self) -> usize {
        self.0.len()
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
    fn matches(&self, i: usize, b: u8) -> bool {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let Some(&byte) = self.0.get(i / 3) else {
            return false;
        };
        let want = match i % 3 {
            0 => HEX[usize::from(byte >> 4)],
            1 => HEX[usize::from(byte & 15)],
            _ => b' ',
        };
        b.to_ascii_lowercase() == want
    }
}

impl Redactor {
    /// Blanks, in `buf` (the next buffer of the body), the content of the
    /// canonical request elements and every whole occurrence of `secret`.
    pub fn redact(&mut self, secret: &[u8], buf: &mut [u8]) {
        for b in buf.iter_mut() {
            self.state = match self.state {
                State::Outside | State::Open(_) => {
                    let seen = match self.state {
                        State::Open(n) => n,
                        _ => 0,
                    };
                    if OPEN.get(seen) == Some(b) {
                        if seen + 1 == OPEN.len() {
                            State::Tag
                        } else {
                            State::Open(seen + 1)
                        }
                    } else if *b == b'<' {
                        State::Open(1)
                    } else {
                        State::Outside
                    }
                }
                State::Tag if *b == b'>' => State::Content,
                State::Tag => State::Tag,
                State::Content if *b == b'<' => State::Open(1),
                State::Content => {
                    *b = b'*';
                    State::Content
                }
            };
        }
        if !secret.is_empty() {
            blank(&Plain(secret), buf);
            blank(&SpacedHex(secret), buf);
        }
    }
}

/// Blanks every whole occurrence of `form` in `buf`.
fn blank(form: &impl Form, buf: &mut [u8]) {
    let n = form.len();
    let mut j = 0;
    while j + n <= buf.len() {
        if (0..n).all(|i| form.matches(i, buf[j + i])) {
            buf[j..j + n].fill(b'*');
            j += n;
        } else {
            j += 1;
        }
    }
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

    fn body(path: &str) -> Vec<u8> {
        let canonical = format!(
            "GET\n{path}\n\nhost:h\nx-amz-security-token:{}\n\nhost;x-amz-security-token\n\
             UNSIGNED-PAYLOAD",
            String::from_utf8_lossy(TOKEN)
        );
        format!(
            "<Error><Code>SignatureDoesNotMatch</Code><StringToSign>AWS4</StringToSign>\
             <CanonicalRequest>{canonical}</CanonicalRequest><CanonicalRequestBytes>{}\
             </CanonicalRequestBytes><RequestId>1</RequestId></Error>",
            spaced_hex(canonical.as_bytes()),
        )
        .into_bytes()
    }

    fn redacted(whole: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = Redactor::default();
        for piece in whole.chunks(size) {
            let mut p = piece.to_vec();
            r.redact(TOKEN, &mut p);
            out.extend_from_slice(&p);
        }
        out
    }

    fn leaks(out: &[u8]) -> bool {
        let text = String::from_utf8_lossy(out).to_ascii_lowercase();
        TOKEN.windows(4).any(|w| {
            text.contains(&String::from_utf8_lossy(w).to_ascii_lowercase())
                || text.contains(&spaced_hex(w))
        })
    }

    #[test]
    fn the_canonical_request_and_the_token_are_blanked_the_rest_kept() {
        let whole = body("/k");
        let out = redacted(&whole, whole.len());
        assert_eq!(out.len(), whole.len());
        assert!(!leaks(&out), "{}", String::from_utf8_lossy(&out));
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(
            "<Error><Code>SignatureDoesNotMatch</Code><StringToSign>AWS4</StringToSign>\
             <CanonicalRequest>***"
        ));
        assert!(text.contains("*</CanonicalRequest><CanonicalRequestBytes>*"));
        assert!(text.ends_with("*</CanonicalRequestBytes><RequestId>1</RequestId></Error>"));
        // outside the elements: whole occurrences, in text or hex of either case
        let other = format!(
            "<Message>{} and {}</Message>",
            String::from_utf8_lossy(TOKEN),
            spaced_hex(TOKEN).to_ascii_uppercase()
        );
        let mut b = other.clone().into_bytes();
        Redactor::default().redact(TOKEN, &mut b);
        assert_eq!(b.len(), other.len());
        assert!(!leaks(&b), "{}", String::from_utf8_lossy(&b));
    }

    #[test]
    fn in_buffers_cut_anywhere_the_same() {
        let whole = body("/k");
        let once = redacted(&whole, whole.len());
        for size in 1..=whole.len().min(400) {
            assert_eq!(redacted(&whole, size), once, "size {size}");
        }
    }

    #[test]
    fn what_is_blanked_does_not_depend_on_a_guess() {
        // a client's path that starts like the token, cut anywhere: the
        // answer is the same as for a path that does not
        let guess = body("/IQoJb3JpZ2luX2VjE");
        let other = body("/IQoJb3JpZ2luX2VjF");
        for size in [1, 7, 16, 17, 64, 200, guess.len()] {
            let (a, b) = (redacted(&guess, size), redacted(&other, size));
            assert_eq!(a, b, "size {size}");
        }
    }

    #[test]
    fn other_text_is_left_alone() {
        let text = b"<Error><Code>AccessDenied</Code><Message>IQoJ is not 47 45 \
            <CanonicalRequestId></Message></Error>";
        let mut b = text.to_vec();
        Redactor::default().redact(TOKEN, &mut b);
        assert_eq!(&b[..], &text[..]);
    }
}
