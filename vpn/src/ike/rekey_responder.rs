//! CREATE_CHILD_SA, responder side (RFC 7296 §1.3): what the peer's
//! request asks for (a child SA rekey, the IKE SA's rekey, or a new child
//! SA), and the answers: [`respond_child_rekey`] answers a new child SA's
//! request as well as a rekey's (the two differ only by REKEY_SA). The
//! keys' directions follow the exchange: the peer initiated it, so its
//! nonce comes first and what it sends is "initiator to responder".

use super::auth::{ChildSa, covers, ts_body};
use super::dh::{GROUP_CURVE25519, KeyPair};
use super::keys::{IkeKeys, child_keymat, rekey_skeyseed};
use super::message::{KeyExchange, Notify, body_of, emit_chain};
use super::message::{exchange, payload, proposals, traffic_selectors};
use super::proposal::{PROTO_ESP, PROTO_IKE, choose_esp, choose_ike, esp_accept, ike_accept};
use super::protected::{Opened, Protected};
use super::rekey::{REKEY_SA, RekeyError};
use super::sa_init::{Agreed, ke_body, notify, valid_nonce};
use crate::esp::Cipher;
use std::net::Ipv4Addr;

/// What a CREATE_CHILD_SA request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateChild {
    /// Rekey the child SA the peer receives under `old_spi` (our outbound
    /// SPI of it).
    RekeyChild {
        /// The peer's inbound SPI of the child SA to rekey.
        old_spi: u32,
    },
    /// Rekey the IKE SA the request came on.
    RekeyIke,
    /// A child SA of its own (a connection here takes one only when it
    /// has none left).
    NewChild,
}

/// What the opened CREATE_CHILD_SA request `opened` asks for.
///
/// # Errors
/// [`RekeyError::Unacceptable`] with INVALID_SYNTAX when it is none of
/// them (no SA payload, or one that does not parse).
pub fn classify(opened: &Opened) -> Result<CreateChild, RekeyError> {
    let h = opened.header;
    if h.exchange != exchange::CREATE_CHILD_SA || h.is_response() {
        return Err(RekeyError::Unexpected);
    }
    let syntax = RekeyError::Unacceptable(notify::INVALID_SYNTAX);
    let sa = body_of(&opened.bytes, &opened.payloads, payload::SA).ok_or(syntax.clone())?;
    let offered = proposals(sa).map_err(|_| syntax.clone())?;
    if offered.iter().all(|p| p.protocol == PROTO_IKE) {
        return Ok(CreateChild::RekeyIke);
    }
    let rekey = opened
        .payloads
        .iter()
        .filter(|p| p.kind == payload::NOTIFY)
        .filter_map(|p| Notify::parse(opened.bytes.get(p.body.clone())?).ok())
        .find(|n| n.kind == REKEY_SA);
    match rekey {
        Some(n) if n.protocol == PROTO_ESP => {
            let spi: [u8; 4] = n.spi.try_into().map_err(|_| syntax)?;
            Ok(CreateChild::RekeyChild {
                old_spi: u32::from_be_bytes(spi),
            })
        }
        Some(_) => Err(syntax),
        None => Ok(CreateChild::NewChild),
    }
}

/// Our side of a child SA rekey the peer asked for.
#[derive(Debug, Clone)]
pub struct ChildRekeyParams<'a> {
    /// Child SA ciphers, by preference.
    pub ciphers: &'a [Cipher],
    /// Our side's prefix (the request's TSr must hold it).
    pub local: (Ipv4Addr, u8),
    /// The peer's side's prefix (the request's TSi must hold it).
    pub remote: (Ipv4Addr, u8),
    /// The SPI the new child SA is received under here.
    pub spi: u32,
}

/// The answer to a peer's child SA rekey and what it made.
#[derive(Debug)]
pub struct ChildRekeyAnswer {
    /// The sealed answer.
    pub bytes: Vec<u8>,
    /// The new child SA; `keys_i_to_r` is what the peer sends.
    pub child: ChildSa,
    /// The peer's nonce (Ni of this exchange).
    pub nonce_i: Vec<u8>,
}

/// The answer to the opened child SA rekey request `opened` (whose SA it
/// is the caller has checked with [`classify`]), with our nonce `nonce_r`;
/// a request asking for PFS gets a Curve25519 exchange of its own.
///
/// # Errors
/// [`RekeyError::Unacceptable`] with the notify to refuse it with
/// (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, TS_UNACCEPTABLE,
/// INVALID_SYNTAX); [`RekeyError::Protected`] from sealing.
pub fn respond_child_rekey(
    ike: &mut Protected,
    sk_d: &[u8],
    opened: &Opened,
    nonce_r: &[u8],
    params: &ChildRekeyParams<'_>,
) -> Result<ChildRekeyAnswer, RekeyError> {
    let body = |kind: u8| body_of(&opened.bytes, &opened.payloads, kind);
    let syntax = RekeyError::Unacceptable(notify::INVALID_SYNTAX);
    let sa = body(payload::SA).ok_or(syntax.clone())?;
    let offered = proposals(sa).map_err(|_| syntax.clone())?;
    let choice = choose_esp(&offered, params.ciphers)
        .ok_or(RekeyError::Unacceptable(notify::NO_PROPOSAL_CHOSEN))?;
    let nonce_i = body(payload::NONCE)
        .filter(|n| valid_nonce(n))
        .ok_or(syntax.clone())?;
    let ts_i = body(payload::TSI)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(syntax.clone())?;
    let ts_r = body(payload::TSR)
        .and_then(|b| traffic_selectors(b).ok())
        .ok_or(syntax)?;
    if !covers(&ts_i, params.remote) || !covers(&ts_r, params.local) {
        return Err(RekeyError::Unacceptable(super::auth::TS_UNACCEPTABLE));
    }
    // PFS: a KE payload, which the chosen proposal must name.
    let chosen_dh = offered
        .iter()
        .find(|p| p.number == choice.number && p.protocol == PROTO_ESP)
        .is_some_and(super::proposal::names_curve25519);
    let ke = body(payload::KE).map(KeyExchange::parse);
    let (shared, pair) = match ke {
        None => (None, None),
        Some(Ok(ke)) if ke.group == GROUP_CURVE25519 && chosen_dh => {
            let pair = KeyPair::generate().map_err(|_| RekeyError::Unexpected)?;
            let shared = pair
                .shared(ke.data)
                .map_err(|_| RekeyError::Unacceptable(notify::INVALID_KE_PAYLOAD))?;
            (Some(shared), Some(pair))
        }
        Some(_) => return Err(RekeyError::Unacceptable(notify::INVALID_KE_PAYLOAD)),
    };
    let mut parts = vec![
        (payload::SA, esp_accept(choice, params.spi, pair.is_some())),
        (payload::NONCE, nonce_r.to_vec()),
    ];
    if let Some(pair) = &pair {
        parts.push((payload::KE, ke_body(pair)));
    }
    parts.push((payload::TSI, ts_body(params.remote.0, params.remote.1)));
    parts.push((payload::TSR, ts_body(params.local.0, params.local.1)));
    let inner = emit_chain(&parts).ok_or(RekeyError::Unexpected)?;
    let (keys_i_to_r, keys_r_to_i) = child_keymat(
        sk_d,
        shared.as_ref().map(|s| &s[..]),
        nonce_i,
        nonce_r,
        choice.cipher.keymat_len(),
    )
    .ok_or(RekeyError::Unexpected)?;
    let bytes = ike
        .seal(
            exchange::CREATE_CHILD_SA,
            opened.header.message_id,
            true,
            payload::SA,
            &inner,
        )
        .map_err(|e| RekeyError::Protected(e.into()))?;
    let narrowed = |prefix: (Ipv4Addr, u8)| traffic_selectors(&ts_body(prefix.0, prefix.1));
    Ok(ChildRekeyAnswer {
        bytes,
        child: ChildSa {
            cipher: choice.cipher,
            our_spi: params.spi,
            peer_spi: choice.peer_spi,
            ts_local: narrowed(params.local).unwrap_or_default(),
            ts_remote: narrowed(params.remote).unwrap_or_default(),
            keys_i_to_r,
            keys_r_to_i,
        },
        nonce_i: nonce_i.to_vec(),
    })
}

/// The answer to a peer's IKE SA rekey and the new IKE SA, whose original
/// initiator is the peer (it initiated the rekey, §2.18).
#[derive(Debug)]
pub struct IkeRekeyAnswer {
    /// The sealed answer (on the old IKE SA).
    pub bytes: Vec<u8>,
    /// The new IKE SA: the peer's SPI as SPIi, `new_spi` as SPIr.
    pub agreed: Agreed,
}

/// The answer to the opened IKE SA rekey request `opened` on the SA of
/// `old`: our new SPI `new_spi`, nonce `nonce_r` and a fresh Curve25519
/// value; SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
///
/// # Errors
/// [`RekeyError::Unacceptable`] with the notify to refuse it with;
/// [`RekeyError::Protected`] from sealing.
pub fn respond_ike_rekey(
    ike: &mut Protected,
    old: &Agreed,
    opened: &Opened,
    new_spi: u64,
    nonce_r: &[u8],
    ciphers: &[Cipher],
) -> Result<IkeRekeyAnswer, RekeyError> {
    let body = |kind: u8| body_of(&opened.bytes, &opened.payloads, kind);
    let syntax = RekeyError::Unacceptable(notify::INVALID_SYNTAX);
    let sa = body(payload::SA).ok_or(syntax.clone())?;
    let offered = proposals(sa).map_err(|_| syntax.clone())?;
    let choice = choose_ike(&offered, ciphers)
        .ok_or(RekeyError::Unacceptable(notify::NO_PROPOSAL_CHOSEN))?;
    let proposal = offered
        .iter()
        .find(|p| p.number == choice.number && p.protocol == PROTO_IKE)
        .ok_or(syntax.clone())?;
    let spi: [u8; 8] = proposal.spi.try_into().map_err(|_| syntax.clone())?;
    let spi_i = u64::from_be_bytes(spi);
    let nonce_i = body(payload::NONCE)
        .filter(|n| valid_nonce(n))
        .ok_or(syntax)?;
    let ke = body(payload::KE)
        .and_then(|b| KeyExchange::parse(b).ok())
        .filter(|k| k.group == GROUP_CURVE25519)
        .ok_or(RekeyError::Unacceptable(notify::INVALID_KE_PAYLOAD))?;
    let pair = KeyPair::generate().map_err(|_| RekeyError::Unexpected)?;
    let shared = pair
        .shared(ke.data)
        .map_err(|_| RekeyError::Unacceptable(notify::INVALID_KE_PAYLOAD))?;
    let seed = rekey_skeyseed(&old.keys.sk_d, &shared, nonce_i, nonce_r);
    let keys = IkeKeys::derive(
        &seed,
        nonce_i,
        nonce_r,
        spi_i,
        new_spi,
        0,
        choice.cipher.keymat_len(),
    )
    .ok_or(RekeyError::Unexpected)?;
    let parts = [
        (payload::SA, ike_accept(choice, &new_spi.to_be_bytes())),
        (payload::NONCE, nonce_r.to_vec()),
        (payload::KE, ke_body(&pair)),
    ];
    let inner = emit_chain(&parts).ok_or(RekeyError::Unexpected)?;
    let bytes = ike
        .seal(
            exchange::CREATE_CHILD_SA,
            opened.header.message_id,
            true,
            payload::SA,
            &inner,
        )
        .map_err(|e| RekeyError::Protected(e.into()))?;
    Ok(IkeRekeyAnswer {
        bytes,
        agreed: Agreed {
            spi_i,
            spi_r: new_spi,
            cipher: choice.cipher,
            nonce_i: nonce_i.to_vec(),
            nonce_r: nonce_r.to_vec(),
            keys,
            nat: old.nat,
        },
    })
}

#[cfg(test)]
mod tests;
