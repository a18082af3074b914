use super::*;

/// A transform: type, ID, and optionally the key length attribute.
fn transform(last: bool, kind: u8, id: u16, key_bits: Option<u16>) -> Vec<u8> {
    let mut t = vec![if last { 0 } else { 3 }, 0, 0, 0, kind, 0];
    t.extend_from_slice(&id.to_be_bytes());
    if let Some(bits) = key_bits {
        t.extend_from_slice(&(0x8000u16 | 14).to_be_bytes());
        t.extend_from_slice(&bits.to_be_bytes());
    }
    let len = t.len() as u16;
    t[2..4].copy_from_slice(&len.to_be_bytes());
    t
}

/// An IKE_SA_INIT request as strongSwan's default proposal for the lab
/// would send it: SA (AES-GCM-16 256, PRF-HMAC-SHA256, Curve25519), KE,
/// Nonce, and a NAT detection notify.
fn sa_init() -> Vec<u8> {
    let transforms = [
        transform(false, 1, 20, Some(256)),
        transform(false, 2, 5, None),
        transform(true, 4, 31, None),
    ]
    .concat();
    let mut proposal = vec![0, 0, 0, 0, 1, 1, 0, 3];
    proposal.extend_from_slice(&transforms);
    let len = proposal.len() as u16;
    proposal[2..4].copy_from_slice(&len.to_be_bytes());
    let mut ke = vec![0, 31, 0, 0];
    ke.extend_from_slice(&[0x42; 32]);
    let nonce = [0x17u8; 32];
    let mut notify = vec![0, 0];
    notify.extend_from_slice(&16388u16.to_be_bytes());
    notify.extend_from_slice(&[0x99; 20]);
    let mut body = Vec::new();
    emit_payload(&mut body, payload::KE, &proposal).unwrap();
    emit_payload(&mut body, payload::NONCE, &ke).unwrap();
    emit_payload(&mut body, payload::NOTIFY, &nonce).unwrap();
    emit_payload(&mut body, payload::NONE, &notify).unwrap();
    let header = Header {
        spi_i: 0x1122_3344_5566_7788,
        spi_r: 0,
        next_payload: payload::SA,
        version: VERSION,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::INITIATOR,
        message_id: 0,
        length: (HEADER_LEN + body.len()) as u32,
    };
    let mut message = Vec::new();
    header.emit(&mut message);
    message.extend_from_slice(&body);
    message
}

#[test]
fn an_ike_sa_init_request_parses_into_its_payloads() {
    let bytes = sa_init();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.header.spi_i, 0x1122_3344_5566_7788);
    assert!(m.header.from_initiator() && !m.header.is_response());
    let kinds: Vec<u8> = m.payloads.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [payload::SA, payload::KE, payload::NONCE, payload::NOTIFY]
    );
    let sa = proposals(&bytes[m.find(payload::SA).unwrap().body.clone()]).unwrap();
    assert_eq!(sa.len(), 1);
    assert_eq!((sa[0].number, sa[0].protocol), (1, 1));
    assert_eq!(
        sa[0].transforms,
        [
            Transform {
                kind: 1,
                id: 20,
                key_bits: Some(256)
            },
            Transform {
                kind: 2,
                id: 5,
                key_bits: None
            },
            Transform {
                kind: 4,
                id: 31,
                key_bits: None
            },
        ]
    );
    let ke = KeyExchange::parse(&bytes[m.find(payload::KE).unwrap().body.clone()]).unwrap();
    assert_eq!((ke.group, ke.data.len()), (31, 32));
    let notify = Notify::parse(&bytes[m.find(payload::NOTIFY).unwrap().body.clone()]).unwrap();
    assert_eq!(
        (notify.kind, notify.data.len(), notify.spi.len()),
        (16388, 20, 0)
    );
    // Written back, the header is the same bytes.
    let mut again = Vec::new();
    m.header.emit(&mut again);
    assert_eq!(&again[..], &bytes[..HEADER_LEN]);
}

#[test]
fn every_truncation_and_bad_length_is_an_error() {
    let bytes = sa_init();
    for len in 0..bytes.len() {
        assert!(Message::parse(&bytes[..len]).is_err(), "{len} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Message::parse(&longer), Err(ParseError::Length("header")));
    let mut v1 = bytes.clone();
    v1[17] = 0x10;
    assert_eq!(Message::parse(&v1), Err(ParseError::Version(1)));
    // A payload length running past the message, or below its header.
    for bad in [0u16, 3, 0xffff] {
        let mut b = bytes.clone();
        b[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&bad.to_be_bytes());
        assert!(Message::parse(&b).is_err(), "payload length {bad}");
    }
}

#[test]
fn the_encrypted_payload_comes_last_and_names_its_first_inner_payload() {
    let mut body = Vec::new();
    emit_payload(&mut body, payload::IDI, &[0xaa; 40]).unwrap();
    let header = Header {
        spi_i: 1,
        spi_r: 2,
        next_payload: payload::SK,
        version: VERSION,
        exchange: exchange::IKE_AUTH,
        flags: flags::INITIATOR,
        message_id: 1,
        length: (HEADER_LEN + body.len()) as u32,
    };
    let mut bytes = Vec::new();
    header.emit(&mut bytes);
    bytes.extend_from_slice(&body);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.payloads.len(), 1);
    assert_eq!(
        (m.payloads[0].kind, m.payloads[0].inner_first),
        (payload::SK, payload::IDI)
    );
    assert_eq!(m.payloads[0].body.len(), 40);
}

#[test]
fn traffic_selectors_and_their_lengths() {
    let mut ts = vec![1, 0, 0, 0, TS_IPV4, 0, 0, 16, 0, 0, 0xff, 0xff];
    ts.extend_from_slice(&[10, 1, 0, 0, 10, 1, 255, 255]);
    let selectors = traffic_selectors(&ts).unwrap();
    assert_eq!(
        selectors,
        [TrafficSelector {
            protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: "10.1.0.0".parse().unwrap(),
            end: "10.1.255.255".parse().unwrap(),
        }]
    );
    for len in 0..ts.len() {
        assert!(traffic_selectors(&ts[..len]).is_err(), "{len}");
    }
    let mut wrong = ts.clone();
    wrong[7] = 12;
    assert!(traffic_selectors(&wrong).is_err());
}

#[test]
fn too_many_payloads_are_refused() {
    let mut body = Vec::new();
    for _ in 0..MAX_PAYLOADS {
        emit_payload(&mut body, payload::VENDOR, b"v").unwrap();
    }
    emit_payload(&mut body, payload::NONE, b"v").unwrap();
    assert_eq!(
        parse_chain(&body, 0, payload::VENDOR),
        Err(ParseError::TooManyPayloads)
    );
}
