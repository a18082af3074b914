//! IKEv2 key derivation with PRF_HMAC_SHA2_256 (RFC 7296 §2.13-2.18,
//! RFC 4868): `prf+`, SKEYSEED and the IKE SA's keys, child SAs' keying
//! material, the IKE SA rekey's SKEYSEED, and the pre-shared-key AUTH value.
//! Every secret is held in memory that is wiped when it is dropped.

use ring::hmac;
use zeroize::Zeroizing;

/// Bytes a PRF output has (SHA-256).
pub const PRF_LEN: usize = 32;

/// Longest `prf+` output (255 blocks, §2.13).
pub const MAX_PRF_PLUS: usize = 255 * PRF_LEN;

/// Secret bytes, wiped on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// `prf(key, data)`: HMAC-SHA-256.
pub fn prf(key: &[u8], data: &[u8]) -> Secret {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    Zeroizing::new(hmac::sign(&key, data).as_ref().to_vec())
}

/// `prf+(key, seed)` cut to `len` bytes: T1 = prf(K, S | 0x01), Tn =
/// prf(K, Tn-1 | S | n); `None` past 255 blocks.
pub fn prf_plus(key: &[u8], seed: &[u8], len: usize) -> Option<Secret> {
    if len > MAX_PRF_PLUS {
        return None;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = Zeroizing::new(Vec::with_capacity(len + PRF_LEN));
    let mut previous: Option<hmac::Tag> = None;
    let mut counter = 1u8;
    while out.len() < len {
        let mut context = hmac::Context::with_key(&key);
        if let Some(t) = &previous {
            context.update(t.as_ref());
        }
        context.update(seed);
        context.update(&[counter]);
        let t = context.sign();
        out.extend_from_slice(t.as_ref());
        previous = Some(t);
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    Some(out)
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (§2.14).
pub fn skeyseed(ni: &[u8], nr: &[u8], shared: &[u8]) -> Secret {
    let nonces = Zeroizing::new([ni, nr].concat());
    prf(&nonces, shared)
}

/// SKEYSEED of a rekeyed IKE SA: prf(SK_d (old), g^ir (new) | Ni | Nr)
/// (§2.18).
pub fn rekey_skeyseed(old_sk_d: &[u8], shared: &[u8], ni: &[u8], nr: &[u8]) -> Secret {
    let data = Zeroizing::new([shared, ni, nr].concat());
    prf(old_sk_d, &data)
}

/// The keys of an IKE SA. With an AEAD cipher (AES-GCM) there are no
/// integrity keys and each encryption key ends with its salt. Its `Debug`
/// shows no key.
pub struct IkeKeys {
    /// Derives the child SAs' keying material.
    pub sk_d: Secret,
    /// Integrity, initiator to responder (empty with an AEAD cipher).
    pub sk_ai: Secret,
    /// Integrity, responder to initiator.
    pub sk_ar: Secret,
    /// Encryption, initiator to responder.
    pub sk_ei: Secret,
    /// Encryption, responder to initiator.
    pub sk_er: Secret,
    /// Signs the initiator's AUTH.
    pub sk_pi: Secret,
    /// Signs the responder's AUTH.
    pub sk_pr: Secret,
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IkeKeys(..)")
    }
}

impl IkeKeys {
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} =
    /// prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) (§2.14), for integrity keys of
    /// `integ_len` bytes and encryption keys (with salt) of `encr_len`.
    pub fn derive(
        skeyseed: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
        integ_len: usize,
        encr_len: usize,
    ) -> Option<IkeKeys> {
        let seed = Zeroizing::new([ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()].concat());
        let total = 3 * PRF_LEN + 2 * integ_len + 2 * encr_len;
        let all = prf_plus(skeyseed, &seed, total)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let part = Zeroizing::new(all[at..at + n].to_vec());
            at += n;
            part
        };
        Some(IkeKeys {
            sk_d: take(PRF_LEN),
            sk_ai: take(integ_len),
            sk_ar: take(integ_len),
            sk_ei: take(encr_len),
            sk_er: take(encr_len),
            sk_pi: take(PRF_LEN),
            sk_pr: take(PRF_LEN),
        })
    }
}

/// A child SA's keying material, `len` bytes each way: KEYMAT = prf+(SK_d,
/// [g^ir (new) |] Ni | Nr) (§2.17); the initiator-to-responder keys come
/// first. Returns (initiator to responder, responder to initiator).
pub fn child_keymat(
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Option<(Secret, Secret)> {
    let seed = Zeroizing::new([shared.unwrap_or_default(), ni, nr].concat());
    let all = prf_plus(sk_d, &seed, 2 * len)?;
    Some((
        Zeroizing::new(all[..len].to_vec()),
        Zeroizing::new(all[len..].to_vec()),
    ))
}

/// The AUTH payload's data for a pre-shared key (§2.15):
/// `prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)`.
pub fn psk_auth(psk: &[u8], signed_octets: &[u8]) -> Secret {
    let pad = prf(psk, b"Key Pad for IKEv2");
    prf(&pad, signed_octets)
}

/// Compares two AUTH values in constant time.
pub fn auth_matches(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
