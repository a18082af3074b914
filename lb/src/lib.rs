//! The load balancer's sans-IO core, shared by the switch (which picks a
//! backend for a connection's first packet and runs the probes) and the
//! controller (which turns probe results into backend sets):
//!
//! - [`hash`]: the flow tuple a connection is balanced by, and its hashes;
//! - [`maglev`]: Maglev consistent hashing (a prime-sized lookup table);
//! - [`pool`]: a backend pool and its five algorithms;
//! - [`probe`]: the health-probe state machine (rise and fall, deadlines in a
//!   timer table, no clock reads);
//! - [`http`]: the HTTP probe's request and the status line of its answer.
//!
//! Nothing here opens a socket, reads the clock or allocates per connection:
//! time comes in as `now`, tables are built when a pool changes.
#![warn(missing_docs, unreachable_pub)]

pub mod hash;
pub mod http;
pub mod maglev;
pub mod pool;
pub mod probe;

pub use hash::FlowTuple;
pub use maglev::{DEFAULT_TABLE_SIZE, MaglevError, MaglevTable};
pub use pool::{Algorithm, Backend, BackendId, NoHealthyBackends, Pool, Selection};
pub use probe::{Health, ProbeConfig, ProbeOutcome, ProbeStart, Prober, Transition};
