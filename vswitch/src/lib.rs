//! The data plane of the software-defined network: typed packet views
//! (`wire`), the flow model (`flow`), the sans-IO switching core (`pipeline`,
//! `classifier`, `learning`, `gso`), port backends (`port`) and the I/O shell
//! that runs them (`datapath`, `agent`).
#![warn(missing_docs, unreachable_pub)]

pub mod classifier;
pub mod flow;
pub mod learning;
pub mod pipeline;
#[doc(hidden)]
pub mod testutil;
pub mod wire;
