//! The controller of the software-defined network: the topology model and its
//! validation, the southbound server that programs switches, the L2
//! application, the management API, lab provisioning in network namespaces,
//! and the pieces of the `sdn` command-line tool.
#![warn(missing_docs, unreachable_pub)]

pub mod app;
pub mod bench;
pub mod cli;
pub mod client;
#[doc(hidden)]
pub mod fuzzing;
pub mod l2;
pub mod lab;
pub mod pcap;
pub mod plan;
pub mod reconcile;
pub mod routing;
pub mod security;
pub mod segments;
pub mod server;
pub mod tables;
pub mod topology;
pub mod traffic;
pub mod vlan_l2;
