//! The management API's policy calls: apply an edited security section and
//! route tables,
//! list tracked connections, show rules with their hit counters.

use super::state::{SessionHandle, SharedState, lock};
use crate::routing::switch::Router;
use crate::security::compile::{COOKIE_FIREWALL, COOKIE_INVALID, COOKIE_KIND_MASK};
use crate::security::flow_log::FlowLog;
use crate::security::switch::Firewall;
use crate::topology::Topology;
use crate::topology::security::OnRuleRemoval;
use sdn_proto::management as mgmt;
use sdn_proto::southbound::{self as pb, controller_message::Body as ToSwitch};
use sdn_vswitch::flow::{Action, FlowSpec};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::Status;

/// How long `apply` waits for every switch to confirm.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a lab's controller writes its flow log.
pub fn flow_log_path(lab: &str) -> PathBuf {
    crate::lab::record::run_dir(lab).join("flow-log.jsonl")
}

/// The flow log `topology` asks for, if any.
pub fn flow_log_for(topology: &Topology) -> Option<FlowLog> {
    let rate = topology.security.flow_log_rate?;
    let path = flow_log_path(&topology.name);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    Some(FlowLog::new(&path, rate))
}

fn flows_of(topology: &Topology) -> BTreeMap<String, HashSet<FlowSpec>> {
    topology
        .switches
        .iter()
        .map(|s| {
            let fw = Firewall::for_switch(topology, &s.name);
            let router = Router::for_switch(topology, &s.name);
            (
                s.name.clone(),
                fw.compiled()
                    .flows
                    .iter()
                    .chain(&router.compiled().flows)
                    .cloned()
                    .collect(),
            )
        })
        .collect()
}

fn sessions(state: &SharedState) -> Vec<(String, SessionHandle)> {
    lock(state)
        .switches
        .iter()
        .filter_map(|(name, info)| info.session.clone().map(|s| (name.clone(), s)))
        .collect()
}

fn conntrack_reply(reply: pb::SwitchMessage) -> Result<pb::ConntrackReply, Status> {
    match reply.body {
        Some(pb::switch_message::Body::ConntrackReply(r)) => Ok(r),
        Some(pb::switch_message::Body::Error(e)) => Err(Status::internal(e.message)),
        _ => Err(Status::internal("unexpected reply from the switch")),
    }
}

/// The public frontend addresses of a lab's load balancers.
fn public_frontends(topology: &Topology) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
    topology
        .load_balancers
        .iter()
        .flat_map(|l| &l.frontends)
        .filter(|f| f.kind == crate::topology::load_balancer::FrontendKind::Public)
        .map(|f| f.address)
        .collect()
}

/// Replaces the security section, the route tables and the load
/// balancers (members a pool drops drain); returns once every connected
/// switch enforces them, after cutting what `on_rule_removal: cut` asks.
pub(super) async fn apply(
    state: &SharedState,
    request: mgmt::ApplyRequest,
) -> Result<mgmt::ApplyReply, Status> {
    let path = Path::new(&request.path);
    let next = crate::topology::parse(&request.topology_yaml, path)
        .map_err(|e| Status::invalid_argument(format!("the topology file has problems:\n{e}")))?;
    let (generation, before, next) = {
        let mut shared = lock(state);
        if next.name != shared.topology.name {
            return Err(Status::failed_precondition(
                "the file describes another lab",
            ));
        }
        let mut same_rest = next.clone();
        same_rest.security = shared.topology.security.clone();
        same_rest.routing.route_tables = shared.topology.routing.route_tables.clone();
        same_rest.load_balancers = shared.topology.load_balancers.clone();
        same_rest.source = shared.topology.source.clone();
        if same_rest != shared.topology {
            return Err(Status::failed_precondition(
                "only the security section, route_tables and load_balancers of a running lab can change; for other changes run sdn down and sdn up",
            ));
        }
        let (was, is) = (public_frontends(&shared.topology), public_frontends(&next));
        if was != is {
            return Err(Status::failed_precondition(format!(
                "the public frontend addresses of a running lab cannot change (the internet routes them to the lab from sdn up): they are {}; for other addresses run sdn down and sdn up",
                was.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let next = super::drain::keep_draining(&shared.topology, next);
        let before = flows_of(&shared.topology);
        if next.security.flow_log_rate != shared.topology.security.flow_log_rate {
            shared.flow_log = flow_log_for(&next);
        }
        shared.topology = next.clone();
        let generation = *shared.policy.borrow() + 1;
        shared.policy.send_replace(generation);
        (generation, before, next)
    };
    let deadline = Instant::now() + APPLY_TIMEOUT;
    loop {
        let pending: Vec<String> = lock(state)
            .switches
            .iter()
            .filter(|(_, i)| i.session.is_some() && i.policy_generation < generation)
            .map(|(n, _)| n.clone())
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Status::deadline_exceeded(format!(
                "switches did not confirm the new rules within {} s: {}",
                APPLY_TIMEOUT.as_secs(),
                pending.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = flows_of(&next);
    let mut reply = mgmt::ApplyReply {
        policy_generation: generation,
        ..Default::default()
    };
    for (name, new_flows) in &after {
        let old = before.get(name).cloned().unwrap_or_default();
        let added = new_flows.difference(&old).count() as u64;
        let removed = old.difference(new_flows).count() as u64;
        if added + removed > 0 {
            reply.changed_switches.push(name.clone());
        }
        reply.flows_added += added;
        reply.flows_removed += removed;
    }
    if next
        .load_balancers
        .iter()
        .flat_map(|l| &l.backend_pools)
        .flat_map(|p| &p.members)
        .any(|m| m.draining)
    {
        tokio::spawn(super::drain::finish(state.clone()));
    }
    if next.security.on_rule_removal == OnRuleRemoval::Cut {
        for (name, handle) in sessions(state) {
            let listed = conntrack_reply(
                handle
                    .request(ToSwitch::ConntrackRequest(pb::ConntrackRequest {
                        list: true,
                        ..Default::default()
                    }))
                    .await?,
            )?;
            let cut = Firewall::for_switch(&next, &name).to_cut(&listed.conns);
            if cut.is_empty() {
                continue;
            }
            let done = conntrack_reply(
                handle
                    .request(ToSwitch::ConntrackRequest(pb::ConntrackRequest {
                        remove: cut,
                        ..Default::default()
                    }))
                    .await?,
            )?;
            reply.connections_cut += done.removed;
        }
    }
    Ok(reply)
}

/// The connections one switch tracks.
pub(super) async fn conntrack(
    state: &SharedState,
    handle: SessionHandle,
    request: mgmt::ConntrackRequest,
) -> Result<mgmt::ConntrackReply, Status> {
    let tracker = conntrack_reply(
        handle
            .request(ToSwitch::ConntrackRequest(pb::ConntrackRequest {
                list: true,
                zone: request.zone,
                ..Default::default()
            }))
            .await?,
    )?;
    let zone_ports = {
        let shared = lock(state);
        let topology = &shared.topology;
        let mut names: std::collections::HashMap<u32, String> = topology
            .switch(&request.switch)
            .map(|s| s.ports.iter().map(|p| (p.number, p.name.clone())).collect())
            .unwrap_or_default();
        // NAT zones are named after their network.
        for (i, network) in topology.networks.iter().enumerate() {
            let zone = crate::routing::addresses::nat_zone(i);
            names.insert(u32::from(zone), format!("nat:{}", network.name));
        }
        names
    };
    Ok(mgmt::ConntrackReply {
        tracker: Some(tracker),
        zone_ports,
    })
}

fn denies(actions: &[Action]) -> bool {
    actions.is_empty() || matches!(actions, [Action::Controller { .. }])
}

/// The rules one switch enforces, with the counters of their flows.
pub(super) async fn rules(
    state: &SharedState,
    handle: SessionHandle,
    request: mgmt::RulesRequest,
) -> Result<mgmt::RulesReply, Status> {
    let firewall = Firewall::for_switch(&lock(state).topology, &request.switch);
    let reply = handle
        .request(ToSwitch::FlowStatsRequest(pb::FlowStatsRequest {
            cookie: COOKIE_FIREWALL,
            cookie_mask: 0xffff << 48,
            ..Default::default()
        }))
        .await?;
    let flows = match reply.body {
        Some(pb::switch_message::Body::FlowStatsReply(r)) => r.flows,
        Some(pb::switch_message::Body::Error(e)) => return Err(Status::internal(e.message)),
        _ => return Err(Status::internal("unexpected reply from the switch")),
    };
    let compiled = firewall.compiled();
    let mut hits: Vec<mgmt::RuleHits> = compiled
        .rules
        .iter()
        .map(|r| mgmt::RuleHits {
            group: r.group.clone(),
            rule: r.rule.clone(),
            direction: r.direction.name().into(),
            priority: r.priority,
            ..Default::default()
        })
        .collect();
    let mut invalid_packets = 0;
    for flow in &compiled.flows {
        if let Some(index) = compiled.rule_index(flow.cookie) {
            hits[index].access = if denies(&flow.actions) {
                "deny"
            } else {
                "allow"
            }
            .into();
        }
    }
    for stats in &flows {
        if stats.cookie & COOKIE_KIND_MASK == COOKIE_INVALID {
            invalid_packets += stats.packet_count;
        }
        let Some(index) = compiled.rule_index(stats.cookie) else {
            continue;
        };
        hits[index].packets += stats.packet_count;
        hits[index].bytes += stats.byte_count;
        hits[index].flows += 1;
    }
    hits.sort_by(|a, b| {
        (&a.group, &a.direction, a.priority, &a.rule).cmp(&(
            &b.group,
            &b.direction,
            b.priority,
            &b.rule,
        ))
    });
    Ok(mgmt::RulesReply {
        rules: hits,
        invalid_packets,
    })
}
