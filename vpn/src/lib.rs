//! The project's IPsec core, sans-IO: bytes and sequence numbers in,
//! decisions out; no sockets, no clock reads.
//!
//! - [`replay`]: the anti-replay window of an inbound SA (RFC 4303 §3.4.3).
//! - [`esp`]: ESP (RFC 4303) security associations in tunnel mode with
//!   AEAD ciphers: AES-GCM with a 16-byte ICV (RFC 4106) and
//!   ChaCha20-Poly1305 (RFC 7634), sealing and opening packets in place.
//! - [`ike`]: IKEv2 (RFC 7296) with pre-shared keys: the messages and
//!   exchanges as functions of bytes and keys, and
//!   [`ike::session::Session`], a sans-IO endpoint for one connection that
//!   establishes, rekeys, checks liveness and re-establishes on its own,
//!   handing out the child SAs' keys for [`esp`].
//! - [`psk`]: pre-shared key files, checked (owner-only) whenever read.
//! - [`fuzzing`]: the bodies of the crate's fuzz targets.

#![warn(missing_docs, unreachable_pub)]

pub mod esp;
pub mod fuzzing;
pub mod ike;
pub mod psk;
pub mod replay;
