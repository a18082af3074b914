//! The routing flows of one switch as its control session keeps them: the
//! compiled flows it wants from the reconciler, and their replacement when
//! route tables change.

use super::compile::{CompiledRouting, compile};
use crate::reconcile::{FlowId, FlowSet, Reconciler};
use crate::topology::Topology;

/// The routing flows of a switch.
#[derive(Debug, Default)]
pub struct Router {
    compiled: CompiledRouting,
    flows: FlowSet,
}

impl Router {
    /// The routing `topology` asks of switch `name`.
    pub fn for_switch(topology: &Topology, name: &str) -> Router {
        Router {
            compiled: compile(topology, name),
            flows: FlowSet::default(),
        }
    }

    /// The compiled flows and route references.
    pub fn compiled(&self) -> &CompiledRouting {
        &self.compiled
    }

    /// Wants every flow; returns their ids.
    pub fn want(&mut self, r: &mut Reconciler) -> Vec<FlowId> {
        self.flows.want(&self.compiled.flows, r)
    }

    /// Replaces these flows by `next`'s; returns the ids whose desired state
    /// changed.
    pub fn replace(&mut self, next: Router, r: &mut Reconciler) -> Vec<FlowId> {
        let changed = self.flows.replace(&next.compiled.flows, r);
        self.compiled = next.compiled;
        changed
    }
}
