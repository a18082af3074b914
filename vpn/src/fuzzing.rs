//! Fuzz target bodies, kept in the crate so that the normal test suite runs
//! them over seeds and mutations too (`fuzz/` calls them from cargo-fuzz).

use crate::esp::{Cipher, EspError, HEADROOM, InboundSa, OutboundSa};

const SPI: u32 = 0x0001_0203;

/// ESP decapsulation: the first byte picks the cipher and whether the rest
/// is sealed first (a real packet the fuzzer then corrupts by its second
/// byte's XOR at its third byte's offset) or opened as it is. Invariants:
/// nothing but a packet sealed under the SA's key opens; a packet that
/// opens opens once; a sealed packet opens to what was sealed; every
/// refusal is counted once.
pub fn esp_open(data: &[u8]) {
    let [mode, flip, at, rest @ ..] = data else {
        return;
    };
    let cipher = match mode % 3 {
        0 => Cipher::Aes128Gcm16,
        1 => Cipher::Aes256Gcm16,
        _ => Cipher::ChaCha20Poly1305,
    };
    let keymat: Vec<u8> = (0..cipher.keymat_len()).map(|i| i as u8).collect();
    let (Ok(mut outbound), Ok(mut inbound)) = (
        OutboundSa::new(cipher, SPI, &keymat),
        InboundSa::new(cipher, SPI, &keymat),
    ) else {
        panic!("valid keying material is taken");
    };
    let mut packet;
    let sealed = mode & 0x80 != 0;
    if sealed {
        packet = vec![0u8; HEADROOM];
        packet.extend_from_slice(rest);
        assert!(outbound.seal(&mut packet, 4).is_ok(), "room was given");
        if *flip != 0 {
            let index = usize::from(*at) % packet.len();
            packet[index] ^= flip;
        }
    } else {
        packet = rest.to_vec();
    }
    let copy = packet.clone();
    let result = inbound.open(&mut packet);
    let counted = inbound.stats.packets
        + inbound.stats.replayed
        + inbound.stats.auth_failed
        + inbound.stats.malformed;
    assert_eq!(counted, 1, "one outcome counted: {result:?}");
    match result {
        Ok(opened) => {
            assert!(sealed, "only a sealed packet opens");
            if *flip == 0 {
                assert_eq!(&packet[opened.inner.clone()], rest);
                assert_eq!(opened.next_header, 4);
            }
            // A flipped bit in the SPI names another SA; elsewhere it fails
            // authentication, so an opened packet was not altered.
            assert_eq!(opened.seq, 1);
            let mut again = copy;
            assert_eq!(
                inbound.open(&mut again),
                Err(EspError::Replayed(crate::replay::Replay::Seen)),
                "a packet opens once"
            );
        }
        Err(EspError::WrongSpi(spi)) => assert_ne!(spi, SPI),
        Err(_) => {}
    }
}

/// IKEv2 messages: the header and payload chain, and every payload's typed
/// view. Invariants: a message that parses is rebuilt byte for byte from
/// its header and payload bodies (when its reserved bits are clear), every
/// body lies inside it, and the typed views never panic.
pub fn ike_message(data: &[u8]) {
    use crate::ike::message::{
        HEADER_LEN, KeyExchange, Message, Notify, emit_payload, payload, proposals,
        traffic_selectors,
    };
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let mut rebuilt = Vec::with_capacity(data.len());
    m.header.emit(&mut rebuilt);
    assert_eq!(&rebuilt[..], &data[..HEADER_LEN]);
    let mut reserved_clear = true;
    for (i, p) in m.payloads.iter().enumerate() {
        assert!(p.body.start >= HEADER_LEN && p.body.end <= data.len());
        reserved_clear &= data[p.body.start - 3] == 0;
        let next = match m.payloads.get(i + 1) {
            Some(n) => n.kind,
            None if p.kind == payload::SK || p.kind == payload::SKF => p.inner_first,
            None => payload::NONE,
        };
        let body = &data[p.body.clone()];
        assert!(emit_payload(&mut rebuilt, next, body).is_some());
        match p.kind {
            payload::SA => {
                let _ = proposals(body);
            }
            payload::KE => {
                let _ = KeyExchange::parse(body);
            }
            payload::NOTIFY => {
                let _ = Notify::parse(body);
            }
            payload::TSI | payload::TSR => {
                let _ = traffic_selectors(body);
            }
            _ => {}
        }
    }
    if reserved_clear {
        assert_eq!(rebuilt, data, "a message is its header and payloads");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_message_holds_over_mutations() {
        // A header and two payloads (a nonce and a notify), length right.
        let mut seed = vec![0u8; 28];
        seed[17] = 0x20;
        seed[16] = 40;
        seed.extend_from_slice(&[41, 0, 0, 8, 1, 2, 3, 4]);
        seed.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0x40, 0x04, 9, 9, 9, 9]);
        let len = seed.len() as u32;
        seed[24..28].copy_from_slice(&len.to_be_bytes());
        ike_message(&seed);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut data = seed.clone();
            let at = (state as usize) % data.len();
            data[at] ^= (state >> 32) as u8;
            ike_message(&data);
        }
    }

    /// Deterministic mutations of a few seeds (the fuzzer explores more).
    #[test]
    fn esp_open_holds_over_mutations() {
        let seeds: [&[u8]; 4] = [
            b"\x80\x00\x00hello, tunnel",
            b"\x81\x01\x05a longer inner packet of forty-two bytes..",
            b"\x82\x80\x10",
            b"\x00\x00\x00\x00\x01\x02\x03\x00\x00\x00\x01",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds {
            esp_open(seed);
            for _ in 0..300 {
                let mut data = seed.to_vec();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % data.len().max(1);
                    match next() % 3 {
                        0 if !data.is_empty() => data[at] ^= 1 << (next() % 8),
                        1 => data.push(next() as u8),
                        _ => data.truncate(at.max(3)),
                    }
                }
                esp_open(&data);
            }
        }
    }
}
