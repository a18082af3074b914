//! IKEv2 (RFC 7296). So far: Curve25519 key exchange ([`dh`]), the key
//! derivation an IKE SA and its child SAs share ([`keys`]), messages as
//! views over their bytes ([`message`]), SA proposals offered and chosen
//! ([`proposal`]), the encrypted payload ([`sk`]), the IKE_SA_INIT
//! exchange ([`sa_init`]) with stateless cookies ([`cookie`]) and IKE_AUTH
//! with a pre-shared key on both sides ([`auth`]), then the SA's
//! encrypted exchanges with liveness checks and deletes ([`protected`])
//! and child SA rekeys ([`rekey`]). The IKE SA's own rekey and the state
//! machine that retransmits and rekeys on time build on them.

pub mod auth;
pub mod cookie;
pub mod dh;
pub mod keys;
pub mod message;
pub mod proposal;
pub mod protected;
pub mod rekey;
pub mod rekey_responder;
pub mod sa_init;
pub mod session;
pub mod sk;
