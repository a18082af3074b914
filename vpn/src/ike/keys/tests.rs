//! HMAC-SHA-256 against RFC 4231; the IKEv2 derivations against values a
//! separate implementation of RFC 7296's formulas computed (Python's `hmac`
//! and `hashlib`) for fixed nonces, SPIs and shared secret.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn ni() -> Vec<u8> {
    (0..32).collect()
}

fn nr() -> Vec<u8> {
    (100..132).collect()
}

fn shared() -> Vec<u8> {
    (0..32u32).map(|i| (i * 3 % 256) as u8).collect()
}

#[test]
fn the_prf_is_hmac_sha256_as_rfc_4231_gives_it() {
    // RFC 4231 test case 2.
    assert_eq!(
        &prf(b"Jefe", b"what do ya want for nothing?")[..],
        &hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")[..]
    );
}

#[test]
fn skeyseed_and_the_ike_keys() {
    let seed = skeyseed(&ni(), &nr(), &shared());
    assert_eq!(
        &seed[..],
        &hex("1834a0f2d50c8e0a46f0df114e529051ad9e7dc89e6479cebeb5ff00011a50b1")[..]
    );
    // AES-256-GCM for IKE: no integrity keys, 36-byte encryption keys.
    let keys = IkeKeys::derive(
        &seed,
        &ni(),
        &nr(),
        0x0102_0304_0506_0708,
        0x1112_1314_1516_1718,
        0,
        36,
    )
    .unwrap();
    let all = hex(
        "17a5d83d3d1a464298cbef631dec23f9ec145825eee073c07266fa7f7d830446269f8ed2b9f093e56b80000dfa36ab84e44fb405711100dd4025b07cf7ffbb378ab950cdf18ca65aeb397b03cab47210e18926508a9563f72def68aa00ad345d299f008efddadfc3a58a1c683ea66aa14dfd726eaa66c2ab5aa882e72d1dcc5e21bd645c9f5d8c0c2d53d8c74932d592c74d0d1647e77ae72c8acdfd0d9a54b8746e1b844c94646c",
    );
    let joined: Vec<u8> = [
        &keys.sk_d[..],
        &keys.sk_ai,
        &keys.sk_ar,
        &keys.sk_ei,
        &keys.sk_er,
        &keys.sk_pi,
        &keys.sk_pr,
    ]
    .concat();
    assert_eq!(joined, all);
    assert!(keys.sk_ai.is_empty() && keys.sk_ar.is_empty());
    assert_eq!((keys.sk_ei.len(), keys.sk_pr.len()), (36, 32));
    // A child SA's AES-256-GCM keys (key and salt each way).
    let (i_to_r, r_to_i) = child_keymat(&keys.sk_d, None, &ni(), &nr(), 36).unwrap();
    let child = hex(
        "b3002620c8f304db10138e7781fab9436a051b108a417cf56e6dadf14736c068018593b6d3ed0b89f2ad8e543cbf3f0aefec44062e06b32919a576afdf28af9c539b5f81914f1b2c",
    );
    assert_eq!(&i_to_r[..], &child[..36]);
    assert_eq!(&r_to_i[..], &child[36..]);
}

#[test]
fn the_psk_auth_value() {
    assert_eq!(
        &psk_auth(b"a shared secret", b"signed octets")[..],
        &hex("6351c718da633612023c43e0440458443732697e0ca216ad172b73510cc59ca7")[..]
    );
    let a = psk_auth(b"a shared secret", b"signed octets");
    let b = psk_auth(b"another secret", b"signed octets");
    assert!(auth_matches(&a, &a.clone()));
    assert!(!auth_matches(&a, &b));
    assert!(!auth_matches(&a, &a[..31]));
}

#[test]
fn prf_plus_is_bounded_and_extends_its_own_prefix() {
    assert!(prf_plus(b"k", b"s", MAX_PRF_PLUS + 1).is_none());
    let long = prf_plus(b"k", b"s", MAX_PRF_PLUS).unwrap();
    let short = prf_plus(b"k", b"s", 100).unwrap();
    assert_eq!(&long[..100], &short[..]);
    // A rekey's SKEYSEED depends on the old SK_d and the new exchange.
    let a = rekey_skeyseed(b"old sk_d", &shared(), &ni(), &nr());
    let b = rekey_skeyseed(b"old sk_e", &shared(), &ni(), &nr());
    assert_ne!(a, b);
}
