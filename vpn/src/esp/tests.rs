use super::*;

/// An IPv4 ICMP echo request, 40 bytes (two bytes of padding after it).
const INNER: &str =
    "450000290001000040011d2ac0a80a01c0a8140108004a4d000100017361666520706c656173650a";
const SPI: u32 = 0xc0de_0001;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Keying material 3, 10, 17... (key, then salt).
fn keymat(cipher: Cipher) -> Vec<u8> {
    (0..cipher.keymat_len())
        .map(|i| ((i * 7 + 3) % 256) as u8)
        .collect()
}

fn with_headroom(inner: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; HEADROOM];
    packet.extend_from_slice(inner);
    packet
}

/// ESP packets of `INNER` under `SPI` with sequence number 7 and the
/// sequence number as IV, computed by another implementation (Python's
/// `cryptography`, on OpenSSL), for each cipher.
#[test]
fn sealed_packets_match_an_independent_implementation() {
    let cases = [
        (
            Cipher::Aes128Gcm16,
            "c0de000100000007000000000000000718b7d6c20bc4e147e4b3663283981156922fb43751ad7a6382059cfedab8ee7ae687f3dcf8964f05abcd89f1966337a6147c3e803cb2576138c071f2",
        ),
        (
            Cipher::Aes256Gcm16,
            "c0de000100000007000000000000000703e2e62e18945dfa487588b40af2d8534809ee52a85f897622db9bae3140f9a2ce9723c364e68478203450bf49300af8c0f0747dbe64d3fabac7aa42",
        ),
        (
            Cipher::ChaCha20Poly1305,
            "c0de0001000000070000000000000007f406e10de5a0295cafe4a8676e16289576da10c12541edc0a9c636b83726177a69bf28974777b571ae83e8ed5b4410b8a622f80c1aaa4e24c714cfaa",
        ),
    ];
    for (cipher, expected) in cases {
        let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        for _ in 0..6 {
            out.seal(&mut with_headroom(b"x"), 4).unwrap();
        }
        let mut packet = with_headroom(&hex(INNER));
        out.seal(&mut packet, 4).unwrap();
        assert_eq!(packet, hex(expected), "{cipher:?}");
        // And the other implementation's packet opens here.
        let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        let mut theirs = hex(expected);
        let opened = inbound.open(&mut theirs).unwrap();
        assert_eq!((opened.next_header, opened.seq), (4, 7));
        assert_eq!(&theirs[opened.inner], &hex(INNER)[..]);
    }
}

#[test]
fn every_length_round_trips_with_aligned_padding() {
    for cipher in [
        Cipher::Aes128Gcm16,
        Cipher::Aes256Gcm16,
        Cipher::ChaCha20Poly1305,
    ] {
        let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        for len in 0..70usize {
            let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut packet = with_headroom(&inner);
            out.seal(&mut packet, 4).unwrap();
            assert_eq!(
                (packet.len() - HEADROOM - ICV_LEN) % 4,
                0,
                "aligned trailer"
            );
            let opened = inbound.open(&mut packet).unwrap();
            assert_eq!(&packet[opened.inner], &inner[..]);
        }
        assert_eq!(inbound.stats.packets, 70);
        assert_eq!(out.stats.packets, 70);
    }
}

#[test]
fn a_replayed_packet_is_dropped_and_counted() {
    let cipher = Cipher::Aes256Gcm16;
    let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    let mut packet = with_headroom(&hex(INNER));
    out.seal(&mut packet, 4).unwrap();
    let copy = packet.clone();
    assert!(inbound.open(&mut packet).is_ok());
    let mut again = copy;
    assert_eq!(
        inbound.open(&mut again),
        Err(EspError::Replayed(Replay::Seen))
    );
    assert_eq!((inbound.stats.replayed, inbound.stats.packets), (1, 1));
}

#[test]
fn any_flipped_bit_fails_authentication_and_moves_no_window() {
    let cipher = Cipher::Aes128Gcm16;
    let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    let mut packet = with_headroom(&hex(INNER));
    out.seal(&mut packet, 4).unwrap();
    let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    // Past the SPI: the sequence number, IV, ciphertext and ICV.
    for byte in 4..packet.len() {
        let mut bad = packet.clone();
        bad[byte] ^= 0x10;
        let result = inbound.open(&mut bad);
        assert!(
            matches!(
                result,
                Err(EspError::Authentication | EspError::Replayed(_))
            ),
            "byte {byte}: {result:?}"
        );
    }
    assert_eq!(inbound.window.highest(), 0, "no forged packet moved it");
    let mut good = packet.clone();
    assert!(inbound.open(&mut good).is_ok(), "the real one still opens");
}

#[test]
fn other_spis_wrong_keys_and_short_packets_are_refused() {
    let cipher = Cipher::Aes256Gcm16;
    let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    let mut packet = with_headroom(&hex(INNER));
    out.seal(&mut packet, 4).unwrap();
    let mut other = InboundSa::new(cipher, SPI + 1, &keymat(cipher)).unwrap();
    assert_eq!(
        other.open(&mut packet.clone()),
        Err(EspError::WrongSpi(SPI))
    );
    let mut wrong_key = keymat(cipher);
    wrong_key[0] ^= 1;
    let mut stranger = InboundSa::new(cipher, SPI, &wrong_key).unwrap();
    assert_eq!(
        stranger.open(&mut packet.clone()),
        Err(EspError::Authentication)
    );
    let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    for len in 0..HEADROOM + 2 + ICV_LEN {
        assert_eq!(
            inbound.open(&mut packet.clone()[..len]),
            Err(EspError::Truncated)
        );
    }
    assert_eq!(inbound.stats.malformed, (HEADROOM + 2 + ICV_LEN) as u64);
    assert_eq!(
        OutboundSa::new(cipher, SPI, &[0; 5]).map(|_| ()),
        Err(EspError::KeyLength { got: 5, want: 36 })
    );
    assert_eq!(
        out.seal(&mut vec![0; HEADROOM - 1], 4),
        Err(EspError::NoHeadroom)
    );
}

#[test]
fn the_last_sequence_number_ends_the_sa() {
    let cipher = Cipher::ChaCha20Poly1305;
    let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    out.seq = u32::MAX - 1;
    assert!(out.seal(&mut with_headroom(b"last"), 4).is_ok());
    assert_eq!(out.last_seq(), u32::MAX);
    assert_eq!(
        out.seal(&mut with_headroom(b"one more"), 4),
        Err(EspError::SequenceExhausted)
    );
}

#[test]
fn sealing_in_a_buffer_with_room_does_not_reallocate() {
    let cipher = Cipher::Aes256Gcm16;
    let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    let mut packet = Vec::with_capacity(2048);
    packet.extend_from_slice(&with_headroom(&[7u8; 1400]));
    let at = packet.as_ptr();
    out.seal(&mut packet, 4).unwrap();
    assert_eq!(packet.as_ptr(), at);
}

#[test]
fn an_authentic_packet_with_bad_padding_is_dropped() {
    let cipher = Cipher::Aes128Gcm16;
    let key = SaltedKey::new(cipher, &keymat(cipher)).unwrap();
    let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    for trailer in [&[9u8, 9, 2, 4][..], &[1, 2, 40, 4][..]] {
        let mut packet = Vec::new();
        packet.extend_from_slice(&SPI.to_be_bytes());
        packet.extend_from_slice(&1u32.to_be_bytes());
        packet.extend_from_slice(&1u64.to_be_bytes());
        packet.extend_from_slice(b"inner...");
        packet.extend_from_slice(trailer);
        let (head, body) = packet.split_at_mut(HEADROOM);
        let tag = key
            .key
            .seal_in_place_separate_tag(key.nonce(&head[8..]), Aad::from(&head[..8]), body)
            .unwrap();
        packet.extend_from_slice(tag.as_ref());
        inbound.window = ReplayWindow::new();
        assert_eq!(
            inbound.open(&mut packet),
            Err(EspError::Padding),
            "{trailer:?}"
        );
    }
    assert_eq!(inbound.stats.malformed, 2);
}

#[test]
fn sealing_in_place_matches_sealing_a_vec_and_stays_in_its_bounds() {
    for cipher in [
        Cipher::Aes128Gcm16,
        Cipher::Aes256Gcm16,
        Cipher::ChaCha20Poly1305,
    ] {
        let mut by_vec = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        let mut in_place = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        let mut inbound = InboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
        for len in 0..70usize {
            let inner: Vec<u8> = (0..len).map(|i| (i * 5) as u8).collect();
            let mut expected = with_headroom(&inner);
            by_vec.seal(&mut expected, 4).unwrap();
            // A buffer with room to spare, filled with a canary.
            let mut buffer = vec![0xa5u8; HEADROOM + len + TAILROOM + 7];
            buffer[HEADROOM..HEADROOM + len].copy_from_slice(&inner);
            let sealed = in_place.seal_in_place(&mut buffer, len, 4).unwrap();
            assert_eq!(Some(sealed), sealed_len(len));
            assert!(sealed - HEADROOM - len <= TAILROOM);
            assert_eq!(&buffer[..sealed], &expected[..], "{cipher:?}, {len} bytes");
            assert!(
                buffer[sealed..].iter().all(|&b| b == 0xa5),
                "nothing written past the sealed packet"
            );
            let opened = inbound.open(&mut buffer[..sealed]).unwrap();
            assert_eq!(&buffer[opened.inner], &inner[..]);
        }
        assert_eq!(inbound.highest_seq(), 70);
        assert_eq!(in_place.stats, by_vec.stats);
    }
}

#[test]
fn a_buffer_without_tailroom_is_refused_without_using_a_sequence_number() {
    let cipher = Cipher::Aes256Gcm16;
    let mut out = OutboundSa::new(cipher, SPI, &keymat(cipher)).unwrap();
    let need = sealed_len(100).unwrap();
    let mut buffer = vec![0u8; need - 1];
    assert_eq!(
        out.seal_in_place(&mut buffer, 100, 4),
        Err(EspError::NoTailroom {
            need,
            got: need - 1
        })
    );
    assert_eq!(
        out.seal_in_place(&mut [0u8; 8], usize::MAX, 4),
        Err(EspError::NoTailroom {
            need: usize::MAX,
            got: 8
        }),
        "an impossible length does not overflow"
    );
    assert_eq!(out.last_seq(), 0);
    let mut buffer = vec![0u8; need];
    assert_eq!(out.seal_in_place(&mut buffer, 100, 4), Ok(need));
    assert_eq!(out.last_seq(), 1);
    assert_eq!(sealed_len(usize::MAX), None);
    assert_eq!(padding_len(usize::MAX), padding_len(3));
}

#[test]
fn a_wiped_key_is_the_all_zero_key_and_its_salt_is_zero() {
    for cipher in [
        Cipher::Aes128Gcm16,
        Cipher::Aes256Gcm16,
        Cipher::ChaCha20Poly1305,
    ] {
        let mut key = SaltedKey::new(cipher, &keymat(cipher)).unwrap();
        key.wipe();
        assert_eq!(key.salt, [0; SALT_LEN]);
        let zero = SaltedKey::new(cipher, &vec![0u8; cipher.keymat_len()]).unwrap();
        let seal = |k: &SaltedKey| {
            let mut data = b"sixteen bytes...".to_vec();
            let tag = k
                .key
                .seal_in_place_separate_tag(k.nonce(&[0; 8]), Aad::empty(), &mut data)
                .unwrap();
            data.extend_from_slice(tag.as_ref());
            data
        };
        assert_eq!(seal(&key), seal(&zero), "{cipher:?}: the key was replaced");
        assert_eq!(key.key.algorithm(), cipher.algorithm());
    }
}
