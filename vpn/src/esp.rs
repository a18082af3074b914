//! ESP (RFC 4303) security associations in tunnel mode with AEAD ciphers,
//! sealing and opening packets in place.
//!
//! An ESP packet with an AEAD cipher (RFC 4106 for AES-GCM, RFC 7634 for
//! ChaCha20-Poly1305) is:
//!
//! ```text
//! SPI (4) | sequence number (4) | IV (8) | ciphertext of
//!     [inner packet | padding 1, 2, 3... | pad length (1) | next header (1)]
//! | ICV (16)
//! ```
//!
//! The nonce is the SA's 4-byte salt followed by the IV; the associated data
//! is the SPI and sequence number (32-bit sequence numbers: no extended
//! sequence numbers). The IV is the packet's sequence number, unique under
//! the SA's key as RFC 4106 §3.1 asks. Keying material is the key followed
//! by the salt, as IKEv2 derives it (RFC 4106 §8.1, RFC 7634 §2).

use crate::replay::{Replay, ReplayWindow};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use std::ops::Range;
use zeroize::Zeroizing;

/// SPI and sequence number.
pub const HEADER_LEN: usize = 8;
/// The explicit IV of the AEAD ciphers here.
pub const IV_LEN: usize = 8;
/// Room a packet to seal needs before its inner packet.
pub const HEADROOM: usize = HEADER_LEN + IV_LEN;
/// The ICV of the AEAD ciphers here (16 bytes: AES-GCM-16).
pub const ICV_LEN: usize = 16;
/// The pad length and next header bytes of the trailer.
pub const TRAILER_LEN: usize = 2;
/// Most padding a trailer takes: it ends the ciphertext on a 4-byte
/// boundary (RFC 4303 §2.4), and the AEAD ciphers here are stream-like.
pub const MAX_PADDING: usize = 3;
/// Most room sealing takes after the inner packet: padding, the trailer and
/// the ICV.
pub const TAILROOM: usize = MAX_PADDING + TRAILER_LEN + ICV_LEN;
/// Bytes of the salt at the end of the keying material.
pub const SALT_LEN: usize = 4;
/// The next header of a dummy packet (RFC 4303 §2.6), dropped on receipt.
pub const NEXT_HEADER_DUMMY: u8 = 59;

/// The AEAD transforms ESP here can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-128 in GCM with a 16-byte ICV (ENCR_AES_GCM_16, 128-bit key).
    Aes128Gcm16,
    /// AES-256 in GCM with a 16-byte ICV (ENCR_AES_GCM_16, 256-bit key).
    Aes256Gcm16,
    /// ChaCha20-Poly1305 (ENCR_CHACHA20_POLY1305).
    ChaCha20Poly1305,
}

impl Cipher {
    /// Bytes of the cipher's key.
    pub fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm16 => 16,
            Cipher::Aes256Gcm16 | Cipher::ChaCha20Poly1305 => 32,
        }
    }

    /// Bytes of keying material an SA takes: the key, then the salt.
    pub fn keymat_len(self) -> usize {
        self.key_len() + SALT_LEN
    }

    pub(crate) fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm16 => &aead::AES_128_GCM,
            Cipher::Aes256Gcm16 => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// Why a packet was not sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// The keying material has the wrong length for the cipher.
    #[error("keying material of {got} bytes where the cipher takes {want}")]
    KeyLength {
        /// Bytes given.
        got: usize,
        /// Bytes the cipher takes.
        want: usize,
    },
    /// Every sequence number of the SA is used: it must be rekeyed.
    #[error("the SA's sequence numbers are used up")]
    SequenceExhausted,
    /// The buffer to seal lacks the room before the inner packet.
    #[error("no room for the ESP header before the packet")]
    NoHeadroom,
    /// The buffer to seal in place lacks the room for the trailer and ICV
    /// behind the inner packet.
    #[error("a buffer of {got} bytes where the sealed packet takes {need}")]
    NoTailroom {
        /// Bytes the sealed packet takes.
        need: usize,
        /// Bytes of the buffer.
        got: usize,
    },
    /// Too short to be an ESP packet of this cipher.
    #[error("too short for an ESP packet")]
    Truncated,
    /// Another SA's packet.
    #[error("SPI {0:#010x} is not this SA's")]
    WrongSpi(u32),
    /// Refused by the anti-replay window.
    #[error("replayed: {0}")]
    Replayed(Replay),
    /// The ICV does not verify: forged, corrupted or another key's.
    #[error("the ICV does not verify")]
    Authentication,
    /// It authenticated but its padding or pad length is wrong.
    #[error("bad padding")]
    Padding,
}

/// Bytes of padding behind an inner packet of `inner_len` bytes: enough to
/// end the trailer on a 4-byte boundary (RFC 4303 §2.4).
pub const fn padding_len(inner_len: usize) -> usize {
    (4 - (inner_len % 4 + TRAILER_LEN) % 4) % 4
}

/// Bytes of the ESP packet sealed from an inner packet of `inner_len`
/// bytes: header, IV, inner packet, padding, trailer and ICV; `None` if
/// that overflows.
pub const fn sealed_len(inner_len: usize) -> Option<usize> {
    match inner_len.checked_add(HEADROOM + TRAILER_LEN + ICV_LEN) {
        Some(len) => len.checked_add(padding_len(inner_len)),
        None => None,
    }
}

/// The SPI of an ESP packet, if it is long enough to carry one.
pub fn spi_of(packet: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(packet.get(..4)?.try_into().ok()?))
}

/// An AEAD key with its 4-byte salt, as ESP (RFC 4106, RFC 7634) and the
/// IKE encrypted payload (RFC 5282) both use it: the nonce is the salt and
/// an 8-byte IV. The keying material it was made from is wiped, and so are
/// its key schedule and salt when it goes (see `SaltedKey::wipe`).
pub(crate) struct SaltedKey {
    pub(crate) key: LessSafeKey,
    salt: [u8; SALT_LEN],
}

impl SaltedKey {
    /// The key of `cipher` from `keymat` (the key, then the salt).
    pub(crate) fn new(cipher: Cipher, keymat: &[u8]) -> Result<SaltedKey, EspError> {
        let want = cipher.keymat_len();
        if keymat.len() != want {
            return Err(EspError::KeyLength {
                got: keymat.len(),
                want,
            });
        }
        let material = Zeroizing::new(keymat.to_vec());
        let (key, salt) = material.split_at(cipher.key_len());
        let unbound =
            UnboundKey::new(cipher.algorithm(), key).map_err(|_| EspError::KeyLength {
                got: key.len(),
                want: cipher.key_len(),
            })?;
        let mut s = [0u8; SALT_LEN];
        s.copy_from_slice(salt);
        Ok(SaltedKey {
            key: LessSafeKey::new(unbound),
            salt: s,
        })
    }

    /// The nonce of the packet whose IV is `iv` (8 bytes).
    pub(crate) fn nonce(&self, iv: &[u8]) -> Nonce {
        let mut n = [0u8; aead::NONCE_LEN];
        n[..SALT_LEN].copy_from_slice(&self.salt);
        n[SALT_LEN..].copy_from_slice(iv);
        Nonce::assume_unique_for_key(n)
    }

    /// Overwrites the key schedule and the salt where they lie. *ring* does
    /// not wipe its keys, and its key types cannot be zeroed byte by byte
    /// without `unsafe`; so the key is replaced in place by the key of the
    /// same algorithm made from zeros, whose schedule fills the same fields
    /// (same algorithm, same variant) with values that reveal nothing. The
    /// store is kept from being elided as dead by `black_box`. This is the
    /// best effort `zeroize` itself makes: copies the compiler made on the
    /// stack while the key was built are beyond reach.
    fn wipe(&mut self) {
        let algorithm = self.key.algorithm();
        let zeros = Zeroizing::new([0u8; 32]);
        if let Some(zeros) = zeros.get(..algorithm.key_len())
            && let Ok(unbound) = UnboundKey::new(algorithm, zeros)
        {
            self.key = LessSafeKey::new(unbound);
            std::hint::black_box(&self.key);
        }
        zeroize::Zeroize::zeroize(&mut self.salt);
    }
}

impl Drop for SaltedKey {
    /// Wipes the key and salt (see [`SaltedKey::wipe`]).
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Counters of an outbound SA.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboundStats {
    /// Packets sealed.
    pub packets: u64,
    /// Bytes of inner packets sealed.
    pub bytes: u64,
}

/// The sending side of an SA.
pub struct OutboundSa {
    spi: u32,
    seq: u32,
    key: SaltedKey,
    /// What it sealed.
    pub stats: OutboundStats,
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    /// An SA sending under `spi` with `cipher` keyed by `keymat` (key, then
    /// salt).
    ///
    /// # Errors
    /// [`EspError::KeyLength`] for keying material of the wrong length.
    pub fn new(cipher: Cipher, spi: u32, keymat: &[u8]) -> Result<Self, EspError> {
        Ok(OutboundSa {
            spi,
            seq: 0,
            key: SaltedKey::new(cipher, keymat)?,
            stats: OutboundStats::default(),
        })
    }

    /// The SPI the peer knows this SA by.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The sequence number of the last packet sealed.
    pub fn last_seq(&self) -> u32 {
        self.seq
    }

    /// Seals in place the inner packet at `packet[HEADROOM..]`, whose
    /// protocol is `next_header` (4 for IPv4, 41 for IPv6): the first
    /// `HEADROOM` bytes get the ESP header and IV, the trailer and ICV are
    /// appended. With capacity for them `packet` does not reallocate.
    ///
    /// # Errors
    /// [`EspError::NoHeadroom`], or [`EspError::SequenceExhausted`] once the
    /// SA has sent 2^32 - 1 packets (it must be rekeyed before). On an error
    /// `packet` is left as it was.
    pub fn seal(&mut self, packet: &mut Vec<u8>, next_header: u8) -> Result<(), EspError> {
        if packet.len() < HEADROOM {
            return Err(EspError::NoHeadroom);
        }
        let inner = packet.len() - HEADROOM;
        let sealed = sealed_len(inner).ok_or(EspError::NoTailroom {
            need: usize::MAX,
            got: packet.len(),
        })?;
        packet.resize(sealed, 0);
        match self.seal_in_place(packet, inner, next_header) {
            Ok(len) => {
                packet.truncate(len);
                Ok(())
            }
            Err(err) => {
                packet.truncate(HEADROOM + inner);
                Err(err)
            }
        }
    }

    /// Seals in place, in a buffer of fixed size, the inner packet of
    /// `inner_len` bytes at `buffer[HEADROOM..HEADROOM + inner_len]`, whose
    /// protocol is `next_header`: the first `HEADROOM` bytes get the ESP
    /// header and IV, and the padding, trailer and ICV are written behind
    /// the inner packet (at most [`TAILROOM`] bytes; exactly
    /// [`sealed_len`]` - HEADROOM - inner_len`). Returns the length of the
    /// ESP packet, which starts at `buffer[0]`. Nothing is allocated.
    ///
    /// # Errors
    /// [`EspError::NoTailroom`] when `buffer` is shorter than
    /// `sealed_len(inner_len)`, or [`EspError::SequenceExhausted`] once the
    /// SA has sent 2^32 - 1 packets. No sequence number is used by a packet
    /// refused for its size.
    pub fn seal_in_place(
        &mut self,
        buffer: &mut [u8],
        inner_len: usize,
        next_header: u8,
    ) -> Result<usize, EspError> {
        let need = sealed_len(inner_len).unwrap_or(usize::MAX);
        if buffer.len() < need {
            return Err(EspError::NoTailroom {
                need,
                got: buffer.len(),
            });
        }
        let seq = self.seq.checked_add(1).ok_or(EspError::SequenceExhausted)?;
        self.seq = seq;
        let pad = padding_len(inner_len);
        let trailer = HEADROOM + inner_len;
        // The padding is 1, 2, 3... (RFC 4303 §2.4).
        for (i, byte) in buffer[trailer..trailer + pad].iter_mut().enumerate() {
            *byte = i as u8 + 1;
        }
        buffer[trailer + pad] = pad as u8;
        buffer[trailer + pad + 1] = next_header;
        let plain_end = trailer + pad + TRAILER_LEN;
        buffer[..4].copy_from_slice(&self.spi.to_be_bytes());
        buffer[4..8].copy_from_slice(&seq.to_be_bytes());
        // The IV is the sequence number: unique under the key (RFC 4106 §3.1).
        buffer[8..HEADROOM].copy_from_slice(&u64::from(seq).to_be_bytes());
        let (head, rest) = buffer.split_at_mut(HEADROOM);
        let (body, tail) = rest.split_at_mut(plain_end - HEADROOM);
        let nonce = self.key.nonce(&head[HEADER_LEN..]);
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&head[..HEADER_LEN]), body)
            // ring refuses only inputs longer than the cipher allows (GCM:
            // 64 GiB), which no buffer here holds.
            .map_err(|_| EspError::NoHeadroom)?;
        tail[..ICV_LEN].copy_from_slice(tag.as_ref());
        self.stats.packets += 1;
        self.stats.bytes += inner_len as u64;
        Ok(plain_end + ICV_LEN)
    }
}

/// Counters of an inbound SA: what it delivered and what it dropped, by
/// reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InboundStats {
    /// Packets opened.
    pub packets: u64,
    /// Bytes of inner packets opened.
    pub bytes: u64,
    /// Refused by the anti-replay window.
    pub replayed: u64,
    /// Whose ICV did not verify.
    pub auth_failed: u64,
    /// Too short, or with bad padding.
    pub malformed: u64,
}

/// An opened packet: its inner packet's protocol and where it lies in the
/// buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The inner packet's protocol (4: IPv4; [`NEXT_HEADER_DUMMY`]: a dummy
    /// packet to drop).
    pub next_header: u8,
    /// The inner packet, decrypted in place.
    pub inner: Range<usize>,
    /// Its sequence number.
    pub seq: u32,
}

/// The receiving side of an SA.
pub struct InboundSa {
    spi: u32,
    key: SaltedKey,
    window: ReplayWindow,
    /// What it opened and dropped.
    pub stats: InboundStats,
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("highest", &self.window.highest())
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    /// An SA receiving under `spi` with `cipher` keyed by `keymat` (key,
    /// then salt).
    ///
    /// # Errors
    /// [`EspError::KeyLength`] for keying material of the wrong length.
    pub fn new(cipher: Cipher, spi: u32, keymat: &[u8]) -> Result<Self, EspError> {
        Ok(InboundSa {
            spi,
            key: SaltedKey::new(cipher, keymat)?,
            window: ReplayWindow::new(),
            stats: InboundStats::default(),
        })
    }

    /// The SPI this SA receives under.
    pub fn spi(&self) -> u32 {
        self.spi
    }

    /// The highest sequence number received and authenticated (0 before
    /// the first).
    pub fn highest_seq(&self) -> u32 {
        self.window.highest()
    }

    /// Opens the ESP packet `packet` in place: checks its sequence number
    /// against the replay window, verifies and decrypts it, then records the
    /// number and strips the trailer. Every refusal is counted.
    ///
    /// # Errors
    /// Why the packet is dropped; the window is moved only by packets that
    /// authenticate.
    pub fn open(&mut self, packet: &mut [u8]) -> Result<Opened, EspError> {
        let result = self.open_counted(packet);
        match result {
            Ok(ref opened) => {
                self.stats.packets += 1;
                self.stats.bytes += opened.inner.len() as u64;
            }
            Err(EspError::Replayed(_)) => self.stats.replayed += 1,
            Err(EspError::Authentication) => self.stats.auth_failed += 1,
            Err(_) => self.stats.malformed += 1,
        }
        result
    }

    fn open_counted(&mut self, packet: &mut [u8]) -> Result<Opened, EspError> {
        if packet.len() < HEADROOM + 2 + ICV_LEN {
            return Err(EspError::Truncated);
        }
        let spi = spi_of(packet).ok_or(EspError::Truncated)?;
        if spi != self.spi {
            return Err(EspError::WrongSpi(spi));
        }
        let seq = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        self.window.check(seq).map_err(EspError::Replayed)?;
        let (head, body) = packet.split_at_mut(HEADROOM);
        let nonce = self.key.nonce(&head[HEADER_LEN..]);
        let plain = self
            .key
            .key
            .open_in_place(nonce, Aad::from(&head[..HEADER_LEN]), body)
            .map_err(|_| EspError::Authentication)?;
        let len = plain.len();
        self.window.accept(seq).map_err(EspError::Replayed)?;
        let next_header = plain[len - 1];
        let pad = usize::from(plain[len - 2]);
        if pad + 2 > len {
            return Err(EspError::Padding);
        }
        let inner_len = len - 2 - pad;
        // The padding is 1, 2, 3... (§2.4: the default a receiver checks).
        if !plain[inner_len..len - 2]
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1)
        {
            return Err(EspError::Padding);
        }
        Ok(Opened {
            next_header,
            inner: HEADROOM..HEADROOM + inner_len,
            seq,
        })
    }
}

#[cfg(test)]
mod tests;
