//! Curve25519 Diffie-Hellman for IKEv2 (group 31, RFC 8031): the key
//! exchange data is the 32-byte public value; a shared secret of all zeros
//! (a peer's low-order point) is refused, as RFC 8031 §2 asks.

use super::keys::Secret;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// The Transform ID of Curve25519 among DH groups.
pub const GROUP_CURVE25519: u16 = 31;
/// Bytes of a public value.
pub const PUBLIC_LEN: usize = 32;

/// Why a key exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    /// The peer's value is not 32 bytes.
    #[error("a Curve25519 public value of {0} bytes")]
    Length(usize),
    /// The shared secret is all zeros.
    #[error("the peer's public value gives an all-zero shared secret")]
    LowOrder,
    /// No randomness for a private key.
    #[error("the system gave no randomness")]
    Random,
}

/// One side's private key (wiped when dropped) and public value.
pub struct KeyPair {
    private: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public.as_bytes())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key pair from the system's randomness.
    ///
    /// # Errors
    /// [`DhError::Random`].
    pub fn generate() -> Result<KeyPair, DhError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes[..])
            .map_err(|_| DhError::Random)?;
        Ok(KeyPair::from_private(*bytes))
    }

    /// The key pair of a given private scalar (tests, vectors).
    pub fn from_private(private: [u8; 32]) -> KeyPair {
        let private = StaticSecret::from(private);
        let public = PublicKey::from(&private);
        KeyPair { private, public }
    }

    /// The public value to send in the KE payload.
    pub fn public(&self) -> [u8; PUBLIC_LEN] {
        *self.public.as_bytes()
    }

    /// g^ir from the peer's public value.
    ///
    /// # Errors
    /// A value of the wrong length, or one that gives all zeros.
    pub fn shared(&self, peer: &[u8]) -> Result<Secret, DhError> {
        let peer: [u8; PUBLIC_LEN] = peer.try_into().map_err(|_| DhError::Length(peer.len()))?;
        let shared = self.private.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(DhError::LowOrder);
        }
        Ok(Zeroizing::new(shared.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// RFC 7748 §6.1.
    #[test]
    fn the_rfc_7748_exchange() {
        let alice = KeyPair::from_private(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = KeyPair::from_private(hex32(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            alice.public(),
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob.public(),
            hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(&alice.shared(&bob.public()).unwrap()[..], &shared[..]);
        assert_eq!(&bob.shared(&alice.public()).unwrap()[..], &shared[..]);
    }

    #[test]
    fn low_order_points_and_bad_lengths_are_refused() {
        let pair = KeyPair::generate().unwrap();
        assert_eq!(pair.shared(&[0u8; 32]).map(|_| ()), Err(DhError::LowOrder));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(pair.shared(&one).map(|_| ()), Err(DhError::LowOrder));
        assert_eq!(
            pair.shared(&[9u8; 31]).map(|_| ()),
            Err(DhError::Length(31))
        );
        let other = KeyPair::generate().unwrap();
        assert_ne!(pair.public(), other.public());
    }
}
