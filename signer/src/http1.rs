//! A small HTTP/1.1 exchange, without I/O: the request bytes for the
//! credentials services, and the answer read back from bytes as they
//! arrive (`httparse` reads the head; `Content-Length`, chunked and
//! read-until-close bodies). Every buffer that can hold a credential is
//! the caller's, so it can be wiped.

use zeroize::Zeroizing;

/// Largest answer accepted (head and body): credentials are a few KiB.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Writes a request: `METHOD PATH HTTP/1.1`, `Host`, the headers,
/// `Content-Length`, `Connection: close`, then the body.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Zeroizing<Vec<u8>> {
    // sized once: a reallocation would leave a copy of a token behind
    let size = 128
        + method.len()
        + host.len()
        + path.len()
        + headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
        + body.len();
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    for part in [method, " ", path, " HTTP/1.1\r\nHost: ", host, "\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    for (name, value) in headers {
        for part in [*name, ": ", *value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    let length = body.len().to_string();
    for part in [
        "Content-Length: ",
        &length,
        "\r\nConnection: close\r\nUser-Agent: ngx_aws_auth\r\n\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// A complete answer.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (wiped when dropped).
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Answer({}, {} bytes)", self.status, self.body.len())
    }
}

/// Why an answer could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerError {
    /// Not HTTP/1.x, or a malformed head or chunk.
    Malformed(&'static str),
    /// Larger than [`MAX_ANSWER`].
    TooLarge,
    /// The connection closed before the answer was complete.
    Truncated,
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerError::Malformed(what) => write!(f, "malformed answer ({what})"),
            AnswerError::TooLarge => write!(f, "answer larger than {MAX_ANSWER} bytes"),
            AnswerError::Truncated => {
                f.write_str("connection closed before the answer was complete")
            }
        }
    }
}

/// Reads the answer from the bytes received so far; `closed` tells that
/// the peer closed the connection. `Ok(None)`: more bytes are needed.
pub fn read_answer(buf: &[u8], closed: bool) -> Result<Option<Answer>, AnswerError> {
    if buf.len() > MAX_ANSWER {
        return Err(AnswerError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if closed => return Err(AnswerError::Truncated),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(AnswerError::Malformed("head")),
    };
    let status = resp.code.ok_or(AnswerError::Malformed("status"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(AnswerError::Malformed("Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(AnswerError::Malformed("Content-Length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    let rest = &buf[head_len..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(b) => b,
            None if closed => return Err(AnswerError::Truncated),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if n > MAX_ANSWER {
            return Err(AnswerError::TooLarge);
        }
        if rest.len() < n {
            return if closed {
                Err(AnswerError::Truncated)
            } else {
                Ok(None)
            };
        }
        Zeroizing::new(rest[..n].to_vec())
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Zeroizing::new(Vec::new())
    } else if closed {
        Zeroizing::new(rest.to_vec())
    } else {
        return Ok(None);
    };
    Ok(Some(Answer { status, body }))
}

/// Decodes a chunked body; `None` until the last chunk is there.
fn dechunk(mut b: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, AnswerError> {
    // never grows: the body is shorter than its chunked form
    let mut out = Zeroizing::new(Vec::with_capacity(b.len()));
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = b[..eol].split(|&c| c == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or(AnswerError::Malformed("chunk size"))?;
        if size > MAX_ANSWER {
            return Err(AnswerError::TooLarge);
        }
        b = &b[eol + 2..];
        if size == 0 {
            // trailers are not used by these services: the final CRLF is
            // enough (or the connection closing)
            return Ok(Some(out));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        if &b[size..size + 2] != b"\r\n" {
            return Err(AnswerError::Malformed("chunk end"));
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let r = request(
            "PUT",
            "169.254.169.254",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
            b"",
        );
        assert_eq!(
            std::str::from_utf8(&r).unwrap(),
            "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n\
X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nContent-Length: 0\r\nConnection: close\r\n\
User-Agent: ngx_aws_auth\r\n\r\n"
        );
    }

    #[test]
    fn answers_in_pieces() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..full.len() {
            assert!(read_answer(&full[..cut], false).unwrap().is_none(), "{cut}");
            assert_eq!(
                read_answer(&full[..cut], true).unwrap_err(),
                AnswerError::Truncated
            );
        }
        let a = read_answer(full, false).unwrap().unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &b"hello"[..]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n";
        let a = read_answer(chunked, false).unwrap().unwrap();
        assert_eq!(&a.body[..], b"hello");
        assert!(read_answer(&chunked[..chunked.len() - 8], false)
            .unwrap()
            .is_none());
        let close = b"HTTP/1.0 401 Unauthorized\r\n\r\nno token";
        assert!(read_answer(close, false).unwrap().is_none());
        let a = read_answer(close, true).unwrap().unwrap();
        assert_eq!((a.status, &a.body[..]), (401, &b"no token"[..]));
    }

    #[test]
    fn bad_answers() {
        assert!(matches!(
            read_answer(b"SSH-2.0-OpenSSH\r\n\r\n", false),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            read_answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                false
            ),
            Err(AnswerError::Malformed(_))
        ));
        assert!(matches!(
            read_answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false
            ),
            Err(AnswerError::Malformed(_))
        ));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_ANSWER + 1
        );
        assert_eq!(
            read_answer(big.as_bytes(), false).unwrap_err(),
            AnswerError::TooLarge
        );
    }
}
