//! IKEv2 (RFC 7296). So far: the key derivation an IKE SA and its child
//! SAs share ([`keys`]). The exchanges, payloads and state machines build
//! on it.

pub mod keys;
