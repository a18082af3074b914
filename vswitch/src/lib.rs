//! The data plane of the software-defined network: typed packet views
//! (`wire`), the flow model (`flow`), the sans-IO switching core (`pipeline`,
//! `classifier`, `learning`, `gso`), port backends (`port`) and the I/O shell
//! that runs them (`datapath`, `agent`).
#![warn(missing_docs, unreachable_pub)]

pub mod agent;
pub mod classifier;
pub mod conntrack;
pub mod datapath;
pub mod flow;
pub mod fragment;
#[doc(hidden)]
pub mod fuzzing;
pub mod gso;
pub mod learning;
pub mod netns;
pub mod pipeline;
pub mod port;
pub mod probe;
#[doc(hidden)]
pub mod testutil;
pub mod vpn_config;
pub mod vpn_gateway;
pub mod vpn_status;
pub mod wire;
