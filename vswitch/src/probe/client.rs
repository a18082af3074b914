//! One health probe's TCP exchange, as a small client the switch runs
//! itself: a SYN; for a TCP probe the SYN-ACK is success (then a RST, so the
//! server keeps nothing); for an HTTP probe the GET follows, the answer's
//! status line decides, then a RST. A RST or a wrong answer is failure;
//! silence is the prober's timeout. Sans-IO: segments in, segments out.

use crate::wire::{Ipv4Packet, TcpFlags, TcpRepr, TcpSegment};
use sdn_lb::ProbeOutcome;
use sdn_lb::http::{self, Status};
use std::net::Ipv4Addr;

/// What the probe asks of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// A completed handshake is up.
    Tcp,
    /// A GET of this path answered 200 is up.
    Http(String),
}

/// A segment the client wants sent: flags, sequence and acknowledgement
/// numbers, and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Control bits.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (0 without ACK).
    pub ack: u32,
    /// Data.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SynSent,
    /// Request sent; reading the answer from `next` (their sequence).
    Reading {
        next: u32,
    },
    Done,
}

/// Longest answer kept while looking for the status line.
const MAX_ANSWER: usize = http::MAX_STATUS_LINE;

/// A probe's client end.
#[derive(Debug, Clone)]
pub struct ProbeClient {
    kind: ProbeKind,
    host: Ipv4Addr,
    iss: u32,
    state: State,
    answer: Vec<u8>,
}

impl ProbeClient {
    /// A client that opens with initial sequence number `iss`; returns it
    /// and its SYN.
    pub fn start(kind: ProbeKind, host: Ipv4Addr, iss: u32) -> (ProbeClient, Segment) {
        let syn = Segment {
            flags: TcpFlags::SYN,
            seq: iss,
            ack: 0,
            payload: Vec::new(),
        };
        let client = ProbeClient {
            kind,
            host,
            iss,
            state: State::SynSent,
            answer: Vec::new(),
        };
        (client, syn)
    }

    /// Feeds a segment from the server (`flags`, `seq`, `ack`, `payload`);
    /// appends what to send to `out`, returns the outcome once known.
    pub fn on_segment(
        &mut self,
        flags: u16,
        seq: u32,
        ack: u32,
        payload: &[u8],
        out: &mut Vec<Segment>,
    ) -> Option<ProbeOutcome> {
        let has = |bit: u16| flags & bit != 0;
        if has(TcpFlags::RST) {
            if self.state == State::Done {
                return None;
            }
            self.state = State::Done;
            return Some(ProbeOutcome::Failure);
        }
        let mine = self.iss.wrapping_add(1);
        match self.state {
            State::SynSent => {
                if !(has(TcpFlags::SYN) && has(TcpFlags::ACK) && ack == mine) {
                    return None;
                }
                let theirs = seq.wrapping_add(1);
                match &self.kind {
                    ProbeKind::Tcp => {
                        self.state = State::Done;
                        out.push(self.reset(mine));
                        Some(ProbeOutcome::Success)
                    }
                    ProbeKind::Http(path) => {
                        let mut request = Vec::new();
                        http::request(path, &self.host.to_string(), &mut request);
                        out.push(Segment {
                            flags: TcpFlags::ACK | TcpFlags::PSH,
                            seq: mine,
                            ack: theirs,
                            payload: request,
                        });
                        self.state = State::Reading { next: theirs };
                        None
                    }
                }
            }
            State::Reading { next } => {
                // In-order data only; anything else waits for its resend.
                if seq != next || payload.is_empty() && !has(TcpFlags::FIN) {
                    return None;
                }
                let room = MAX_ANSWER.saturating_sub(self.answer.len());
                self.answer
                    .extend_from_slice(&payload[..payload.len().min(room)]);
                let next = seq.wrapping_add(payload.len() as u32);
                self.state = State::Reading { next };
                let sent = match &self.kind {
                    ProbeKind::Http(path) => {
                        let mut request = Vec::new();
                        http::request(path, &self.host.to_string(), &mut request);
                        request.len() as u32
                    }
                    ProbeKind::Tcp => 0,
                };
                let outcome = match http::parse_status(&self.answer) {
                    Status::Incomplete if !has(TcpFlags::FIN) => {
                        out.push(Segment {
                            flags: TcpFlags::ACK,
                            seq: mine.wrapping_add(sent),
                            ack: next,
                            payload: Vec::new(),
                        });
                        return None;
                    }
                    status if status.healthy() => ProbeOutcome::Success,
                    _ => ProbeOutcome::Failure,
                };
                self.state = State::Done;
                out.push(self.reset(mine.wrapping_add(sent)));
                Some(outcome)
            }
            State::Done => None,
        }
    }

    fn reset(&self, seq: u32) -> Segment {
        Segment {
            flags: TcpFlags::RST,
            seq,
            ack: 0,
            payload: Vec::new(),
        }
    }
}

/// The source, TCP header fields and payload of an IPv4 packet carrying a
/// well-formed TCP segment; `None` otherwise (never panics).
pub fn read_segment(l3: &[u8]) -> Option<(Ipv4Addr, TcpRepr, &[u8])> {
    let ip = Ipv4Packet::new_checked(l3).ok()?;
    if ip.protocol() != crate::wire::IpProtocol::Tcp {
        return None;
    }
    let src = ip.src_addr();
    let (ip_header, total) = (ip.header_len(), ip.total_len());
    let l4 = l3.get(ip_header..total)?;
    let segment = TcpSegment::new_checked(l4).ok()?;
    // A backend's answer arrives from its veth with the checksum left to
    // offload (partial), so it is not verified here: the segment never
    // left the machine, and the attempt's port and sequence numbers must
    // match besides.
    let repr = TcpRepr {
        src_port: segment.src_port(),
        dst_port: segment.dst_port(),
        seq_number: segment.seq_number(),
        ack_number: segment.ack_number(),
        flags: segment.flags(),
        window: segment.window(),
    };
    let header = segment.header_len();
    Some((src, repr, l4.get(header..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpFlags as F;

    const HOST: Ipv4Addr = Ipv4Addr::new(10, 30, 1, 11);

    #[test]
    fn a_tcp_probe_succeeds_on_syn_ack_and_resets() {
        let (mut c, syn) = ProbeClient::start(ProbeKind::Tcp, HOST, 1000);
        assert_eq!((syn.flags, syn.seq), (F::SYN, 1000));
        let mut out = Vec::new();
        // A SYN-ACK for another sequence is not ours.
        assert_eq!(
            c.on_segment(F::SYN | F::ACK, 5000, 999, b"", &mut out),
            None
        );
        assert_eq!(
            c.on_segment(F::SYN | F::ACK, 5000, 1001, b"", &mut out),
            Some(ProbeOutcome::Success)
        );
        assert_eq!(
            out,
            [Segment {
                flags: F::RST,
                seq: 1001,
                ack: 0,
                payload: vec![]
            }]
        );
    }

    #[test]
    fn a_refused_probe_fails() {
        let (mut c, _) = ProbeClient::start(ProbeKind::Tcp, HOST, 1000);
        let mut out = Vec::new();
        assert_eq!(
            c.on_segment(F::RST | F::ACK, 0, 1001, b"", &mut out),
            Some(ProbeOutcome::Failure)
        );
        assert!(out.is_empty());
        assert_eq!(c.on_segment(F::RST, 0, 1001, b"", &mut out), None, "once");
    }

    #[test]
    fn an_http_probe_sends_the_get_and_reads_the_status() {
        let (mut c, _) = ProbeClient::start(ProbeKind::Http("/health".into()), HOST, 1000);
        let mut out = Vec::new();
        assert_eq!(
            c.on_segment(F::SYN | F::ACK, 5000, 1001, b"", &mut out),
            None
        );
        let get = out.pop().unwrap();
        assert_eq!((get.flags, get.seq, get.ack), (F::ACK | F::PSH, 1001, 5001));
        assert!(
            get.payload
                .starts_with(b"GET /health HTTP/1.1\r\nHost: 10.30.1.11\r\n")
        );
        let sent = get.payload.len() as u32;
        // The status line in two pieces: the first is acknowledged.
        assert_eq!(
            c.on_segment(F::ACK, 5001, 1001 + sent, b"HTTP/1.1 20", &mut out),
            None
        );
        assert_eq!(out.pop().unwrap().ack, 5012);
        // Out of order: ignored.
        assert_eq!(
            c.on_segment(F::ACK, 6000, 1001 + sent, b"junk", &mut out),
            None
        );
        assert_eq!(
            c.on_segment(
                F::ACK | F::PSH,
                5012,
                1001 + sent,
                b"0 OK\r\n\r\n",
                &mut out
            ),
            Some(ProbeOutcome::Success)
        );
        assert_eq!(out.pop().unwrap().flags, F::RST);
    }

    #[test]
    fn an_http_probe_fails_on_another_status_or_an_early_close() {
        for (answer, flags) in [
            (&b"HTTP/1.1 503 Busy\r\n"[..], F::ACK),
            (&b"SSH-2.0-OpenSSH_9.2\r\n"[..], F::ACK),
            (&b"HTTP/1.1 2"[..], F::ACK | F::FIN),
        ] {
            let (mut c, _) = ProbeClient::start(ProbeKind::Http("/".into()), HOST, 7);
            let mut out = Vec::new();
            c.on_segment(F::SYN | F::ACK, 100, 8, b"", &mut out);
            assert_eq!(
                c.on_segment(flags, 101, 8, answer, &mut out),
                Some(ProbeOutcome::Failure),
                "{answer:?}"
            );
        }
    }
}
