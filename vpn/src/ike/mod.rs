//! IKEv2 (RFC 7296). So far: Curve25519 key exchange ([`dh`]), the key
//! derivation an IKE SA and its child SAs share ([`keys`]), messages as
//! views over their bytes ([`message`]), SA proposals offered and chosen
//! ([`proposal`]) and the encrypted payload ([`sk`]).
//! The exchanges and state machines build on them.

pub mod dh;
pub mod keys;
pub mod message;
pub mod proposal;
pub mod sk;
