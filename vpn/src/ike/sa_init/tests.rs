use super::*;

const BOTH: [Cipher; 2] = [Cipher::Aes256Gcm16, Cipher::Aes128Gcm16];

fn at(text: &str) -> SocketAddrV4 {
    text.parse().unwrap()
}

/// The two sides' view of one exchange between `i_at` (as the initiator
/// sees itself) and `r_at`, with the responder seeing the initiator at
/// `i_seen` (another address when a NAT rewrites it).
fn exchange_between(i_at: &str, i_seen: &str, r_at: &str) -> (Agreed, Agreed) {
    let (pi, pr) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let sent = request(
        0x0a0b,
        &pi,
        &[1; NONCE_LEN],
        &BOTH,
        None,
        at(i_at),
        at(r_at),
    );
    let (answer, responder) = respond(
        &sent.bytes,
        0x0c0d,
        &pr,
        &[2; NONCE_LEN],
        &BOTH,
        at(i_seen),
        at(r_at),
    )
    .unwrap();
    let initiator = read_response(&sent, &answer, &pi, &BOTH, at(r_at), at(i_at)).unwrap();
    (initiator, responder)
}

#[test]
fn both_sides_end_with_the_same_keys() {
    let (i, r) = exchange_between("192.0.2.1:500", "192.0.2.1:500", "198.51.100.1:500");
    assert_eq!((i.spi_i, i.spi_r), (0x0a0b, 0x0c0d));
    assert_eq!((r.spi_i, r.spi_r), (0x0a0b, 0x0c0d));
    assert_eq!(i.cipher, Cipher::Aes256Gcm16);
    assert_eq!(i.keys.sk_d, r.keys.sk_d);
    assert_eq!(i.keys.sk_ei, r.keys.sk_ei);
    assert_eq!(i.keys.sk_er, r.keys.sk_er);
    assert_eq!(i.keys.sk_pi, r.keys.sk_pi);
    assert_ne!(i.keys.sk_ei, i.keys.sk_er);
    assert_eq!(i.keys.sk_ei.len(), 36);
    assert!(!i.nat && !r.nat, "no NAT between them");
}

#[test]
fn a_nat_between_them_is_detected_by_both() {
    let (i, r) = exchange_between("10.0.0.5:500", "203.0.113.9:4501", "198.51.100.1:500");
    assert!(i.nat && r.nat);
}

#[test]
fn a_request_we_cannot_take_is_refused_with_a_reason() {
    let pi = KeyPair::generate().unwrap();
    let pr = KeyPair::generate().unwrap();
    let (a, b) = (at("192.0.2.1:500"), at("198.51.100.1:500"));
    let chacha = request(7, &pi, &[1; 32], &[Cipher::ChaCha20Poly1305], None, a, b);
    let refused = respond(&chacha.bytes, 9, &pr, &[2; 32], &BOTH, a, b);
    assert_eq!(refused.map(|_| ()), Err(InitError::NoProposal));
    // The refusal the responder sends back reads as such at the initiator.
    let header = Message::parse(&chacha.bytes).unwrap().header;
    let answer = refusal(&header, notify::NO_PROPOSAL_CHOSEN, &[]);
    assert_eq!(
        read_response(&chacha, &answer, &pi, &BOTH, b, a).map(|_| ()),
        Err(InitError::Refused(notify::NO_PROPOSAL_CHOSEN))
    );
    // A short nonce.
    let short = request(7, &pi, &[1; 8], &BOTH, None, a, b);
    assert_eq!(
        respond(&short.bytes, 9, &pr, &[2; 32], &BOTH, a, b).map(|_| ()),
        Err(InitError::Missing("Nonce"))
    );
    // A response is not a request.
    let (answer, _) = respond(
        &request(7, &pi, &[1; 32], &BOTH, None, a, b).bytes,
        9,
        &pr,
        &[2; 32],
        &BOTH,
        a,
        b,
    )
    .unwrap();
    assert_eq!(
        respond(&answer, 9, &pr, &[2; 32], &BOTH, a, b).map(|_| ()),
        Err(InitError::Unexpected)
    );
}

#[test]
fn a_cookie_request_is_answered_with_the_cookie_first() {
    let pi = KeyPair::generate().unwrap();
    let (a, b) = (at("192.0.2.1:500"), at("198.51.100.1:500"));
    let first = request(7, &pi, &[1; 32], &BOTH, None, a, b);
    let header = Message::parse(&first.bytes).unwrap().header;
    let answer = refusal(&header, notify::COOKIE, b"cookie-bytes");
    let cookie = match read_response(&first, &answer, &pi, &BOTH, b, a) {
        Err(InitError::Cookie(c)) => c,
        other => panic!("{other:?}"),
    };
    let again = request(7, &pi, &[1; 32], &BOTH, Some(&cookie), a, b);
    let m = Message::parse(&again.bytes).unwrap();
    assert_eq!(m.payloads[0].kind, payload::NOTIFY);
    let n = Notify::parse(&again.bytes[m.payloads[0].body.clone()]).unwrap();
    assert_eq!((n.kind, n.data), (notify::COOKIE, &b"cookie-bytes"[..]));
}

#[test]
fn every_truncated_or_corrupted_answer_is_an_error_not_a_panic() {
    let pi = KeyPair::generate().unwrap();
    let pr = KeyPair::generate().unwrap();
    let (a, b) = (at("192.0.2.1:500"), at("198.51.100.1:500"));
    let sent = request(7, &pi, &[1; 32], &BOTH, None, a, b);
    let (answer, _) = respond(&sent.bytes, 9, &pr, &[2; 32], &BOTH, a, b).unwrap();
    for len in 0..answer.len() {
        assert!(read_response(&sent, &answer[..len], &pi, &BOTH, b, a).is_err());
    }
    for byte in 0..answer.len() {
        let mut bad = answer.clone();
        bad[byte] ^= 0xff;
        let _ = read_response(&sent, &bad, &pi, &BOTH, b, a);
        let _ = respond(&bad, 9, &pr, &[2; 32], &BOTH, a, b);
    }
}
