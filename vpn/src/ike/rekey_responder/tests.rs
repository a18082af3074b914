use super::*;
use crate::ike::rekey::{
    ike_rekey_request, read_ike_rekey_opened, read_rekey_opened, rekey_request,
};
use crate::ike::sa_init::{read_response, request, respond};
use std::net::SocketAddrV4;

const BOTH: [Cipher; 2] = [Cipher::Aes256Gcm16, Cipher::Aes128Gcm16];

fn prefix(text: &str, len: u8) -> (Ipv4Addr, u8) {
    (text.parse().unwrap(), len)
}

/// An IKE SA between our two sides: (initiator's agreed, responder's).
fn sides() -> (Agreed, Agreed) {
    let (pi, pr) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (a, b): (SocketAddrV4, SocketAddrV4) = (
        "192.0.2.1:500".parse().unwrap(),
        "192.0.2.2:500".parse().unwrap(),
    );
    let sent = request(1, &pi, &[1; 32], &BOTH, None, a, b);
    let (answer, r) = respond(&sent.bytes, 2, &pr, &[2; 32], &BOTH, a, b).unwrap();
    let i = read_response(&sent, &answer, &pi, &BOTH, b, a).unwrap();
    (i, r)
}

fn responder_params() -> ChildRekeyParams<'static> {
    ChildRekeyParams {
        ciphers: &BOTH,
        local: prefix("10.82.0.0", 24),
        remote: prefix("10.81.0.0", 24),
        spi: 0x2222_0002,
    }
}

#[test]
fn a_child_rekey_answered_gives_both_sides_the_same_new_sa() {
    let (i, r) = sides();
    // The rekey's initiator is the IKE SA's responder here: the keys
    // follow the exchange, not the IKE SA's roles.
    let (mut ours, mut theirs) = (
        Protected::new(&r, false).unwrap(),
        Protected::new(&i, true).unwrap(),
    );
    let sent = rekey_request(
        &mut ours,
        0,
        0x2222_0001,
        0x2222_0003,
        &BOTH,
        &[7; 32],
        prefix("10.82.0.0", 24),
        prefix("10.81.0.0", 24),
    )
    .unwrap();
    let opened = theirs.open(&sent.bytes).unwrap();
    assert_eq!(
        classify(&opened),
        Ok(CreateChild::RekeyChild {
            old_spi: 0x2222_0001
        })
    );
    let params = ChildRekeyParams {
        local: prefix("10.81.0.0", 24),
        remote: prefix("10.82.0.0", 24),
        spi: 0x1111_0003,
        ..responder_params()
    };
    let answer =
        respond_child_rekey(&mut theirs, &i.keys.sk_d, &opened, &[9; 32], &params).unwrap();
    assert_eq!(answer.nonce_i, [7; 32]);
    let got = read_rekey_opened(
        &ours.open(&answer.bytes).unwrap(),
        &r.keys.sk_d,
        &sent,
        &BOTH,
    )
    .unwrap();
    assert_eq!((got.our_spi, got.peer_spi), (0x2222_0003, 0x1111_0003));
    assert_eq!(
        (answer.child.our_spi, answer.child.peer_spi),
        (0x1111_0003, 0x2222_0003)
    );
    assert_eq!(got.keys_i_to_r, answer.child.keys_i_to_r);
    assert_eq!(got.keys_r_to_i, answer.child.keys_r_to_i);
    assert_eq!(answer.child.ts_local[0].start.to_string(), "10.81.0.0");
    assert_eq!(answer.child.ts_remote[0].start.to_string(), "10.82.0.0");
}

#[test]
fn an_ike_rekey_answered_gives_a_new_sa_the_peer_initiated() {
    let (i, r) = sides();
    let (mut ours, mut theirs) = (
        Protected::new(&i, true).unwrap(),
        Protected::new(&r, false).unwrap(),
    );
    let pair = KeyPair::generate().unwrap();
    let sent = ike_rekey_request(&mut ours, 2, 0x0101, &BOTH, &[3; 32], &pair).unwrap();
    let opened = theirs.open(&sent.bytes).unwrap();
    assert_eq!(classify(&opened), Ok(CreateChild::RekeyIke));
    let answer = respond_ike_rekey(&mut theirs, &r, &opened, 0x0202, &[4; 32], &BOTH).unwrap();
    let renewed =
        read_ike_rekey_opened(&ours.open(&answer.bytes).unwrap(), &i, &sent, &pair, &BOTH).unwrap();
    assert_eq!((renewed.spi_i, renewed.spi_r), (0x0101, 0x0202));
    assert_eq!((answer.agreed.spi_i, answer.agreed.spi_r), (0x0101, 0x0202));
    assert_eq!(renewed.keys.sk_d, answer.agreed.keys.sk_d);
    assert_eq!(renewed.keys.sk_ei, answer.agreed.keys.sk_ei);
    assert_ne!(renewed.keys.sk_d, i.keys.sk_d);
    // The rekey's initiator is the new SA's original initiator.
    let mut new_i = Protected::new(&renewed, true).unwrap();
    let new_r = Protected::new(&answer.agreed, false).unwrap();
    let ping = new_i.liveness(0).unwrap();
    assert!(new_r.open(&ping).is_ok());
}

#[test]
fn requests_we_cannot_take_are_refused_with_the_notify_to_send() {
    let (i, r) = sides();
    let (mut ours, mut theirs) = (
        Protected::new(&i, true).unwrap(),
        Protected::new(&r, false).unwrap(),
    );
    // Selectors that do not hold our prefixes.
    let sent = rekey_request(
        &mut ours,
        2,
        5,
        6,
        &BOTH,
        &[7; 32],
        prefix("10.99.0.0", 24),
        prefix("10.82.0.0", 24),
    )
    .unwrap();
    let opened = theirs.open(&sent.bytes).unwrap();
    assert_eq!(
        respond_child_rekey(
            &mut theirs,
            &r.keys.sk_d,
            &opened,
            &[9; 32],
            &responder_params()
        )
        .map(|_| ()),
        Err(RekeyError::Unacceptable(
            super::super::auth::TS_UNACCEPTABLE
        ))
    );
    // A cipher we do not take.
    let sent = rekey_request(
        &mut ours,
        3,
        5,
        6,
        &[Cipher::ChaCha20Poly1305],
        &[7; 32],
        prefix("10.81.0.0", 24),
        prefix("10.82.0.0", 24),
    )
    .unwrap();
    let opened = theirs.open(&sent.bytes).unwrap();
    assert_eq!(
        respond_child_rekey(
            &mut theirs,
            &r.keys.sk_d,
            &opened,
            &[9; 32],
            &responder_params()
        )
        .map(|_| ()),
        Err(RekeyError::Unacceptable(notify::NO_PROPOSAL_CHOSEN))
    );
    // No SA payload at all (a liveness check passed in by mistake).
    let ping = ours.liveness(4).unwrap();
    let mut opened = theirs.open(&ping).unwrap();
    opened.header.exchange = exchange::CREATE_CHILD_SA;
    assert_eq!(
        classify(&opened),
        Err(RekeyError::Unacceptable(notify::INVALID_SYNTAX))
    );
    // An IKE rekey offering only a cipher we do not take.
    let pair = KeyPair::generate().unwrap();
    let sent = ike_rekey_request(
        &mut ours,
        5,
        9,
        &[Cipher::ChaCha20Poly1305],
        &[3; 32],
        &pair,
    )
    .unwrap();
    let opened = theirs.open(&sent.bytes).unwrap();
    assert_eq!(
        respond_ike_rekey(&mut theirs, &r, &opened, 10, &[4; 32], &BOTH).map(|_| ()),
        Err(RekeyError::Unacceptable(notify::NO_PROPOSAL_CHOSEN))
    );
}

#[test]
fn a_request_without_rekey_sa_asks_for_a_new_child() {
    let (i, r) = sides();
    let (mut ours, theirs) = (
        Protected::new(&i, true).unwrap(),
        Protected::new(&r, false).unwrap(),
    );
    let parts = [
        (
            payload::SA,
            super::super::proposal::esp_offer(&BOTH, 77, false),
        ),
        (payload::NONCE, vec![5; 32]),
    ];
    let inner = emit_chain(&parts).unwrap();
    let bytes = ours
        .seal(exchange::CREATE_CHILD_SA, 2, false, payload::SA, &inner)
        .unwrap();
    let opened = theirs.open(&bytes).unwrap();
    assert_eq!(classify(&opened), Ok(CreateChild::NewChild));
}
