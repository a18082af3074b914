//! The encrypted exchanges of an established IKE SA (IKE_AUTH onwards):
//! sealing a message under this side's SK_e and opening the peer's under
//! its SK_e, and the INFORMATIONAL messages built on that: the empty one
//! that checks the peer is alive (dead peer detection, RFC 7296 §2.4) and
//! the Delete of child SAs or of the IKE SA (§1.4.1), and the responses to
//! the peer's requests: deletes answered, requests refused with an error
//! notify.

use super::message::{
    Header, Message, PayloadRef, VERSION, emit_payload, exchange, flags, parse_chain, payload,
};
use super::sa_init::Agreed;
use super::sk::{SkError, SkKey};

/// Why a protected message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectedError {
    /// Not a message of this IKE SA.
    #[error("not a message of this IKE SA")]
    Unexpected,
    /// The encrypted payload does not open.
    #[error("the encrypted payload: {0}")]
    Sealed(#[from] SkError),
}

/// An opened message: its header, its decrypted bytes, and the payloads
/// inside (ranges into those bytes).
#[derive(Debug)]
pub struct Opened {
    /// The header.
    pub header: Header,
    /// The message, decrypted in place.
    pub bytes: Vec<u8>,
    /// The payloads inside the encrypted payload.
    pub payloads: Vec<PayloadRef>,
}

/// One side's keys of an established IKE SA.
pub struct Protected {
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
    out: SkKey,
    inbound: SkKey,
    next_iv: u64,
}

impl std::fmt::Debug for Protected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protected")
            .field("spi_i", &self.spi_i)
            .field("spi_r", &self.spi_r)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

impl Protected {
    /// The keys of `agreed` for the original initiator (`initiator`) or
    /// responder. IVs continue after IKE_AUTH's (IV 1).
    ///
    /// # Errors
    /// [`SkError::KeyLength`].
    pub fn new(agreed: &Agreed, initiator: bool) -> Result<Protected, SkError> {
        let (mine, theirs) = if initiator {
            (&agreed.keys.sk_ei, &agreed.keys.sk_er)
        } else {
            (&agreed.keys.sk_er, &agreed.keys.sk_ei)
        };
        Ok(Protected {
            spi_i: agreed.spi_i,
            spi_r: agreed.spi_r,
            initiator,
            out: SkKey::new(agreed.cipher, mine)?,
            inbound: SkKey::new(agreed.cipher, theirs)?,
            next_iv: 2,
        })
    }

    /// Seals a message of `exchange` with `message_id` (a request, or the
    /// response to the peer's request of that ID) holding the payload chain
    /// `inner` whose first payload is `first`.
    ///
    /// # Errors
    /// [`SkError::TooLong`].
    pub fn seal(
        &mut self,
        exchange: u8,
        message_id: u32,
        response: bool,
        first: u8,
        inner: &[u8],
    ) -> Result<Vec<u8>, SkError> {
        let mut f = if self.initiator { flags::INITIATOR } else { 0 };
        if response {
            f |= flags::RESPONSE;
        }
        let header = Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: payload::SK,
            version: VERSION,
            exchange,
            flags: f,
            message_id,
            length: 0,
        };
        let iv = self.next_iv;
        self.next_iv += 1;
        self.out.seal(header, first, inner, iv)
    }

    /// Opens a message of this IKE SA from the peer.
    ///
    /// # Errors
    /// Not of this SA, or it does not open.
    pub fn open(&self, bytes: &[u8]) -> Result<Opened, ProtectedError> {
        let mut bytes = bytes.to_vec();
        let m = Message::parse(&bytes).map_err(|_| ProtectedError::Unexpected)?;
        let h = m.header;
        // The peer's messages carry its role's flag.
        if h.spi_i != self.spi_i || h.spi_r != self.spi_r || h.from_initiator() == self.initiator {
            return Err(ProtectedError::Unexpected);
        }
        let sk = m
            .find(payload::SK)
            .ok_or(ProtectedError::Unexpected)?
            .clone();
        let chain = self.inbound.open(&mut bytes, sk.body)?;
        let payloads = parse_chain(&bytes[..chain.end], chain.start, sk.inner_first)
            .map_err(|_| ProtectedError::Unexpected)?;
        Ok(Opened {
            header: h,
            bytes,
            payloads,
        })
    }

    /// A liveness check: an empty INFORMATIONAL request.
    ///
    /// # Errors
    /// From sealing.
    pub fn liveness(&mut self, message_id: u32) -> Result<Vec<u8>, SkError> {
        self.seal(
            exchange::INFORMATIONAL,
            message_id,
            false,
            payload::NONE,
            &[],
        )
    }

    /// An INFORMATIONAL request deleting the ESP child SA the peer knows
    /// by `spi` (our inbound SPI).
    ///
    /// # Errors
    /// From sealing.
    pub fn delete_child(&mut self, message_id: u32, spi: u32) -> Result<Vec<u8>, SkError> {
        self.delete_children(message_id, &[spi])
    }

    /// An INFORMATIONAL request deleting the ESP child SAs we receive
    /// under `spis` (one Delete payload naming them all).
    ///
    /// # Errors
    /// From sealing.
    pub fn delete_children(&mut self, message_id: u32, spis: &[u32]) -> Result<Vec<u8>, SkError> {
        let mut inner = Vec::new();
        emit_payload(&mut inner, payload::NONE, &esp_delete_body(spis)).ok_or(SkError::TooLong)?;
        self.seal(
            exchange::INFORMATIONAL,
            message_id,
            false,
            payload::DELETE,
            &inner,
        )
    }

    /// The response to the peer's INFORMATIONAL request `message_id`:
    /// empty, or with one Delete payload naming our inbound `spis` of the
    /// child SAs it deleted (RFC 7296 §1.4.1).
    ///
    /// # Errors
    /// From sealing.
    pub fn informational_response(
        &mut self,
        message_id: u32,
        spis: &[u32],
    ) -> Result<Vec<u8>, SkError> {
        if spis.is_empty() {
            return self.seal(
                exchange::INFORMATIONAL,
                message_id,
                true,
                payload::NONE,
                &[],
            );
        }
        let mut inner = Vec::new();
        emit_payload(&mut inner, payload::NONE, &esp_delete_body(spis)).ok_or(SkError::TooLong)?;
        self.seal(
            exchange::INFORMATIONAL,
            message_id,
            true,
            payload::DELETE,
            &inner,
        )
    }

    /// The response to the peer's request `message_id` of `exchange`
    /// refusing it with the error notify `kind` (e.g. TEMPORARY_FAILURE,
    /// AUTHENTICATION_FAILED), encrypted (§2.21.2).
    ///
    /// # Errors
    /// From sealing.
    pub fn error_response(
        &mut self,
        exchange: u8,
        message_id: u32,
        kind: u16,
    ) -> Result<Vec<u8>, SkError> {
        let mut body = vec![0, 0];
        body.extend_from_slice(&kind.to_be_bytes());
        let mut inner = Vec::new();
        emit_payload(&mut inner, payload::NONE, &body).ok_or(SkError::TooLong)?;
        self.seal(exchange, message_id, true, payload::NOTIFY, &inner)
    }

    /// The SPIs (initiator's, responder's) of this IKE SA.
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }
}

/// A Delete payload body for ESP naming `spis`.
fn esp_delete_body(spis: &[u32]) -> Vec<u8> {
    let count = u16::try_from(spis.len()).unwrap_or(u16::MAX);
    let mut body = vec![super::proposal::PROTO_ESP, 4];
    body.extend_from_slice(&count.to_be_bytes());
    for spi in spis.iter().take(usize::from(count)) {
        body.extend_from_slice(&spi.to_be_bytes());
    }
    body
}

impl Protected {
    /// An INFORMATIONAL request deleting this IKE SA (and with it its
    /// child SAs), as after a rekey for the old one.
    ///
    /// # Errors
    /// From sealing.
    pub fn delete_ike(&mut self, message_id: u32) -> Result<Vec<u8>, SkError> {
        let mut inner = Vec::new();
        emit_payload(
            &mut inner,
            payload::NONE,
            &[super::proposal::PROTO_IKE, 0, 0, 0],
        )
        .ok_or(SkError::TooLong)?;
        self.seal(
            exchange::INFORMATIONAL,
            message_id,
            false,
            payload::DELETE,
            &inner,
        )
    }
}

/// Whether a Delete payload body deletes the IKE SA itself.
pub fn deletes_ike(body: &[u8]) -> bool {
    body.first() == Some(&super::proposal::PROTO_IKE)
}

/// The ESP SPIs a Delete payload body names.
pub fn deleted_esp_spis(body: &[u8]) -> Vec<u32> {
    let [protocol, 4, _, _, spis @ ..] = body else {
        return Vec::new();
    };
    if *protocol != super::proposal::PROTO_ESP {
        return Vec::new();
    }
    spis.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::Cipher;
    use crate::ike::dh::KeyPair;
    use crate::ike::sa_init::{read_response, request, respond};
    use std::net::SocketAddrV4;

    fn pair_of_sides() -> (Protected, Protected) {
        let both = [Cipher::Aes256Gcm16];
        let (pi, pr) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let (a, b): (SocketAddrV4, SocketAddrV4) = (
            "192.0.2.1:500".parse().unwrap(),
            "192.0.2.2:500".parse().unwrap(),
        );
        let sent = request(1, &pi, &[1; 32], &both, None, a, b);
        let (answer, r) = respond(&sent.bytes, 2, &pr, &[2; 32], &both, a, b).unwrap();
        let i = read_response(&sent, &answer, &pi, &both, b, a).unwrap();
        (
            Protected::new(&i, true).unwrap(),
            Protected::new(&r, false).unwrap(),
        )
    }

    #[test]
    fn each_side_opens_what_the_other_seals_and_not_its_own() {
        let (mut i, mut r) = pair_of_sides();
        let ping = i.liveness(2).unwrap();
        let opened = r.open(&ping).unwrap();
        assert!(opened.payloads.is_empty());
        assert_eq!(opened.header.message_id, 2);
        assert_eq!(i.open(&ping).map(|_| ()), Err(ProtectedError::Unexpected));
        let delete = r.delete_child(0, 0xabcd_0001).unwrap();
        let opened = i.open(&delete).unwrap();
        assert_eq!(opened.payloads[0].kind, payload::DELETE);
        let body = &opened.bytes[opened.payloads[0].body.clone()];
        assert_eq!(deleted_esp_spis(body), [0xabcd_0001]);
        let mut bad = delete.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(i.open(&bad), Err(ProtectedError::Sealed(_))));
    }

    #[test]
    fn responses_carry_deletes_and_refusals() {
        let (mut i, mut r) = pair_of_sides();
        let request = i.delete_children(3, &[7, 8]).unwrap();
        let opened = r.open(&request).unwrap();
        let body = &opened.bytes[opened.payloads[0].body.clone()];
        assert_eq!(deleted_esp_spis(body), [7, 8]);
        assert!(!deletes_ike(body));
        let answer = r.informational_response(3, &[9]).unwrap();
        let opened = i.open(&answer).unwrap();
        assert!(opened.header.is_response());
        assert_eq!(opened.header.message_id, 3);
        let body = &opened.bytes[opened.payloads[0].body.clone()];
        assert_eq!(deleted_esp_spis(body), [9]);
        let empty = r.informational_response(4, &[]).unwrap();
        assert!(i.open(&empty).unwrap().payloads.is_empty());
        let refusal = r.error_response(exchange::CREATE_CHILD_SA, 5, 43).unwrap();
        let opened = i.open(&refusal).unwrap();
        assert_eq!(
            crate::ike::message::error_notify(&opened.bytes, &opened.payloads),
            Some(43)
        );
        let gone = i.delete_ike(6).unwrap();
        let opened = r.open(&gone).unwrap();
        assert!(deletes_ike(&opened.bytes[opened.payloads[0].body.clone()]));
        assert_eq!(i.spis(), (1, 2));
    }
}
