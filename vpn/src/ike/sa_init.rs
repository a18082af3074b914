//! The IKE_SA_INIT exchange (RFC 7296 §1.2): the initiator's request (SA,
//! KE, Ni, NAT detection) and the responder's answer (SA, KE, Nr, NAT
//! detection), or the responder's cookie request (§2.6) and the request
//! sent again with the cookie first. Both sides end with the same IKE SA
//! keys. Pure functions of bytes, nonces and keys: the state machine that
//! retransmits and times out sits above.

use super::dh::{GROUP_CURVE25519, KeyPair};
use super::keys::{IkeKeys, skeyseed};
use super::message::emit_chain;
use super::message::{
    HEADER_LEN, Header, KeyExchange, Message, Notify, ParseError, VERSION, exchange, flags,
    payload, proposals,
};
use super::proposal::{IkeChoice, choose_ike, ike_accept, ike_offer};
use crate::esp::Cipher;
use std::net::SocketAddrV4;

/// Notify types (§3.10.1).
pub mod notify {
    /// No proposal chosen.
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    /// A malformed request (§2.21.4).
    pub const INVALID_SYNTAX: u16 = 7;
    /// The KE payload's group is not the one wanted.
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    /// The AUTH payload did not verify.
    pub const AUTHENTICATION_FAILED: u16 = 24;
    /// No further child SA is taken.
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    /// Try again later: the SA is being rekeyed or deleted (§2.25).
    pub const TEMPORARY_FAILURE: u16 = 43;
    /// The child SA to rekey does not exist (§2.25).
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    /// NAT detection: the sender's address and port.
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    /// NAT detection: the receiver's address and port.
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    /// A cookie (§2.6).
    pub const COOKIE: u16 = 16390;
}

/// Bytes of the nonces this side sends (§2.10: at least half the PRF's
/// key size, at least 16).
pub const NONCE_LEN: usize = 32;

/// Why an IKE_SA_INIT message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Not a well-formed message.
    #[error("malformed: {0}")]
    Parse(#[from] ParseError),
    /// Not the exchange, direction or SPI expected.
    #[error("not the IKE_SA_INIT message expected")]
    Unexpected,
    /// A payload the exchange needs is missing or malformed.
    #[error("missing or malformed {0} payload")]
    Missing(&'static str),
    /// No proposal of the peer's is acceptable (or it chose none of ours).
    #[error("no acceptable proposal")]
    NoProposal,
    /// The peer's key exchange is of another group, or its value is bad.
    #[error("unacceptable key exchange")]
    KeyExchange,
    /// The responder refused with a notify.
    #[error("refused by the responder (notify {0})")]
    Refused(u16),
    /// The responder wants the request again with this cookie.
    #[error("the responder asks for a cookie")]
    Cookie(Vec<u8>),
}

/// The NAT detection hash: SHA-1(SPIi | SPIr | address | port) (§2.23).
pub fn nat_hash(spi_i: u64, spi_r: u64, at: SocketAddrV4) -> [u8; 20] {
    let mut data = Vec::with_capacity(22);
    data.extend_from_slice(&spi_i.to_be_bytes());
    data.extend_from_slice(&spi_r.to_be_bytes());
    data.extend_from_slice(&at.ip().octets());
    data.extend_from_slice(&at.port().to_be_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

fn notify_body(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 0];
    body.extend_from_slice(&kind.to_be_bytes());
    body.extend_from_slice(data);
    body
}

pub(crate) fn ke_body(pair: &KeyPair) -> Vec<u8> {
    let mut body = vec![0, GROUP_CURVE25519 as u8, 0, 0];
    body.extend_from_slice(&pair.public());
    body
}

/// A message of `header` (next payload and length set here) with the
/// payloads `parts` (type, body) in order.
fn message(mut header: Header, parts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    // Bodies here are far below 64 KiB.
    let body = emit_chain(parts).unwrap_or_default();
    header.next_payload = parts.first().map_or(payload::NONE, |p| p.0);
    header.length = (HEADER_LEN + body.len()) as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    header.emit(&mut out);
    out.extend_from_slice(&body);
    out
}

/// What the initiator sends, and keeps to read the answer.
#[derive(Debug)]
pub struct InitRequest {
    /// The request's bytes (the first message of the AUTH's signed octets).
    pub bytes: Vec<u8>,
    /// The initiator's SPI.
    pub spi_i: u64,
    /// Ni.
    pub nonce: Vec<u8>,
}

/// The initiator's IKE_SA_INIT request from `local` to `remote`, offering
/// `ciphers`, with the cookie the responder asked for if any.
pub fn request(
    spi_i: u64,
    pair: &KeyPair,
    nonce: &[u8],
    ciphers: &[Cipher],
    cookie: Option<&[u8]>,
    local: SocketAddrV4,
    remote: SocketAddrV4,
) -> InitRequest {
    let header = Header {
        spi_i,
        spi_r: 0,
        next_payload: 0,
        version: VERSION,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0,
        length: 0,
    };
    let mut parts = Vec::new();
    if let Some(c) = cookie {
        parts.push((payload::NOTIFY, notify_body(notify::COOKIE, c)));
    }
    parts.push((payload::SA, ike_offer(ciphers, &[])));
    parts.push((payload::KE, ke_body(pair)));
    parts.push((payload::NONCE, nonce.to_vec()));
    parts.push((
        payload::NOTIFY,
        notify_body(notify::NAT_DETECTION_SOURCE_IP, &nat_hash(spi_i, 0, local)),
    ));
    parts.push((
        payload::NOTIFY,
        notify_body(
            notify::NAT_DETECTION_DESTINATION_IP,
            &nat_hash(spi_i, 0, remote),
        ),
    ));
    InitRequest {
        bytes: message(header, &parts),
        spi_i,
        nonce: nonce.to_vec(),
    }
}

/// What both sides agreed in IKE_SA_INIT.
#[derive(Debug)]
pub struct Agreed {
    /// The initiator's SPI.
    pub spi_i: u64,
    /// The responder's SPI.
    pub spi_r: u64,
    /// The IKE SA's cipher.
    pub cipher: Cipher,
    /// Ni.
    pub nonce_i: Vec<u8>,
    /// Nr.
    pub nonce_r: Vec<u8>,
    /// The IKE SA's keys.
    pub keys: IkeKeys,
    /// Whether a NAT is between the two (then both move to port 4500 and
    /// ESP travels in UDP).
    pub nat: bool,
}

/// The payloads of an IKE_SA_INIT message both directions carry.
struct Parts<'a> {
    sa: Option<&'a [u8]>,
    ke: Option<KeyExchange<'a>>,
    nonce: Option<&'a [u8]>,
    nat_source: Vec<&'a [u8]>,
    nat_destination: Option<&'a [u8]>,
    cookie: Option<&'a [u8]>,
    refusal: Option<u16>,
}

fn parts<'a>(bytes: &'a [u8], m: &Message) -> Parts<'a> {
    let mut p = Parts {
        sa: None,
        ke: None,
        nonce: None,
        nat_source: Vec::new(),
        nat_destination: None,
        cookie: None,
        refusal: None,
    };
    for payload_ref in &m.payloads {
        let body = &bytes[payload_ref.body.clone()];
        match payload_ref.kind {
            payload::SA => p.sa = Some(body),
            payload::KE => p.ke = KeyExchange::parse(body).ok(),
            payload::NONCE => p.nonce = Some(body),
            payload::NOTIFY => match Notify::parse(body) {
                Ok(n) if n.kind == notify::NAT_DETECTION_SOURCE_IP => p.nat_source.push(n.data),
                Ok(n) if n.kind == notify::NAT_DETECTION_DESTINATION_IP => {
                    p.nat_destination = Some(n.data)
                }
                Ok(n) if n.kind == notify::COOKIE => p.cookie = Some(n.data),
                // Error types are below 16384.
                Ok(n) if n.kind < 16384 => p.refusal = Some(n.kind),
                _ => {}
            },
            _ => {}
        }
    }
    p
}

/// Whether the NAT detection payloads say a NAT is in between: the
/// destination hash is not of where the message arrived, or no source hash
/// is of where it came from.
fn behind_nat(p: &Parts<'_>, spi_i: u64, spi_r: u64, from: SocketAddrV4, to: SocketAddrV4) -> bool {
    let (Some(destination), false) = (p.nat_destination, p.nat_source.is_empty()) else {
        // A peer that sends no NAT detection cannot float: no NAT assumed.
        return false;
    };
    destination != nat_hash(spi_i, spi_r, to)
        || !p
            .nat_source
            .iter()
            .any(|s| *s == nat_hash(spi_i, spi_r, from))
}

pub(crate) fn valid_nonce(n: &[u8]) -> bool {
    (16..=256).contains(&n.len())
}

/// The responder's side: a request from `from` that arrived at `local`.
/// Returns the answer to send and what was agreed, or the error whose
/// notify to answer with (no state is kept for a refused request).
///
/// # Errors
/// Why the request is refused.
pub fn respond(
    bytes: &[u8],
    spi_r: u64,
    pair: &KeyPair,
    nonce_r: &[u8],
    ours: &[Cipher],
    from: SocketAddrV4,
    local: SocketAddrV4,
) -> Result<(Vec<u8>, Agreed), InitError> {
    let m = Message::parse(bytes)?;
    let h = m.header;
    if h.exchange != exchange::IKE_SA_INIT || h.is_response() || h.spi_r != 0 || h.message_id != 0 {
        return Err(InitError::Unexpected);
    }
    let p = parts(bytes, &m);
    let sa = p.sa.ok_or(InitError::Missing("SA"))?;
    let offered = proposals(sa).map_err(|_| InitError::Missing("SA"))?;
    let choice = choose_ike(&offered, ours).ok_or(InitError::NoProposal)?;
    let ke = p.ke.clone().ok_or(InitError::Missing("KE"))?;
    if ke.group != GROUP_CURVE25519 {
        return Err(InitError::KeyExchange);
    }
    let nonce_i = p
        .nonce
        .filter(|n| valid_nonce(n))
        .ok_or(InitError::Missing("Nonce"))?;
    let shared = pair.shared(ke.data).map_err(|_| InitError::KeyExchange)?;
    let nat = behind_nat(&p, h.spi_i, 0, from, local);
    let header = Header {
        spi_r,
        flags: flags::RESPONSE,
        ..h
    };
    let answer = message(
        header,
        &[
            (payload::SA, ike_accept(choice, &[])),
            (payload::KE, ke_body(pair)),
            (payload::NONCE, nonce_r.to_vec()),
            (
                payload::NOTIFY,
                notify_body(
                    notify::NAT_DETECTION_SOURCE_IP,
                    &nat_hash(h.spi_i, spi_r, local),
                ),
            ),
            (
                payload::NOTIFY,
                notify_body(
                    notify::NAT_DETECTION_DESTINATION_IP,
                    &nat_hash(h.spi_i, spi_r, from),
                ),
            ),
        ],
    );
    let agreed = agree(h.spi_i, spi_r, choice, nonce_i, nonce_r, &shared, nat)?;
    Ok((answer, agreed))
}

/// The responder's refusal of a request: a response holding only the
/// notify `kind` (with `data`), e.g. a cookie or NO_PROPOSAL_CHOSEN.
pub fn refusal(request: &Header, kind: u16, data: &[u8]) -> Vec<u8> {
    let header = Header {
        spi_r: 0,
        flags: flags::RESPONSE,
        ..*request
    };
    message(header, &[(payload::NOTIFY, notify_body(kind, data))])
}

fn agree(
    spi_i: u64,
    spi_r: u64,
    choice: IkeChoice,
    nonce_i: &[u8],
    nonce_r: &[u8],
    shared: &[u8],
    nat: bool,
) -> Result<Agreed, InitError> {
    let seed = skeyseed(nonce_i, nonce_r, shared);
    let keys = IkeKeys::derive(
        &seed,
        nonce_i,
        nonce_r,
        spi_i,
        spi_r,
        0,
        choice.cipher.keymat_len(),
    )
    .ok_or(InitError::KeyExchange)?;
    Ok(Agreed {
        spi_i,
        spi_r,
        cipher: choice.cipher,
        nonce_i: nonce_i.to_vec(),
        nonce_r: nonce_r.to_vec(),
        keys,
        nat,
    })
}

/// The initiator's side: the responder's answer to `sent`, which arrived
/// at `local` from `from`.
///
/// # Errors
/// Why it is not taken; [`InitError::Cookie`] asks for the request again
/// with the cookie.
pub fn read_response(
    sent: &InitRequest,
    bytes: &[u8],
    pair: &KeyPair,
    ours: &[Cipher],
    from: SocketAddrV4,
    local: SocketAddrV4,
) -> Result<Agreed, InitError> {
    let m = Message::parse(bytes)?;
    let h = m.header;
    if h.exchange != exchange::IKE_SA_INIT
        || !h.is_response()
        || h.spi_i != sent.spi_i
        || h.message_id != 0
    {
        return Err(InitError::Unexpected);
    }
    let p = parts(bytes, &m);
    if let Some(cookie) = p.cookie {
        return Err(InitError::Cookie(cookie.to_vec()));
    }
    if let Some(kind) = p.refusal {
        return Err(InitError::Refused(kind));
    }
    let sa = p.sa.ok_or(InitError::Missing("SA"))?;
    let chosen = proposals(sa).map_err(|_| InitError::Missing("SA"))?;
    // It must have chosen one transform of each type among what we sent.
    let choice = match chosen.as_slice() {
        [one] => choose_ike(std::slice::from_ref(one), ours).ok_or(InitError::NoProposal)?,
        _ => return Err(InitError::NoProposal),
    };
    let ke = p.ke.clone().ok_or(InitError::Missing("KE"))?;
    if ke.group != GROUP_CURVE25519 {
        return Err(InitError::KeyExchange);
    }
    let nonce_r = p
        .nonce
        .filter(|n| valid_nonce(n))
        .ok_or(InitError::Missing("Nonce"))?;
    let shared = pair.shared(ke.data).map_err(|_| InitError::KeyExchange)?;
    let nat = behind_nat(&p, h.spi_i, h.spi_r, from, local);
    agree(h.spi_i, h.spi_r, choice, &sent.nonce, nonce_r, &shared, nat)
}

#[cfg(test)]
mod tests;
