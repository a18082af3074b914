//! Layer 3 as a cloud network does it, distributed over the switches: every
//! subnet's gateway answered by the switches themselves, routes per subnet
//! (the network, peered networks, the internet, route tables) compiled into
//! flows at every switch that holds hosts, and the internet edge (public
//! IPs, NAT gateways) done with conntrack NAT.

pub mod addresses;
pub mod compile;
pub mod routes;
pub mod switch;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod vpn_pipeline_tests;
