//! Stateless cookies against half-open IKE_SA_INIT floods (RFC 7296 §2.6):
//! under load the responder answers a request without a valid cookie with
//! a COOKIE notify and keeps nothing; the cookie is a MAC of the request's
//! Ni, source address and SPIi under a secret the responder changes now
//! and then (the previous one still accepted), so only a peer that receives
//! at its address can come back with it.

use super::message::{Message, Notify, payload};
use super::sa_init::notify::COOKIE;
use ring::hmac;
use std::net::SocketAddrV4;

/// Bytes of a cookie: a version byte and a truncated MAC.
pub const COOKIE_LEN: usize = 1 + 16;

/// The responder's cookie secrets.
pub struct CookieJar {
    version: u8,
    current: hmac::Key,
    previous: Option<hmac::Key>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// What a request's cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It carries a valid cookie: go on.
    Valid,
    /// Answer with this cookie (and keep nothing).
    Demand(Vec<u8>),
}

fn fresh_key() -> Option<hmac::Key> {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret[..]).ok()?;
    Some(hmac::Key::new(hmac::HMAC_SHA256, &secret[..]))
}

impl CookieJar {
    /// A jar with a fresh random secret; `None` without randomness.
    pub fn new() -> Option<CookieJar> {
        Some(CookieJar {
            version: 0,
            current: fresh_key()?,
            previous: None,
        })
    }

    /// Changes the secret; cookies of the one before stay valid until the
    /// next change. `false` without randomness (the jar is unchanged).
    pub fn rotate(&mut self) -> bool {
        let Some(next) = fresh_key() else {
            return false;
        };
        self.previous = Some(std::mem::replace(&mut self.current, next));
        self.version = self.version.wrapping_add(1);
        true
    }

    fn cookie(
        key: &hmac::Key,
        version: u8,
        nonce: &[u8],
        from: SocketAddrV4,
        spi_i: u64,
    ) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(nonce);
        ctx.update(&from.ip().octets());
        ctx.update(&from.port().to_be_bytes());
        ctx.update(&spi_i.to_be_bytes());
        let tag = ctx.sign();
        let mut out = vec![version];
        out.extend_from_slice(&tag.as_ref()[..COOKIE_LEN - 1]);
        out
    }

    /// Whether the IKE_SA_INIT request `bytes` from `from` carries a valid
    /// cookie (as its first payload), or the cookie to demand. A request
    /// that does not parse gets a demand too (it will be refused later).
    pub fn check(&self, bytes: &[u8], from: SocketAddrV4) -> Verdict {
        let Ok(m) = Message::parse(bytes) else {
            return Verdict::Demand(Vec::new());
        };
        let nonce = m
            .find(payload::NONCE)
            .map(|p| &bytes[p.body.clone()])
            .unwrap_or_default();
        let spi_i = m.header.spi_i;
        let expected = Self::cookie(&self.current, self.version, nonce, from, spi_i);
        let offered = m
            .payloads
            .first()
            .filter(|p| p.kind == payload::NOTIFY)
            .and_then(|p| Notify::parse(&bytes[p.body.clone()]).ok())
            .filter(|n| n.kind == COOKIE)
            .map(|n| n.data);
        if let Some(cookie) = offered {
            let previous = self
                .previous
                .as_ref()
                .map(|k| Self::cookie(k, self.version.wrapping_sub(1), nonce, from, spi_i));
            let matches = |c: &[u8]| c.len() == cookie.len() && ring_eq(c, cookie);
            if matches(&expected) || previous.as_deref().is_some_and(matches) {
                return Verdict::Valid;
            }
        }
        Verdict::Demand(expected)
    }
}

fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::Cipher;
    use crate::ike::dh::KeyPair;
    use crate::ike::sa_init::request;

    fn at(text: &str) -> SocketAddrV4 {
        text.parse().unwrap()
    }

    #[test]
    fn a_request_comes_back_with_its_cookie_and_is_let_in() {
        let mut jar = CookieJar::new().unwrap();
        let pair = KeyPair::generate().unwrap();
        let (a, b) = (at("192.0.2.1:500"), at("192.0.2.2:500"));
        let first = request(5, &pair, &[3; 32], &[Cipher::Aes256Gcm16], None, a, b);
        let Verdict::Demand(cookie) = jar.check(&first.bytes, a) else {
            panic!("a first request is asked for a cookie");
        };
        assert_eq!(cookie.len(), COOKIE_LEN);
        let again = request(
            5,
            &pair,
            &[3; 32],
            &[Cipher::Aes256Gcm16],
            Some(&cookie),
            a,
            b,
        );
        assert_eq!(jar.check(&again.bytes, a), Verdict::Valid);
        // From another address (a spoofer who never saw the cookie's
        // answer could not have it; one replaying it elsewhere fails).
        assert!(matches!(
            jar.check(&again.bytes, at("203.0.113.7:500")),
            Verdict::Demand(_)
        ));
        // After one rotation the cookie still works, after two it does not.
        assert!(jar.rotate());
        assert_eq!(jar.check(&again.bytes, a), Verdict::Valid);
        assert!(jar.rotate());
        assert!(matches!(jar.check(&again.bytes, a), Verdict::Demand(_)));
        // A forged cookie.
        let mut forged = cookie.clone();
        forged[5] ^= 1;
        let bad = request(
            5,
            &pair,
            &[3; 32],
            &[Cipher::Aes256Gcm16],
            Some(&forged),
            a,
            b,
        );
        assert!(matches!(jar.check(&bad.bytes, a), Verdict::Demand(_)));
        assert!(matches!(jar.check(b"junk", a), Verdict::Demand(_)));
    }
}
