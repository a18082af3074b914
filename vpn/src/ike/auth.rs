//! The IKE_AUTH exchange with pre-shared keys (RFC 7296 §1.2, §2.15),
//! initiator side: the encrypted request (IDi, AUTH, SA for the first
//! child, TSi, TSr) and the reading of the answer (IDr and AUTH checked, the
//! chosen child SA and its traffic selectors), which yields the first child
//! SA's keys.

use super::keys::{Secret, auth_matches, child_keymat, prf, psk_auth};
use super::message::{
    Header, TS_IPV4, TrafficSelector, VERSION, exchange, flags, payload, proposals,
    traffic_selectors,
};
use super::message::{body_of, emit_chain, error_notify};
use super::proposal::{EspChoice, choose_esp, esp_offer};
use super::sa_init::Agreed;
use super::sk::{SkError, SkKey};
use crate::esp::Cipher;
use std::net::Ipv4Addr;

/// ID types (§3.5).
pub const ID_IPV4_ADDR: u8 = 1;
/// AUTH method: shared key message integrity code.
pub const AUTH_SHARED_KEY: u8 = 2;

/// Why an IKE_AUTH answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not well formed, or not the answer expected.
    #[error("not the IKE_AUTH answer expected")]
    Unexpected,
    /// The encrypted payload does not open.
    #[error("the encrypted payload: {0}")]
    Sealed(#[from] SkError),
    /// A payload the exchange needs is missing or malformed.
    #[error("missing or malformed {0} payload")]
    Missing(&'static str),
    /// The peer's AUTH does not verify: another pre-shared key.
    #[error("the peer's AUTH does not verify (another pre-shared key?)")]
    Authentication,
    /// The peer refused with a notify.
    #[error("refused by the peer (notify {0})")]
    Refused(u16),
    /// The child SA proposal it chose is not one we offered.
    #[error("no acceptable child SA proposal")]
    NoProposal,
}

/// The first child SA: what it protects and its keys each way (which its
/// `Debug` does not show).
pub struct ChildSa {
    /// The chosen cipher.
    pub cipher: Cipher,
    /// The SPI we receive under.
    pub our_spi: u32,
    /// The SPI the peer receives under.
    pub peer_spi: u32,
    /// Our side's traffic.
    pub ts_local: Vec<TrafficSelector>,
    /// The peer's side's traffic.
    pub ts_remote: Vec<TrafficSelector>,
    /// Keying material for what the initiator sends.
    pub keys_i_to_r: Secret,
    /// Keying material for what the responder sends.
    pub keys_r_to_i: Secret,
}

impl std::fmt::Debug for ChildSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSa")
            .field("cipher", &self.cipher)
            .field("our_spi", &format_args!("{:#010x}", self.our_spi))
            .field("peer_spi", &format_args!("{:#010x}", self.peer_spi))
            .field("ts_local", &self.ts_local)
            .field("ts_remote", &self.ts_remote)
            .finish_non_exhaustive()
    }
}

/// A prefix as the single IPv4 traffic selector of a TS payload body.
pub fn ts_body(prefix: Ipv4Addr, len: u8) -> Vec<u8> {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    let start = u32::from(prefix) & mask;
    let end = start | !mask;
    let mut body = vec![1, 0, 0, 0, TS_IPV4, 0, 0, 16, 0, 0, 0xff, 0xff];
    body.extend_from_slice(&start.to_be_bytes());
    body.extend_from_slice(&end.to_be_bytes());
    body
}

fn id_body(address: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![ID_IPV4_ADDR, 0, 0, 0];
    body.extend_from_slice(&address.octets());
    body
}

/// What the initiator sent in IKE_AUTH and keeps to read the answer.
#[derive(Debug)]
pub struct AuthRequest {
    /// The message, encrypted.
    pub bytes: Vec<u8>,
    /// The SPI our child SA receives under.
    pub our_spi: u32,
}

/// One side's IKE_AUTH settings, initiator or responder (its `Debug` does
/// not show the key).
#[derive(Clone)]
pub struct AuthParams<'a> {
    /// Our identity (an IPv4 address, as `id = <address>` in strongSwan).
    pub id: Ipv4Addr,
    /// The identity the peer must prove.
    pub peer_id: Ipv4Addr,
    /// The pre-shared key.
    pub psk: &'a [u8],
    /// Our side's prefix (a responder requires the initiator's selectors
    /// to hold it and the peer's).
    pub local: (Ipv4Addr, u8),
    /// The peer's side's prefix.
    pub remote: (Ipv4Addr, u8),
    /// Child SA ciphers, by preference.
    pub ciphers: &'a [Cipher],
    /// The SPI our child SA receives under.
    pub spi: u32,
}

impl std::fmt::Debug for AuthParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthParams")
            .field("id", &self.id)
            .field("peer_id", &self.peer_id)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("ciphers", &self.ciphers)
            .field("spi", &format_args!("{:#010x}", self.spi))
            .finish_non_exhaustive()
    }
}

/// The initiator's IKE_AUTH request (message ID 1) after `agreed`, the
/// IKE_SA_INIT exchange whose request was `init_request`.
///
/// # Errors
/// From sealing.
pub fn auth_request(
    agreed: &Agreed,
    init_request: &[u8],
    params: &AuthParams<'_>,
) -> Result<AuthRequest, AuthError> {
    let id = id_body(params.id);
    let maced_id = prf(&agreed.keys.sk_pi, &id);
    let signed = [init_request, &agreed.nonce_r, &maced_id].concat();
    let mut auth = vec![AUTH_SHARED_KEY, 0, 0, 0];
    auth.extend_from_slice(&psk_auth(params.psk, &signed));
    let parts = [
        (payload::IDI, id),
        (payload::AUTH, auth),
        (payload::SA, esp_offer(params.ciphers, params.spi, false)),
        (payload::TSI, ts_body(params.local.0, params.local.1)),
        (payload::TSR, ts_body(params.remote.0, params.remote.1)),
    ];
    let inner = emit_chain(&parts).ok_or(AuthError::Unexpected)?;
    let header = Header {
        spi_i: agreed.spi_i,
        spi_r: agreed.spi_r,
        next_payload: payload::SK,
        version: VERSION,
        exchange: exchange::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: 1,
        length: 0,
    };
    let key = SkKey::new(agreed.cipher, &agreed.keys.sk_ei)?;
    let bytes = key.seal(header, payload::IDI, &inner, 1)?;
    Ok(AuthRequest {
        bytes,
        our_spi: params.spi,
    })
}

/// Reads the responder's IKE_AUTH answer: opens it, checks the
/// responder's AUTH over `init_response` (the IKE_SA_INIT answer's bytes),
/// and takes the child SA it chose.
///
/// # Errors
/// Why the answer is not taken.
pub fn read_auth_response(
    agreed: &Agreed,
    init_response: &[u8],
    sent: &AuthRequest,
    answer: &[u8],
    params: &AuthParams<'_>,
) -> Result<ChildSa, AuthError> {
    let (_, bytes, inner) = open_auth(agreed, true, answer)?;
    let body = |kind: u8| body_of(&bytes, &inner, kind);
    if let Some(kind) = error_notify(&bytes, &inner) {
        return Err(AuthError::Refused(kind));
    }
    let idr = body(payload::IDR).ok_or(AuthError::Missing("IDr"))?;
    if idr != id_body(params.peer_id).as_slice() {
        return Err(AuthError::Authentication);
    }
    let auth = body(payload::AUTH).ok_or(AuthError::Missing("AUTH"))?;
    let [AUTH_SHARED_KEY, _, _, _, mac @ ..] = auth else {
        return Err(AuthError::Missing("AUTH"));
    };
    let maced_id = prf(&agreed.keys.sk_pr, idr);
    let signed = [init_response, &agreed.nonce_i, &maced_id].concat();
    if !auth_matches(mac, &psk_auth(params.psk, &signed)) {
        return Err(AuthError::Authentication);
    }
    let sa = body(payload::SA).ok_or(AuthError::Missing("SA"))?;
    let chosen = proposals(sa).map_err(|_| AuthError::Missing("SA"))?;
    let choice: EspChoice = choose_esp(&chosen, params.ciphers).ok_or(AuthError::NoProposal)?;
    let ts_i = body(payload::TSI)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(AuthError::Missing("TSi"))?;
    let ts_r = body(payload::TSR)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(AuthError::Missing("TSr"))?;
    let len = choice.cipher.keymat_len();
    let (keys_i_to_r, keys_r_to_i) = child_keymat(
        &agreed.keys.sk_d,
        None,
        &agreed.nonce_i,
        &agreed.nonce_r,
        len,
    )
    .ok_or(AuthError::Unexpected)?;
    Ok(ChildSa {
        cipher: choice.cipher,
        our_spi: sent.our_spi,
        peer_spi: choice.peer_spi,
        ts_local: ts_i,
        ts_remote: ts_r,
        keys_i_to_r,
        keys_r_to_i,
    })
}

/// Opens the peer's IKE_AUTH message (message ID 1): the answer when we
/// initiated (`initiator`), else the request. Returns its header, its
/// decrypted bytes and the payloads inside.
fn open_auth(
    agreed: &Agreed,
    initiator: bool,
    message: &[u8],
) -> Result<(Header, Vec<u8>, Vec<super::message::PayloadRef>), AuthError> {
    let ike = super::protected::Protected::new(agreed, initiator)?;
    let opened = ike.open(message).map_err(|e| match e {
        super::protected::ProtectedError::Sealed(sk) => AuthError::Sealed(sk),
        super::protected::ProtectedError::Unexpected => AuthError::Unexpected,
    })?;
    let h = opened.header;
    if h.exchange != exchange::IKE_AUTH || h.is_response() != initiator || h.message_id != 1 {
        return Err(AuthError::Unexpected);
    }
    Ok((h, opened.bytes, opened.payloads))
}

/// Whether one of `offered` holds all of `prefix`.
pub(crate) fn covers(offered: &[TrafficSelector], (address, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    let (start, end) = (
        u32::from(address) & mask,
        (u32::from(address) & mask) | !mask,
    );
    offered.iter().any(|t| {
        t.protocol == 0
            && t.start_port == 0
            && t.end_port == u16::MAX
            && u32::from(t.start) <= start
            && end <= u32::from(t.end)
    })
}

/// The responder's side of IKE_AUTH: the initiator's request `request`
/// after `agreed` (whose IKE_SA_INIT request and answer were
/// `init_request` and `init_response`); returns the answer to send and the
/// child SA, or the refusal's reason.
///
/// # Errors
/// Why the request is refused.
pub fn respond_auth(
    agreed: &Agreed,
    init_request: &[u8],
    init_response: &[u8],
    request: &[u8],
    params: &AuthParams<'_>,
) -> Result<(Vec<u8>, ChildSa), AuthError> {
    let (h, bytes, inner) = open_auth(agreed, false, request)?;
    let body = |kind: u8| body_of(&bytes, &inner, kind);
    let idi = body(payload::IDI).ok_or(AuthError::Missing("IDi"))?;
    if idi != id_body(params.peer_id).as_slice() {
        return Err(AuthError::Authentication);
    }
    let auth = body(payload::AUTH).ok_or(AuthError::Missing("AUTH"))?;
    let [AUTH_SHARED_KEY, _, _, _, mac @ ..] = auth else {
        return Err(AuthError::Missing("AUTH"));
    };
    let maced_id = prf(&agreed.keys.sk_pi, idi);
    let signed = [init_request, &agreed.nonce_r, &maced_id].concat();
    if !auth_matches(mac, &psk_auth(params.psk, &signed)) {
        return Err(AuthError::Authentication);
    }
    let sa = body(payload::SA).ok_or(AuthError::Missing("SA"))?;
    let offered = proposals(sa).map_err(|_| AuthError::Missing("SA"))?;
    let choice = choose_esp(&offered, params.ciphers).ok_or(AuthError::NoProposal)?;
    let ts_i = body(payload::TSI)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(AuthError::Missing("TSi"))?;
    let ts_r = body(payload::TSR)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(AuthError::Missing("TSr"))?;
    if !covers(&ts_i, params.remote) || !covers(&ts_r, params.local) {
        return Err(AuthError::Refused(TS_UNACCEPTABLE));
    }
    let id = id_body(params.id);
    let maced_id = prf(&agreed.keys.sk_pr, &id);
    let signed = [init_response, &agreed.nonce_i, &maced_id].concat();
    let mut our_auth = vec![AUTH_SHARED_KEY, 0, 0, 0];
    our_auth.extend_from_slice(&psk_auth(params.psk, &signed));
    let parts = [
        (payload::IDR, id),
        (payload::AUTH, our_auth),
        (
            payload::SA,
            super::proposal::esp_accept(choice, params.spi, false),
        ),
        (payload::TSI, ts_body(params.remote.0, params.remote.1)),
        (payload::TSR, ts_body(params.local.0, params.local.1)),
    ];
    let chain_out = emit_chain(&parts).ok_or(AuthError::Unexpected)?;
    let header = Header {
        flags: flags::RESPONSE,
        ..h
    };
    let out_key = SkKey::new(agreed.cipher, &agreed.keys.sk_er)?;
    let answer = out_key.seal(header, payload::IDR, &chain_out, 1)?;
    let len = choice.cipher.keymat_len();
    let (keys_i_to_r, keys_r_to_i) = child_keymat(
        &agreed.keys.sk_d,
        None,
        &agreed.nonce_i,
        &agreed.nonce_r,
        len,
    )
    .ok_or(AuthError::Unexpected)?;
    let narrowed = |prefix: (Ipv4Addr, u8)| traffic_selectors(&ts_body(prefix.0, prefix.1));
    Ok((
        answer,
        ChildSa {
            cipher: choice.cipher,
            our_spi: params.spi,
            peer_spi: choice.peer_spi,
            ts_local: narrowed(params.local).unwrap_or_default(),
            ts_remote: narrowed(params.remote).unwrap_or_default(),
            keys_i_to_r,
            keys_r_to_i,
        },
    ))
}

/// TS_UNACCEPTABLE.
pub const TS_UNACCEPTABLE: u16 = 38;

#[cfg(test)]
mod tests;
