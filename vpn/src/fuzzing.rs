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

#[cfg(test)]
mod tests {
    use super::*;

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
