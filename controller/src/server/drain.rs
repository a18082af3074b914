//! Draining load-balancer pool members: a member that `sdn apply` removes
//! from its pool stays in it, marked draining (no new connections; its live
//! ones keep their backend, their delivery and their way back), until its
//! switch counts no live connection for it in any group; then it leaves the
//! pool and the switches get the flows and groups without it.

use super::state::{SharedState, lock};
use crate::routing::compile::balance::{group_of, home_switch};
use crate::topology::Topology;
use sdn_proto::southbound::{self as pb, controller_message::Body as ToSwitch};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;
use tracing::{info, warn};

/// How often a drain looks at its members' connections.
const POLL: Duration = Duration::from_millis(500);

/// `next` with every member of `current`'s pools that `next` drops kept,
/// marked draining. A member draining already stays so; one `next` names
/// again takes new connections again.
pub(super) fn keep_draining(current: &Topology, mut next: Topology) -> Topology {
    for lb in &mut next.load_balancers {
        let Some(before) = current.load_balancers.iter().find(|l| l.name == lb.name) else {
            continue;
        };
        for pool in &mut lb.backend_pools {
            let Some(old) = before.backend_pools.iter().find(|p| p.name == pool.name) else {
                continue;
            };
            let dropped: Vec<_> = old
                .members
                .iter()
                .filter(|m| !pool.members.iter().any(|n| n.interface == m.interface))
                .map(|m| crate::topology::load_balancer::PoolMember {
                    draining: true,
                    ..m.clone()
                })
                .collect();
            pool.members.extend(dropped);
        }
    }
    next
}

/// A draining member: its load balancer, pool, address, the switch that
/// balances for it and the groups of the rules that use its pool.
struct Draining {
    lb: String,
    pool: String,
    address: Ipv4Addr,
    switch: String,
    groups: Vec<u32>,
}

fn draining(topology: &Topology) -> Vec<Draining> {
    let mut out = Vec::new();
    for (index, lb) in topology.load_balancers.iter().enumerate() {
        let switch = home_switch(topology, lb).unwrap_or_default().to_string();
        for pool in &lb.backend_pools {
            let groups: Vec<u32> = lb
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.pool == pool.name)
                .map(|(r, _)| group_of(topology, index, r))
                .collect();
            for m in pool.members.iter().filter(|m| m.draining) {
                out.push(Draining {
                    lb: lb.name.clone(),
                    pool: pool.name.clone(),
                    address: m.address,
                    switch: switch.clone(),
                    groups: groups.clone(),
                });
            }
        }
    }
    out
}

/// Live connections per (group, backend) on `switch`; `None` when the
/// switch is not connected (its connections are gone with it).
async fn live_on(state: &SharedState, switch: &str) -> Option<Vec<pb::BackendStats>> {
    let handle = lock(state).switches.get(switch)?.session.clone()?;
    match handle
        .request(ToSwitch::LbStatsRequest(pb::LbStatsRequest {}))
        .await
    {
        Ok(pb::SwitchMessage {
            body: Some(pb::switch_message::Body::LbStatsReply(reply)),
            ..
        }) => Some(reply.backends),
        Ok(_) => Some(Vec::new()),
        Err(status) => {
            warn!(%switch, error = %status.message(), "cannot read the balancer's connections");
            None
        }
    }
}

/// Waits for the draining members of the lab to hold no live connection,
/// removing each from its pool (and telling the switches) when it is done.
/// Returns when no member is draining.
pub(super) async fn finish(state: SharedState) {
    loop {
        tokio::time::sleep(POLL).await;
        let topology = lock(&state).topology.clone();
        let members = draining(&topology);
        if members.is_empty() {
            return;
        }
        let switches: BTreeSet<&str> = members.iter().map(|m| m.switch.as_str()).collect();
        let mut done: Vec<&Draining> = Vec::new();
        for switch in switches {
            let stats = live_on(&state, switch).await.unwrap_or_default();
            for m in members.iter().filter(|m| m.switch == switch) {
                let id = u32::from(m.address);
                let live: u64 = stats
                    .iter()
                    .filter(|s| s.backend == id && m.groups.contains(&s.group))
                    .map(|s| s.live)
                    .sum();
                if live == 0 {
                    done.push(m);
                }
            }
        }
        if done.is_empty() {
            continue;
        }
        let mut shared = lock(&state);
        let mut changed = false;
        for m in done {
            let pool = shared
                .topology
                .load_balancers
                .iter_mut()
                .filter(|l| l.name == m.lb)
                .flat_map(|l| &mut l.backend_pools)
                .find(|p| p.name == m.pool);
            if let Some(pool) = pool {
                let before = pool.members.len();
                pool.members
                    .retain(|x| !(x.draining && x.address == m.address));
                if pool.members.len() != before {
                    info!(lb = %m.lb, pool = %m.pool, member = %m.address, "drained: left the pool");
                    changed = true;
                }
            }
        }
        if changed {
            let generation = *shared.policy.borrow() + 1;
            shared.policy.send_replace(generation);
        }
    }
}
