//! SA proposals (RFC 7296 §3.3): the ones this side offers, written as an
//! SA payload's body, and the choice among a peer's. Only AEAD ciphers are
//! spoken here, so an IKE proposal has no integrity transform; IKE takes
//! PRF_HMAC_SHA2_256 and Curve25519; ESP takes no extended sequence
//! numbers.

use super::dh::GROUP_CURVE25519;
use super::message::{Proposal, Transform};
use crate::esp::Cipher;

/// Protocol IDs.
pub const PROTO_IKE: u8 = 1;
/// ESP.
pub const PROTO_ESP: u8 = 3;

/// Transform types.
const ENCR: u8 = 1;
const PRF: u8 = 2;
const INTEG: u8 = 3;
const DH: u8 = 4;
const ESN: u8 = 5;

/// ENCR_AES_GCM_16 (with a key length attribute).
const ENCR_AES_GCM_16: u16 = 20;
/// ENCR_CHACHA20_POLY1305.
const ENCR_CHACHA20_POLY1305: u16 = 28;
/// PRF_HMAC_SHA2_256.
pub const PRF_HMAC_SHA2_256: u16 = 5;
/// No extended sequence numbers.
const ESN_NONE: u16 = 0;

/// What the two sides agreed on for an IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeChoice {
    /// The peer's proposal number.
    pub number: u8,
    /// The cipher.
    pub cipher: Cipher,
}

/// What the two sides agreed on for a child SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspChoice {
    /// The peer's proposal number.
    pub number: u8,
    /// The cipher.
    pub cipher: Cipher,
    /// The SPI the peer receives under.
    pub peer_spi: u32,
}

fn cipher_transform(cipher: Cipher) -> (u16, Option<u16>) {
    match cipher {
        Cipher::Aes128Gcm16 => (ENCR_AES_GCM_16, Some(128)),
        Cipher::Aes256Gcm16 => (ENCR_AES_GCM_16, Some(256)),
        Cipher::ChaCha20Poly1305 => (ENCR_CHACHA20_POLY1305, None),
    }
}

fn cipher_of(t: &Transform) -> Option<Cipher> {
    match (t.id, t.key_bits) {
        (ENCR_AES_GCM_16, Some(128)) => Some(Cipher::Aes128Gcm16),
        (ENCR_AES_GCM_16, Some(256)) => Some(Cipher::Aes256Gcm16),
        (ENCR_CHACHA20_POLY1305, None) => Some(Cipher::ChaCha20Poly1305),
        _ => None,
    }
}

/// Writes one transform; `last` ends the proposal's list.
fn transform(out: &mut Vec<u8>, last: bool, kind: u8, id: u16, key_bits: Option<u16>) {
    let len: u16 = if key_bits.is_some() { 12 } else { 8 };
    out.extend_from_slice(&[if last { 0 } else { 3 }, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(&id.to_be_bytes());
    if let Some(bits) = key_bits {
        out.extend_from_slice(&(0x8000u16 | 14).to_be_bytes());
        out.extend_from_slice(&bits.to_be_bytes());
    }
}

/// Writes one proposal of `transforms` (type, id, key bits).
fn proposal(
    out: &mut Vec<u8>,
    last: bool,
    number: u8,
    protocol: u8,
    spi: &[u8],
    transforms: &[(u8, u16, Option<u16>)],
) {
    let start = out.len();
    out.extend_from_slice(&[if last { 0 } else { 2 }, 0, 0, 0, number, protocol]);
    out.push(spi.len() as u8);
    out.push(transforms.len() as u8);
    out.extend_from_slice(spi);
    for (i, &(kind, id, bits)) in transforms.iter().enumerate() {
        transform(out, i + 1 == transforms.len(), kind, id, bits);
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// One proposal numbered `number` for `protocol` under `spi`: each of
/// `ciphers` as alternatives, then the transforms of the other types.
fn single(
    number: u8,
    protocol: u8,
    spi: &[u8],
    ciphers: &[Cipher],
    others: &[(u8, u16, Option<u16>)],
) -> Vec<u8> {
    let transforms: Vec<(u8, u16, Option<u16>)> = ciphers
        .iter()
        .map(|&c| {
            let (id, bits) = cipher_transform(c);
            (ENCR, id, bits)
        })
        .chain(others.iter().copied())
        .collect();
    let mut out = Vec::new();
    proposal(&mut out, true, number, protocol, spi, &transforms);
    out
}

const IKE_OTHERS: [(u8, u16, Option<u16>); 2] =
    [(PRF, PRF_HMAC_SHA2_256, None), (DH, GROUP_CURVE25519, None)];

fn esp_others(pfs: bool) -> Vec<(u8, u16, Option<u16>)> {
    let dh = pfs.then_some((DH, GROUP_CURVE25519, None));
    dh.into_iter().chain([(ESN, ESN_NONE, None)]).collect()
}

/// The body of an SA payload offering an IKE SA with each of `ciphers` in
/// turn (one proposal, the ciphers as alternatives), PRF_HMAC_SHA2_256 and
/// Curve25519. `spi` is empty in IKE_SA_INIT, the new SPI in a rekey.
pub fn ike_offer(ciphers: &[Cipher], spi: &[u8]) -> Vec<u8> {
    single(1, PROTO_IKE, spi, ciphers, &IKE_OTHERS)
}

/// The body of an SA payload offering an ESP child SA received under
/// `spi` with each of `ciphers`, without extended sequence numbers (and,
/// with `pfs`, a Curve25519 exchange of its own).
pub fn esp_offer(ciphers: &[Cipher], spi: u32, pfs: bool) -> Vec<u8> {
    single(1, PROTO_ESP, &spi.to_be_bytes(), ciphers, &esp_others(pfs))
}

/// The first of `ours` (in our order of preference) that one of the
/// peer's proposals for `protocol` accepts with every other transform
/// type it names acceptable, with that proposal.
fn choose<'p>(
    offered: &'p [Proposal<'p>],
    ours: &[Cipher],
    protocol: u8,
    acceptable: impl Fn(&Transform) -> bool,
) -> Option<(&'p Proposal<'p>, Cipher)> {
    for &cipher in ours {
        for p in offered.iter().filter(|p| p.protocol == protocol) {
            let offers_cipher = p
                .transforms
                .iter()
                .any(|t| t.kind == ENCR && cipher_of(t) == Some(cipher));
            // Every other type it names must have an alternative we take.
            let others_ok = [PRF, INTEG, DH, ESN].iter().all(|&kind| {
                let named: Vec<&Transform> =
                    p.transforms.iter().filter(|t| t.kind == kind).collect();
                named.is_empty() || named.iter().any(|t| acceptable(t))
            });
            if offers_cipher && others_ok {
                return Some((p, cipher));
            }
        }
    }
    None
}

/// Our choice among a peer's IKE proposals: an AEAD cipher of `ours`,
/// PRF_HMAC_SHA2_256 and Curve25519 (all three required).
pub fn choose_ike(offered: &[Proposal<'_>], ours: &[Cipher]) -> Option<IkeChoice> {
    let named = |p: &Proposal<'_>, kind: u8| p.transforms.iter().any(|t| t.kind == kind);
    let complete: Vec<Proposal<'_>> = offered
        .iter()
        .filter(|p| named(p, PRF) && named(p, DH) && !named(p, INTEG))
        .cloned()
        .collect();
    let (p, cipher) = choose(&complete, ours, PROTO_IKE, |t| match t.kind {
        PRF => t.id == PRF_HMAC_SHA2_256,
        DH => t.id == GROUP_CURVE25519,
        _ => false,
    })?;
    Some(IkeChoice {
        number: p.number,
        cipher,
    })
}

/// Our choice among a peer's ESP proposals: an AEAD cipher of `ours`,
/// no extended sequence numbers, Curve25519 if it asks for PFS.
pub fn choose_esp(offered: &[Proposal<'_>], ours: &[Cipher]) -> Option<EspChoice> {
    let (p, cipher) = choose(offered, ours, PROTO_ESP, |t| match t.kind {
        ESN => t.id == ESN_NONE,
        DH => t.id == GROUP_CURVE25519,
        _ => false,
    })?;
    let spi: [u8; 4] = p.spi.try_into().ok()?;
    Some(EspChoice {
        number: p.number,
        cipher,
        peer_spi: u32::from_be_bytes(spi),
    })
}

/// Whether proposal `p` asks for a Curve25519 exchange of its own (PFS
/// for a child SA).
pub fn names_curve25519(p: &Proposal<'_>) -> bool {
    p.transforms
        .iter()
        .any(|t| t.kind == DH && t.id == GROUP_CURVE25519)
}

/// The SA payload body that accepts `choice`: the one proposal, with only
/// the transforms agreed on (§2.7), under our own `spi`.
pub fn ike_accept(choice: IkeChoice, spi: &[u8]) -> Vec<u8> {
    single(choice.number, PROTO_IKE, spi, &[choice.cipher], &IKE_OTHERS)
}

/// The SA payload body that accepts an ESP `choice`, received under our
/// `spi`.
pub fn esp_accept(choice: EspChoice, spi: u32, pfs: bool) -> Vec<u8> {
    let spi = spi.to_be_bytes();
    single(
        choice.number,
        PROTO_ESP,
        &spi,
        &[choice.cipher],
        &esp_others(pfs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::message::proposals;

    const BOTH: [Cipher; 2] = [Cipher::Aes256Gcm16, Cipher::Aes128Gcm16];

    #[test]
    fn our_ike_offer_parses_and_we_choose_our_first_cipher() {
        let body = ike_offer(&BOTH, &[]);
        let offered = proposals(&body).unwrap();
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].transforms.len(), 4);
        let choice = choose_ike(&offered, &BOTH).unwrap();
        assert_eq!(
            choice,
            IkeChoice {
                number: 1,
                cipher: Cipher::Aes256Gcm16
            }
        );
        // A peer that prefers AES-128 gets AES-256 from us all the same;
        // one that only has AES-128 gets AES-128.
        let only_128 = ike_offer(&[Cipher::Aes128Gcm16], &[]);
        let choice = choose_ike(&proposals(&only_128).unwrap(), &BOTH).unwrap();
        assert_eq!(choice.cipher, Cipher::Aes128Gcm16);
        // What we accept parses, with exactly the agreed transforms.
        let accepted = ike_accept(choice, &[]);
        let back = proposals(&accepted).unwrap();
        assert_eq!(choose_ike(&back, &BOTH), Some(choice));
        assert_eq!(back[0].transforms.len(), 3);
    }

    #[test]
    fn proposals_we_cannot_take_are_refused() {
        // ChaCha20 only, when we offer AES.
        let chacha = ike_offer(&[Cipher::ChaCha20Poly1305], &[]);
        assert_eq!(choose_ike(&proposals(&chacha).unwrap(), &BOTH), None);
        // An ESP proposal where an IKE one is wanted.
        let esp = esp_offer(&BOTH, 0xc0de, false);
        assert_eq!(choose_ike(&proposals(&esp).unwrap(), &BOTH), None);
        // A proposal with a DH group we do not speak (MODP 2048, 14).
        let mut other_group = ike_offer(&BOTH, &[]);
        let at = other_group.len() - 2;
        other_group[at..].copy_from_slice(&14u16.to_be_bytes());
        assert_eq!(choose_ike(&proposals(&other_group).unwrap(), &BOTH), None);
    }

    #[test]
    fn esp_offers_and_choices_carry_the_spi() {
        let body = esp_offer(&BOTH, 0xcafe_0001, false);
        let offered = proposals(&body).unwrap();
        let choice = choose_esp(&offered, &[Cipher::Aes128Gcm16]).unwrap();
        assert_eq!(
            choice,
            EspChoice {
                number: 1,
                cipher: Cipher::Aes128Gcm16,
                peer_spi: 0xcafe_0001
            }
        );
        let accepted = esp_accept(choice, 0xbeef_0002, false);
        let back = choose_esp(&proposals(&accepted).unwrap(), &BOTH).unwrap();
        assert_eq!(back.peer_spi, 0xbeef_0002);
        // With PFS both ways.
        let pfs = esp_offer(&BOTH, 1, true);
        assert!(choose_esp(&proposals(&pfs).unwrap(), &BOTH).is_some());
    }
}
