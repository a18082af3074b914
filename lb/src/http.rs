//! The HTTP health probe's two pieces of HTTP/1.1 (RFC 9112): the GET it
//! sends and the status line of the answer, which decides the probe (200 is
//! healthy, as Azure's HTTP probe requires). The parser takes whatever bytes
//! have arrived and never panics.

use std::io::Write;

/// Longest status line looked at; an answer without one in this many bytes
/// is malformed.
pub const MAX_STATUS_LINE: usize = 512;

/// The probe's request for `path` on `host` (an address, as the Host header
/// takes it): one request, then the server closes.
pub fn request(path: &str, host: &str, out: &mut Vec<u8>) {
    out.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sdn-lb-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
}

/// What the bytes of an answer so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The status line is not complete yet.
    Incomplete,
    /// The status code.
    Code(u16),
    /// Not an HTTP/1.x status line.
    Malformed,
}

impl Status {
    /// Whether this answer makes the probe succeed.
    pub fn healthy(self) -> bool {
        self == Self::Code(200)
    }
}

/// Reads the status line (`HTTP/1.1 200 OK\r\n`) at the start of `answer`.
pub fn parse_status(answer: &[u8]) -> Status {
    let Some(end) = answer.iter().position(|&b| b == b'\n') else {
        return if answer.len() >= MAX_STATUS_LINE || !prefix_fits(answer) {
            Status::Malformed
        } else {
            Status::Incomplete
        };
    };
    let line = answer[..end].strip_suffix(b"\r").unwrap_or(&answer[..end]);
    // "HTTP/1.x" SP 3DIGIT [SP reason]
    let (Some(version), Some(code)) = (line.get(..8), line.get(9..12)) else {
        return Status::Malformed;
    };
    if !version.starts_with(b"HTTP/1.")
        || !version[7].is_ascii_digit()
        || line.get(8) != Some(&b' ')
        || !code.iter().all(u8::is_ascii_digit)
        || line.get(12).is_some_and(|&b| b != b' ')
    {
        return Status::Malformed;
    }
    Status::Code(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
}

/// Whether a partial line can still become a status line.
fn prefix_fits(partial: &[u8]) -> bool {
    let expected = b"HTTP/1.";
    let n = partial.len().min(expected.len());
    partial[..n] == expected[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_request_is_one_get_that_asks_to_close() {
        let mut out = Vec::new();
        request("/health", "10.30.1.11", &mut out);
        assert_eq!(
            out,
            b"GET /health HTTP/1.1\r\nHost: 10.30.1.11\r\nUser-Agent: sdn-lb-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"HTTP/1.1 200 OK\r\nServer: x\r\n"),
            Status::Code(200)
        );
        assert_eq!(parse_status(b"HTTP/1.0 503 Busy\n"), Status::Code(503));
        assert_eq!(parse_status(b"HTTP/1.1 204\r\n"), Status::Code(204));
        assert!(parse_status(b"HTTP/1.1 200 OK\r\n").healthy());
        assert!(!parse_status(b"HTTP/1.1 301 Moved\r\n").healthy());
    }

    #[test]
    fn partial_and_malformed_answers() {
        assert_eq!(parse_status(b""), Status::Incomplete);
        assert_eq!(parse_status(b"HTT"), Status::Incomplete);
        assert_eq!(parse_status(b"HTTP/1.1 200 O"), Status::Incomplete);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), Status::Malformed);
        assert_eq!(parse_status(b"HTTP/2 200\r\n"), Status::Malformed);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 OK\r\n"), Status::Malformed);
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK\r\n"), Status::Malformed);
        assert_eq!(parse_status(b"\n"), Status::Malformed);
        assert_eq!(parse_status(&[b'H'; 1]), Status::Incomplete);
        let long = [b"HTTP/1.1 ".as_slice(), &[b'x'; 600]].concat();
        assert_eq!(parse_status(&long), Status::Malformed);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_status(&bytes);
        }

        #[test]
        fn every_code_reads_back(code in 100u16..1000) {
            let line = format!("HTTP/1.1 {code} Whatever\r\n");
            prop_assert_eq!(parse_status(line.as_bytes()), Status::Code(code));
        }
    }
}
