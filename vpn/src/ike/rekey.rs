//! CREATE_CHILD_SA rekeys, initiator side: of a child SA (RFC 7296
//! §1.3.3: REKEY_SA naming the old SA, a new ESP proposal under a new SPI,
//! a new nonce, the same traffic selectors), whose answer gives the new
//! child SA with keys from SK_d and the new nonces; and of the IKE SA
//! itself (§1.3.2, §2.18). The old SA is deleted afterwards (make before
//! break). The responder's side is in [`super::rekey_responder`].

use super::auth::{ChildSa, ts_body};
use super::keys::child_keymat;
use super::message::{body_of, emit_chain, error_notify};
use super::message::{exchange, payload, proposals, traffic_selectors};
use super::proposal::{PROTO_ESP, choose_esp, esp_offer};
use super::protected::{Opened, Protected, ProtectedError};
use super::sk::SkError;
use crate::esp::Cipher;
use std::net::Ipv4Addr;

/// REKEY_SA.
pub const REKEY_SA: u16 = 16393;

/// Why a rekey answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RekeyError {
    /// Not an answer of this SA, or it does not open.
    #[error(transparent)]
    Protected(#[from] ProtectedError),
    /// Not the answer expected.
    #[error("not the CREATE_CHILD_SA answer expected")]
    Unexpected,
    /// Refused by the peer.
    #[error("refused by the peer (notify {0})")]
    Refused(u16),
    /// A payload is missing or malformed, or the proposal is not ours.
    #[error("missing or malformed {0}")]
    Missing(&'static str),
    /// We refuse the peer's request with this notify (as its responder).
    #[error("refused with notify {0}")]
    Unacceptable(u16),
}

/// Opens the peer's answer to our CREATE_CHILD_SA request `message_id`,
/// refused if it carries an error notify.
fn open_answer(
    ike: &Protected,
    message_id: u32,
    answer: &[u8],
) -> Result<super::protected::Opened, RekeyError> {
    let opened = ike.open(answer)?;
    check_answer(&opened, message_id)?;
    Ok(opened)
}

/// Whether `opened` is the answer to our CREATE_CHILD_SA request
/// `message_id`, and not a refusal.
fn check_answer(opened: &Opened, message_id: u32) -> Result<(), RekeyError> {
    let h = opened.header;
    if h.exchange != exchange::CREATE_CHILD_SA || !h.is_response() || h.message_id != message_id {
        return Err(RekeyError::Unexpected);
    }
    if let Some(kind) = error_notify(&opened.bytes, &opened.payloads) {
        return Err(RekeyError::Refused(kind));
    }
    Ok(())
}

/// A rekey request under way.
#[derive(Debug)]
pub struct RekeyRequest {
    /// The message.
    pub bytes: Vec<u8>,
    /// Its message ID.
    pub message_id: u32,
    /// The new SA's inbound SPI.
    pub new_spi: u32,
    /// Our new nonce.
    pub nonce: Vec<u8>,
}

/// The request rekeying the child SA we receive under `old_spi`, between
/// `local` and `remote`.
///
/// # Errors
/// From sealing.
#[allow(clippy::too_many_arguments)]
pub fn rekey_request(
    ike: &mut Protected,
    message_id: u32,
    old_spi: u32,
    new_spi: u32,
    ciphers: &[Cipher],
    nonce: &[u8],
    local: (Ipv4Addr, u8),
    remote: (Ipv4Addr, u8),
) -> Result<RekeyRequest, SkError> {
    child_request(
        ike,
        message_id,
        Some(old_spi),
        new_spi,
        ciphers,
        nonce,
        local,
        remote,
    )
}

/// A CREATE_CHILD_SA request for a child SA received under `new_spi`:
/// the rekey of the one we receive under `old_spi`, or with `None` a new
/// child SA of its own (RFC 7296 §1.3.1), as when the IKE SA has none
/// left. Its answer reads with [`read_rekey_response`] either way.
///
/// # Errors
/// From sealing.
#[allow(clippy::too_many_arguments)]
pub fn child_request(
    ike: &mut Protected,
    message_id: u32,
    old_spi: Option<u32>,
    new_spi: u32,
    ciphers: &[Cipher],
    nonce: &[u8],
    local: (Ipv4Addr, u8),
    remote: (Ipv4Addr, u8),
) -> Result<RekeyRequest, SkError> {
    let mut parts = Vec::with_capacity(5);
    if let Some(old_spi) = old_spi {
        let mut rekey = vec![PROTO_ESP, 4];
        rekey.extend_from_slice(&REKEY_SA.to_be_bytes());
        rekey.extend_from_slice(&old_spi.to_be_bytes());
        parts.push((payload::NOTIFY, rekey));
    }
    parts.extend([
        (payload::SA, esp_offer(ciphers, new_spi, false)),
        (payload::NONCE, nonce.to_vec()),
        (payload::TSI, ts_body(local.0, local.1)),
        (payload::TSR, ts_body(remote.0, remote.1)),
    ]);
    let inner = emit_chain(&parts).ok_or(SkError::TooLong)?;
    let first = parts.first().map_or(payload::NONE, |p| p.0);
    let bytes = ike.seal(exchange::CREATE_CHILD_SA, message_id, false, first, &inner)?;
    Ok(RekeyRequest {
        bytes,
        message_id,
        new_spi,
        nonce: nonce.to_vec(),
    })
}

/// The new child SA from the answer to `sent`. The keys' directions
/// follow the rekey exchange's initiator (us), whichever side first
/// initiated the IKE SA.
///
/// # Errors
/// Why the answer is not taken.
pub fn read_rekey_response(
    ike: &Protected,
    sk_d: &[u8],
    sent: &RekeyRequest,
    answer: &[u8],
    ciphers: &[Cipher],
) -> Result<ChildSa, RekeyError> {
    let opened = open_answer(ike, sent.message_id, answer)?;
    read_rekey_opened(&opened, sk_d, sent, ciphers)
}

/// [`read_rekey_response`] of an answer already opened (by the IKE SA's
/// [`Protected::open`]).
///
/// # Errors
/// Why the answer is not taken.
pub fn read_rekey_opened(
    opened: &Opened,
    sk_d: &[u8],
    sent: &RekeyRequest,
    ciphers: &[Cipher],
) -> Result<ChildSa, RekeyError> {
    check_answer(opened, sent.message_id)?;
    let body = |kind: u8| body_of(&opened.bytes, &opened.payloads, kind);
    let sa = body(payload::SA).ok_or(RekeyError::Missing("SA"))?;
    let chosen = proposals(sa).map_err(|_| RekeyError::Missing("SA"))?;
    let choice = choose_esp(&chosen, ciphers).ok_or(RekeyError::Missing("proposal"))?;
    let nonce_r = body(payload::NONCE).ok_or(RekeyError::Missing("Nonce"))?;
    let ts_i = body(payload::TSI)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(RekeyError::Missing("TSi"))?;
    let ts_r = body(payload::TSR)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(RekeyError::Missing("TSr"))?;
    let (keys_i_to_r, keys_r_to_i) =
        child_keymat(sk_d, None, &sent.nonce, nonce_r, choice.cipher.keymat_len())
            .ok_or(RekeyError::Unexpected)?;
    Ok(ChildSa {
        cipher: choice.cipher,
        our_spi: sent.new_spi,
        peer_spi: choice.peer_spi,
        ts_local: ts_i,
        ts_remote: ts_r,
        keys_i_to_r,
        keys_r_to_i,
    })
}

/// An IKE SA rekey under way.
#[derive(Debug)]
pub struct IkeRekeyRequest {
    /// The message (on the old IKE SA).
    pub bytes: Vec<u8>,
    /// Its message ID.
    pub message_id: u32,
    /// Our SPI of the new IKE SA.
    pub new_spi: u64,
    /// Our new nonce.
    pub nonce: Vec<u8>,
}

/// The CREATE_CHILD_SA request rekeying the IKE SA itself (§1.3.2): an
/// IKE proposal under our new SPI, a new nonce and a new Curve25519 value.
///
/// # Errors
/// From sealing.
pub fn ike_rekey_request(
    ike: &mut Protected,
    message_id: u32,
    new_spi: u64,
    ciphers: &[Cipher],
    nonce: &[u8],
    pair: &super::dh::KeyPair,
) -> Result<IkeRekeyRequest, SkError> {
    let mut ke = vec![0, super::dh::GROUP_CURVE25519 as u8, 0, 0];
    ke.extend_from_slice(&pair.public());
    let parts = [
        (
            payload::SA,
            super::proposal::ike_offer(ciphers, &new_spi.to_be_bytes()),
        ),
        (payload::NONCE, nonce.to_vec()),
        (payload::KE, ke),
    ];
    let inner = emit_chain(&parts).ok_or(SkError::TooLong)?;
    let bytes = ike.seal(
        exchange::CREATE_CHILD_SA,
        message_id,
        false,
        payload::SA,
        &inner,
    )?;
    Ok(IkeRekeyRequest {
        bytes,
        message_id,
        new_spi,
        nonce: nonce.to_vec(),
    })
}

/// The new IKE SA from the answer to `sent` (we initiated the rekey, so
/// we are the new SA's initiator): SKEYSEED = prf(SK_d (old), g^ir (new) |
/// Ni | Nr), keys over the new SPIs.
///
/// # Errors
/// Why the answer is not taken.
pub fn read_ike_rekey_response(
    ike: &Protected,
    old: &super::sa_init::Agreed,
    sent: &IkeRekeyRequest,
    answer: &[u8],
    pair: &super::dh::KeyPair,
    ciphers: &[Cipher],
) -> Result<super::sa_init::Agreed, RekeyError> {
    let opened = open_answer(ike, sent.message_id, answer)?;
    read_ike_rekey_opened(&opened, old, sent, pair, ciphers)
}

/// [`read_ike_rekey_response`] of an answer already opened.
///
/// # Errors
/// Why the answer is not taken.
pub fn read_ike_rekey_opened(
    opened: &Opened,
    old: &super::sa_init::Agreed,
    sent: &IkeRekeyRequest,
    pair: &super::dh::KeyPair,
    ciphers: &[Cipher],
) -> Result<super::sa_init::Agreed, RekeyError> {
    check_answer(opened, sent.message_id)?;
    let body = |kind: u8| body_of(&opened.bytes, &opened.payloads, kind);
    let sa = body(payload::SA).ok_or(RekeyError::Missing("SA"))?;
    let chosen = proposals(sa).map_err(|_| RekeyError::Missing("SA"))?;
    let [proposal] = chosen.as_slice() else {
        return Err(RekeyError::Missing("SA"));
    };
    let choice = super::proposal::choose_ike(std::slice::from_ref(proposal), ciphers)
        .ok_or(RekeyError::Missing("proposal"))?;
    let spi: [u8; 8] = proposal
        .spi
        .try_into()
        .map_err(|_| RekeyError::Missing("SPI"))?;
    let spi_r = u64::from_be_bytes(spi);
    let nonce_r = body(payload::NONCE).ok_or(RekeyError::Missing("Nonce"))?;
    let ke = body(payload::KE)
        .and_then(|b| super::message::KeyExchange::parse(b).ok())
        .filter(|k| k.group == super::dh::GROUP_CURVE25519)
        .ok_or(RekeyError::Missing("KE"))?;
    let shared = pair
        .shared(ke.data)
        .map_err(|_| RekeyError::Missing("KE"))?;
    let seed = super::keys::rekey_skeyseed(&old.keys.sk_d, &shared, &sent.nonce, nonce_r);
    let keys = super::keys::IkeKeys::derive(
        &seed,
        &sent.nonce,
        nonce_r,
        sent.new_spi,
        spi_r,
        0,
        choice.cipher.keymat_len(),
    )
    .ok_or(RekeyError::Unexpected)?;
    Ok(super::sa_init::Agreed {
        spi_i: sent.new_spi,
        spi_r,
        cipher: choice.cipher,
        nonce_i: sent.nonce.clone(),
        nonce_r: nonce_r.to_vec(),
        keys,
        nat: old.nat,
    })
}
