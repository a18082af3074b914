use super::*;
use crate::ike::dh::KeyPair;
use crate::ike::sa_init::{read_response, request, respond};
use std::net::SocketAddrV4;

const BOTH: [Cipher; 2] = [Cipher::Aes256Gcm16, Cipher::Aes128Gcm16];

fn at(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

/// IKE_SA_INIT between our two sides: (initiator's, responder's) view,
/// with the request's and answer's bytes.
fn init() -> (Agreed, Agreed, Vec<u8>, Vec<u8>) {
    let (pi, pr) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (a, b) = (at("192.0.2.1:500"), at("192.0.2.2:500"));
    let sent = request(1, &pi, &[1; 32], &BOTH, None, a, b);
    let (answer, responder) = respond(&sent.bytes, 2, &pr, &[2; 32], &BOTH, a, b).unwrap();
    let initiator = read_response(&sent, &answer, &pi, &BOTH, b, a).unwrap();
    (initiator, responder, sent.bytes, answer)
}

fn initiator_params(psk: &[u8]) -> AuthParams<'_> {
    AuthParams {
        id: "192.0.2.1".parse().unwrap(),
        peer_id: "192.0.2.2".parse().unwrap(),
        psk,
        local: ("10.81.0.0".parse().unwrap(), 24),
        remote: ("10.82.0.0".parse().unwrap(), 24),
        ciphers: &BOTH,
        spi: 0x1111,
    }
}

fn responder_params(psk: &[u8]) -> AuthParams<'_> {
    AuthParams {
        id: "192.0.2.2".parse().unwrap(),
        peer_id: "192.0.2.1".parse().unwrap(),
        psk,
        local: ("10.82.0.0".parse().unwrap(), 24),
        remote: ("10.81.0.0".parse().unwrap(), 24),
        ciphers: &BOTH,
        spi: 0x2222,
    }
}

#[test]
fn both_sides_agree_on_the_child_sa() {
    let (i, r, m1, m2) = init();
    let sent = auth_request(&i, &m1, &initiator_params(b"key")).unwrap();
    let (answer, theirs) =
        respond_auth(&r, &m1, &m2, &sent.bytes, &responder_params(b"key")).unwrap();
    let ours = read_auth_response(&i, &m2, &sent, &answer, &initiator_params(b"key")).unwrap();
    assert_eq!((ours.our_spi, ours.peer_spi), (0x1111, 0x2222));
    assert_eq!((theirs.our_spi, theirs.peer_spi), (0x2222, 0x1111));
    assert_eq!(ours.keys_i_to_r, theirs.keys_i_to_r);
    assert_eq!(ours.keys_r_to_i, theirs.keys_r_to_i);
    assert_eq!(ours.cipher, Cipher::Aes256Gcm16);
    assert_eq!(ours.ts_local[0].start.to_string(), "10.81.0.0");
    assert_eq!(theirs.ts_local[0].start.to_string(), "10.82.0.0");
}

#[test]
fn a_wrong_key_or_identity_or_selector_is_refused() {
    let (i, r, m1, m2) = init();
    let sent = auth_request(&i, &m1, &initiator_params(b"wrong")).unwrap();
    assert_eq!(
        respond_auth(&r, &m1, &m2, &sent.bytes, &responder_params(b"key")).map(|_| ()),
        Err(AuthError::Authentication)
    );
    // Our AUTH under another key does not verify at the initiator either.
    let sent = auth_request(&i, &m1, &initiator_params(b"key")).unwrap();
    let mut other = responder_params(b"key");
    other.psk = b"key";
    let (answer, _) = respond_auth(&r, &m1, &m2, &sent.bytes, &other).unwrap();
    assert_eq!(
        read_auth_response(&i, &m2, &sent, &answer, &initiator_params(b"not key")).map(|_| ()),
        Err(AuthError::Authentication)
    );
    // Another identity.
    let mut stranger = responder_params(b"key");
    stranger.peer_id = "192.0.2.99".parse().unwrap();
    assert_eq!(
        respond_auth(&r, &m1, &m2, &sent.bytes, &stranger).map(|_| ()),
        Err(AuthError::Authentication)
    );
    // A site the responder does not serve.
    let mut narrow = responder_params(b"key");
    narrow.local = ("10.99.0.0".parse().unwrap(), 24);
    assert_eq!(
        respond_auth(&r, &m1, &m2, &sent.bytes, &narrow).map(|_| ()),
        Err(AuthError::Refused(TS_UNACCEPTABLE))
    );
    // Corrupted: the encrypted payload does not open.
    let mut bad = sent.bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        respond_auth(&r, &m1, &m2, &bad, &responder_params(b"key")),
        Err(AuthError::Sealed(_))
    ));
}
