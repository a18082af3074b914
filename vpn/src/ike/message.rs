//! IKEv2 messages (RFC 7296 §3) as views over the received bytes: the
//! header, the chain of payloads and each payload's typed view. Parsing
//! never panics and never allocates more than the list of payloads; every
//! length is checked against the bytes that are there.

use std::ops::Range;

/// Bytes of the IKE header.
pub const HEADER_LEN: usize = 28;
/// Bytes of a generic payload header.
pub const PAYLOAD_HEADER_LEN: usize = 4;
/// IKEv2's version octet (major 2, minor 0).
pub const VERSION: u8 = 0x20;
/// Most payloads one message may hold here (a real one holds a dozen).
pub const MAX_PAYLOADS: usize = 64;

/// Exchange types (§3.1).
pub mod exchange {
    /// IKE_SA_INIT.
    pub const IKE_SA_INIT: u8 = 34;
    /// IKE_AUTH.
    pub const IKE_AUTH: u8 = 35;
    /// CREATE_CHILD_SA.
    pub const CREATE_CHILD_SA: u8 = 36;
    /// INFORMATIONAL.
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags (§3.1).
pub mod flags {
    /// Sent by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// The sender can speak a higher major version.
    pub const VERSION: u8 = 0x10;
    /// A response.
    pub const RESPONSE: u8 = 0x20;
}

/// Payload types (§3.2).
pub mod payload {
    /// No next payload.
    pub const NONE: u8 = 0;
    /// Security Association.
    pub const SA: u8 = 33;
    /// Key Exchange.
    pub const KE: u8 = 34;
    /// Identification, initiator.
    pub const IDI: u8 = 35;
    /// Identification, responder.
    pub const IDR: u8 = 36;
    /// Certificate.
    pub const CERT: u8 = 37;
    /// Certificate request.
    pub const CERTREQ: u8 = 38;
    /// Authentication.
    pub const AUTH: u8 = 39;
    /// Nonce.
    pub const NONCE: u8 = 40;
    /// Notify.
    pub const NOTIFY: u8 = 41;
    /// Delete.
    pub const DELETE: u8 = 42;
    /// Vendor ID.
    pub const VENDOR: u8 = 43;
    /// Traffic selectors, initiator.
    pub const TSI: u8 = 44;
    /// Traffic selectors, responder.
    pub const TSR: u8 = 45;
    /// Encrypted and authenticated.
    pub const SK: u8 = 46;
    /// Configuration.
    pub const CP: u8 = 47;
    /// EAP.
    pub const EAP: u8 = 48;
    /// Encrypted fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Why bytes are not an IKEv2 message or payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than what it announces or needs.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// Not IKE version 2.
    #[error("IKE major version {0}, not 2")]
    Version(u8),
    /// A length field that cannot be right.
    #[error("bad length in {0}")]
    Length(&'static str),
    /// More payloads than a message here may carry.
    #[error("more than {MAX_PAYLOADS} payloads")]
    TooManyPayloads,
    /// A payload after the encrypted payload (which must be last).
    #[error("a payload after the encrypted payload")]
    AfterEncrypted,
}

/// The IKE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The initiator's SPI.
    pub spi_i: u64,
    /// The responder's SPI (0 in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// The first payload's type.
    pub next_payload: u8,
    /// Version octet.
    pub version: u8,
    /// Exchange type.
    pub exchange: u8,
    /// Flags.
    pub flags: u8,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message.
    pub length: u32,
}

impl Header {
    /// Reads the header at the start of `bytes`.
    ///
    /// # Errors
    /// Truncated, or not version 2.
    pub fn parse(bytes: &[u8]) -> Result<Header, ParseError> {
        let h = bytes
            .get(..HEADER_LEN)
            .ok_or(ParseError::Truncated("header"))?;
        let version = h[17];
        if version >> 4 != 2 {
            return Err(ParseError::Version(version >> 4));
        }
        Ok(Header {
            spi_i: be64(&h[0..8]),
            spi_r: be64(&h[8..16]),
            next_payload: h[16],
            version,
            exchange: h[18],
            flags: h[19],
            message_id: be32(&h[20..24]),
            length: be32(&h[24..28]),
        })
    }

    /// Writes the header into `out` (28 bytes).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.extend_from_slice(&[self.next_payload, self.version, self.exchange, self.flags]);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// Whether the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    /// Whether the original initiator sent it.
    pub fn from_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

/// One payload of a chain: its type, critical bit, and where its body lies
/// in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRef {
    /// Payload type.
    pub kind: u8,
    /// The critical bit.
    pub critical: bool,
    /// For the encrypted payload: the type of the first payload inside.
    pub inner_first: u8,
    /// The body (after the generic header).
    pub body: Range<usize>,
}

/// A parsed message: its header and its payloads in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The payloads.
    pub payloads: Vec<PayloadRef>,
}

impl Message {
    /// Parses a whole message: the header, whose length must be the
    /// message's, then the chain of payloads (the encrypted payload, if
    /// any, last).
    ///
    /// # Errors
    /// Why the bytes are not a message.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let header = Header::parse(bytes)?;
        if header.length as usize != bytes.len() {
            return Err(ParseError::Length("header"));
        }
        let payloads = parse_chain(bytes, HEADER_LEN, header.next_payload)?;
        Ok(Message { header, payloads })
    }

    /// The first payload of type `kind`.
    pub fn find(&self, kind: u8) -> Option<&PayloadRef> {
        self.payloads.iter().find(|p| p.kind == kind)
    }
}

/// Parses a chain of payloads in `bytes` from `at`, the first of type
/// `first`, up to the end of `bytes`.
///
/// # Errors
/// Why the chain is malformed.
pub fn parse_chain(bytes: &[u8], mut at: usize, first: u8) -> Result<Vec<PayloadRef>, ParseError> {
    let mut payloads = Vec::new();
    let mut kind = first;
    while kind != payload::NONE {
        if payloads.len() == MAX_PAYLOADS {
            return Err(ParseError::TooManyPayloads);
        }
        let h = bytes
            .get(at..at + PAYLOAD_HEADER_LEN)
            .ok_or(ParseError::Truncated("payload header"))?;
        let next = h[0];
        let critical = h[1] & 0x80 != 0;
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if len < PAYLOAD_HEADER_LEN || at + len > bytes.len() {
            return Err(ParseError::Length("payload"));
        }
        let body = at + PAYLOAD_HEADER_LEN..at + len;
        at += len;
        if matches!(kind, payload::SK | payload::SKF) {
            // Its next-payload field names the first payload inside.
            if at != bytes.len() {
                return Err(ParseError::AfterEncrypted);
            }
            payloads.push(PayloadRef {
                kind,
                critical,
                inner_first: next,
                body,
            });
            return Ok(payloads);
        }
        payloads.push(PayloadRef {
            kind,
            critical,
            inner_first: payload::NONE,
            body,
        });
        kind = next;
    }
    if at != bytes.len() {
        return Err(ParseError::Length("trailing bytes"));
    }
    Ok(payloads)
}

/// Appends a payload (generic header, then `body`) to `out`; `next` is the
/// type of the payload after it. `None` when the body is too long for a
/// payload.
pub fn emit_payload(out: &mut Vec<u8>, next: u8, body: &[u8]) -> Option<()> {
    let len = u16::try_from(body.len() + PAYLOAD_HEADER_LEN).ok()?;
    out.extend_from_slice(&[next, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Some(())
}

/// The payload chain `parts` (type, body), in order, each naming the
/// next; `None` when a body is too long for a payload.
pub fn emit_chain(parts: &[(u8, Vec<u8>)]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (_, body)) in parts.iter().enumerate() {
        let next = parts.get(i + 1).map_or(payload::NONE, |p| p.0);
        emit_payload(&mut out, next, body)?;
    }
    Some(out)
}

/// The body of the first payload of type `kind` among `payloads` (ranges
/// into `bytes`).
pub fn body_of<'a>(bytes: &'a [u8], payloads: &[PayloadRef], kind: u8) -> Option<&'a [u8]> {
    payloads
        .iter()
        .find(|p| p.kind == kind)
        .and_then(|p| bytes.get(p.body.clone()))
}

/// The first error notification among `payloads` (notify types below
/// 16384 are errors, §3.10.1).
pub fn error_notify(bytes: &[u8], payloads: &[PayloadRef]) -> Option<u16> {
    payloads
        .iter()
        .filter(|p| p.kind == payload::NOTIFY)
        .filter_map(|p| Notify::parse(bytes.get(p.body.clone())?).ok())
        .map(|n| n.kind)
        .find(|&kind| kind < 16384)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A Notify payload (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify<'a> {
    /// Protocol ID (0: the IKE SA; 3: ESP).
    pub protocol: u8,
    /// The SPI it is about (may be empty).
    pub spi: &'a [u8],
    /// Notify message type.
    pub kind: u16,
    /// Notification data.
    pub data: &'a [u8],
}

impl<'a> Notify<'a> {
    /// Reads a Notify body.
    ///
    /// # Errors
    /// Truncated.
    pub fn parse(body: &'a [u8]) -> Result<Notify<'a>, ParseError> {
        let [protocol, spi_len, t0, t1, rest @ ..] = body else {
            return Err(ParseError::Truncated("notify"));
        };
        let spi_len = usize::from(*spi_len);
        let spi = rest.get(..spi_len).ok_or(ParseError::Truncated("notify"))?;
        Ok(Notify {
            protocol: *protocol,
            spi,
            kind: u16::from_be_bytes([*t0, *t1]),
            data: &rest[spi_len..],
        })
    }
}

/// A Key Exchange payload (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchange<'a> {
    /// Diffie-Hellman group (31: Curve25519).
    pub group: u16,
    /// The public value.
    pub data: &'a [u8],
}

impl<'a> KeyExchange<'a> {
    /// Reads a KE body.
    ///
    /// # Errors
    /// Truncated.
    pub fn parse(body: &'a [u8]) -> Result<KeyExchange<'a>, ParseError> {
        let [g0, g1, _, _, data @ ..] = body else {
            return Err(ParseError::Truncated("key exchange"));
        };
        Ok(KeyExchange {
            group: u16::from_be_bytes([*g0, *g1]),
            data,
        })
    }
}

/// An IPv4 traffic selector (§3.13.1, TS_IPV4_ADDR_RANGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficSelector {
    /// IP protocol (0: any).
    pub protocol: u8,
    /// First port.
    pub start_port: u16,
    /// Last port.
    pub end_port: u16,
    /// First address.
    pub start: std::net::Ipv4Addr,
    /// Last address.
    pub end: std::net::Ipv4Addr,
}

/// TS_IPV4_ADDR_RANGE.
pub const TS_IPV4: u8 = 7;

/// The IPv4 selectors of a TSi or TSr body (others, IPv6 ones, are
/// skipped).
///
/// # Errors
/// A selector whose length is wrong.
pub fn traffic_selectors(body: &[u8]) -> Result<Vec<TrafficSelector>, ParseError> {
    let [count, _, _, _, selectors @ ..] = body else {
        return Err(ParseError::Truncated("traffic selectors"));
    };
    let mut rest: &[u8] = selectors;
    let mut out = Vec::new();
    for _ in 0..*count {
        let [kind, protocol, l0, l1, ..] = rest else {
            return Err(ParseError::Truncated("traffic selector"));
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if len < 8 || len > rest.len() {
            return Err(ParseError::Length("traffic selector"));
        }
        let selector = &rest[..len];
        if *kind == TS_IPV4 {
            if len != 16 {
                return Err(ParseError::Length("IPv4 traffic selector"));
            }
            let addr = |at: usize| {
                std::net::Ipv4Addr::new(
                    selector[at],
                    selector[at + 1],
                    selector[at + 2],
                    selector[at + 3],
                )
            };
            out.push(TrafficSelector {
                protocol: *protocol,
                start_port: u16::from_be_bytes([selector[4], selector[5]]),
                end_port: u16::from_be_bytes([selector[6], selector[7]]),
                start: addr(8),
                end: addr(12),
            });
        }
        rest = &rest[len..];
    }
    Ok(out)
}

/// A transform of a proposal (§3.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    /// Transform type (1 encryption, 2 PRF, 3 integrity, 4 DH, 5 ESN).
    pub kind: u8,
    /// Transform ID.
    pub id: u16,
    /// The key length attribute, in bits, if present.
    pub key_bits: Option<u16>,
}

/// A proposal of an SA payload (§3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal<'a> {
    /// Its number.
    pub number: u8,
    /// Protocol ID (1 IKE, 3 ESP).
    pub protocol: u8,
    /// The SPI (empty in a first IKE proposal).
    pub spi: &'a [u8],
    /// Its transforms.
    pub transforms: Vec<Transform>,
}

/// The proposals of an SA body.
///
/// # Errors
/// A proposal or transform whose lengths are wrong.
pub fn proposals(body: &[u8]) -> Result<Vec<Proposal<'_>>, ParseError> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let [last, _, l0, l1, number, protocol, spi_len, count, tail @ ..] = rest else {
            return Err(ParseError::Truncated("proposal"));
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if len < 8 || len > rest.len() {
            return Err(ParseError::Length("proposal"));
        }
        let spi_len = usize::from(*spi_len);
        let inner = &tail[..len - 8];
        let spi = inner
            .get(..spi_len)
            .ok_or(ParseError::Length("proposal SPI"))?;
        let transforms = transforms(&inner[spi_len..], *count)?;
        out.push(Proposal {
            number: *number,
            protocol: *protocol,
            spi,
            transforms,
        });
        rest = &rest[len..];
        if *last == 0 {
            return if rest.is_empty() {
                Ok(out)
            } else {
                Err(ParseError::Length("SA"))
            };
        }
        if out.len() == MAX_PAYLOADS {
            return Err(ParseError::TooManyPayloads);
        }
    }
}

fn transforms(mut rest: &[u8], count: u8) -> Result<Vec<Transform>, ParseError> {
    let mut out = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let [_, _, l0, l1, kind, _, i0, i1, ..] = rest else {
            return Err(ParseError::Truncated("transform"));
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        if len < 8 || len > rest.len() {
            return Err(ParseError::Length("transform"));
        }
        let mut attributes = &rest[8..len];
        let mut key_bits = None;
        while let [a0, a1, v0, v1, more @ ..] = attributes {
            let kind_bits = u16::from_be_bytes([*a0, *a1]);
            if kind_bits & 0x8000 != 0 {
                // TV form: a two-byte value.
                if kind_bits & 0x7fff == 14 {
                    key_bits = Some(u16::from_be_bytes([*v0, *v1]));
                }
                attributes = more;
            } else {
                // TLV form: skipped.
                let alen = usize::from(u16::from_be_bytes([*v0, *v1]));
                attributes = more.get(alen..).ok_or(ParseError::Length("attribute"))?;
            }
        }
        if !attributes.is_empty() {
            return Err(ParseError::Length("attribute"));
        }
        out.push(Transform {
            kind: *kind,
            id: u16::from_be_bytes([*i0, *i1]),
            key_bits,
        });
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(ParseError::Length("transforms"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
