//! IKEv2 (RFC 7296) with pre-shared keys, in two layers.
//!
//! The exchanges as pure functions of bytes, nonces and keys: Curve25519
//! key exchange ([`dh`]), the key derivation an IKE SA and its child SAs
//! share ([`keys`]), messages as views over their bytes ([`message`]), SA
//! proposals offered and chosen ([`proposal`]), the encrypted payload
//! ([`sk`]), IKE_SA_INIT ([`sa_init`]) with stateless cookies
//! ([`cookie`]), IKE_AUTH on both sides ([`auth`]), the established SA's
//! protected exchanges: liveness checks, deletes, error responses
//! ([`protected`]), and CREATE_CHILD_SA: child SA and IKE SA rekeys and new
//! child SAs as initiator ([`rekey`]) and as responder
//! ([`rekey_responder`]).
//!
//! Above them, [`session`]: one connection's sans-IO state machine, which
//! drives those exchanges in both roles with message IDs, retransmission
//! and cached responses, rekeys on time (make before break, crossed rekeys
//! settled by nonces), checks a silent peer, declares it dead and
//! re-establishes, and tells the switch which ESP SAs to install, send on
//! and remove.

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
