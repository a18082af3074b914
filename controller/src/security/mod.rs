//! Stateful security groups: NSG rules (priority, allow and deny, first
//! match) and ACG rules (allow-only, union of groups), resolved from the
//! topology, evaluated by a reference evaluator and compiled into flows with
//! connection tracking.

pub mod compile;
pub mod eval;
pub mod flow_log;
pub mod ranges;
pub mod resolve;
pub mod rules;
pub mod switch;

#[cfg(test)]
mod tests;
