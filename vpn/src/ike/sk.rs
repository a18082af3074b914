//! The Encrypted payload (SK, RFC 7296 §3.14) with an AEAD cipher (AES-GCM
//! with a 16-byte ICV, RFC 5282): after its generic header come an 8-byte
//! IV, the ciphertext of [inner payloads | padding | pad length] and the
//! ICV. The associated data is the message from its first byte up to the
//! IV (the IKE header and the SK payload's generic header); the nonce is the
//! key's 4-byte salt followed by the IV.

use super::message::{HEADER_LEN, Header, PAYLOAD_HEADER_LEN, payload};
use crate::esp::Cipher;
use crate::esp::SaltedKey;
use ring::aead::Aad;

/// The explicit IV.
pub const IV_LEN: usize = 8;
/// The ICV.
pub const ICV_LEN: usize = 16;

/// Why an SK payload was not sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkError {
    /// The key (with its salt) has the wrong length for the cipher.
    #[error("an SK_e of {0} bytes does not fit the cipher")]
    KeyLength(usize),
    /// Too big for one message.
    #[error("the message would be too long")]
    TooLong,
    /// Not a message whose last payload is SK.
    #[error("no encrypted payload")]
    NotEncrypted,
    /// Too short for IV, ICV and pad length.
    #[error("truncated encrypted payload")]
    Truncated,
    /// The ICV does not verify.
    #[error("the ICV does not verify")]
    Authentication,
    /// The pad length runs past the plaintext.
    #[error("bad padding")]
    Padding,
}

/// One direction's SK_e (the key, then its salt) as a sealing key.
pub struct SkKey(SaltedKey);

impl std::fmt::Debug for SkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SkKey(..)")
    }
}

impl SkKey {
    /// The key for `cipher` from SK_ei or SK_er (key, then salt).
    ///
    /// # Errors
    /// [`SkError::KeyLength`].
    pub fn new(cipher: Cipher, sk_e: &[u8]) -> Result<SkKey, SkError> {
        SaltedKey::new(cipher, sk_e)
            .map(SkKey)
            .map_err(|_| SkError::KeyLength(sk_e.len()))
    }

    /// A whole message: `header` (its next payload and length are set
    /// here) and one SK payload holding the payload chain `inner` whose
    /// first payload is of type `first`, sealed with IV `iv` (unique under
    /// this key: the message ID and a counter do).
    ///
    /// # Errors
    /// [`SkError::TooLong`].
    pub fn seal(
        &self,
        mut header: Header,
        first: u8,
        inner: &[u8],
        iv: u64,
    ) -> Result<Vec<u8>, SkError> {
        let body = IV_LEN + inner.len() + 1 + ICV_LEN;
        let total = HEADER_LEN + PAYLOAD_HEADER_LEN + body;
        let payload_len = u16::try_from(PAYLOAD_HEADER_LEN + body).map_err(|_| SkError::TooLong)?;
        header.next_payload = payload::SK;
        header.length = u32::try_from(total).map_err(|_| SkError::TooLong)?;
        let mut out = Vec::with_capacity(total);
        header.emit(&mut out);
        out.extend_from_slice(&[first, 0]);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&iv.to_be_bytes());
        let at = out.len();
        out.extend_from_slice(inner);
        out.push(0); // no padding: AES-GCM needs none
        let (head, plain) = out.split_at_mut(at);
        let nonce = self.0.nonce(&head[at - IV_LEN..]);
        let tag = self
            .0
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&head[..at - IV_LEN]), plain)
            .map_err(|_| SkError::TooLong)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens the SK payload of `message` (whose last payload it must be,
    /// at `body`, the range after its generic header) in place; returns
    /// where the inner payload chain lies in `message`.
    ///
    /// # Errors
    /// Why it does not open.
    pub fn open(
        &self,
        message: &mut [u8],
        body: std::ops::Range<usize>,
    ) -> Result<std::ops::Range<usize>, SkError> {
        if body.end != message.len() || body.start < HEADER_LEN + PAYLOAD_HEADER_LEN {
            return Err(SkError::NotEncrypted);
        }
        if body.len() < IV_LEN + 1 + ICV_LEN {
            return Err(SkError::Truncated);
        }
        let start = body.start + IV_LEN;
        let (head, sealed) = message.split_at_mut(start);
        let nonce = self.0.nonce(&head[body.start..]);
        let plain = self
            .0
            .key
            .open_in_place(nonce, Aad::from(&head[..body.start]), sealed)
            .map_err(|_| SkError::Authentication)?;
        let len = plain.len();
        let pad = usize::from(plain[len - 1]);
        if pad + 1 > len {
            return Err(SkError::Padding);
        }
        Ok(start..start + len - 1 - pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::message::{Message, emit_payload, exchange, flags};

    fn header() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: 0,
            version: 0x20,
            exchange: exchange::IKE_AUTH,
            flags: flags::INITIATOR,
            message_id: 1,
            length: 0,
        }
    }

    fn sk_e() -> Vec<u8> {
        (0..36).map(|i| (i * 5 + 1) as u8).collect()
    }

    fn inner() -> Vec<u8> {
        let mut chain = Vec::new();
        emit_payload(&mut chain, payload::AUTH, &[2, 0, 0, 0, b'i', b'd']).unwrap();
        emit_payload(&mut chain, payload::NONE, &[2, 0, 0, 0, 0xaa, 0xbb, 0xcc]).unwrap();
        chain
    }

    /// The same message sealed by a separate implementation (Python's
    /// `cryptography`, on OpenSSL) from RFC 5282's layout.
    const SEALED: &str = "010203040506070811121314151617182e202308000000010000004e230000320000000000000001dcbdc9e371d51c924fcdce9148bf005afac32aa192d1db5126b9b0c2ef37837ab383cfa26b33";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sealed_as_an_independent_implementation_seals_it_and_opens() {
        let key = SkKey::new(Cipher::Aes256Gcm16, &sk_e()).unwrap();
        let mut message = key.seal(header(), payload::IDI, &inner(), 1).unwrap();
        assert_eq!(message, hex(SEALED));
        let parsed = Message::parse(&message).unwrap();
        let sk = parsed.find(payload::SK).unwrap().clone();
        assert_eq!(sk.inner_first, payload::IDI);
        let chain = key.open(&mut message, sk.body).unwrap();
        assert_eq!(&message[chain], &inner()[..]);
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_authentication() {
        let key = SkKey::new(Cipher::Aes256Gcm16, &sk_e()).unwrap();
        let message = key.seal(header(), payload::IDI, &inner(), 1).unwrap();
        let body = HEADER_LEN + PAYLOAD_HEADER_LEN..message.len();
        for byte in 0..message.len() {
            let mut bad = message.clone();
            bad[byte] ^= 0x01;
            assert!(key.open(&mut bad, body.clone()).is_err(), "byte {byte}");
        }
        let other = SkKey::new(Cipher::Aes256Gcm16, &[7; 36]).unwrap();
        assert_eq!(
            other.open(&mut message.clone(), body),
            Err(SkError::Authentication)
        );
        assert_eq!(
            SkKey::new(Cipher::Aes256Gcm16, &[0; 32]).map(|_| ()),
            Err(SkError::KeyLength(32))
        );
    }
}
