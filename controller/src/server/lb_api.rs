//! The management API's load-balancer call: each load balancer's frontends
//! and rules, and for every backend its health as the switch's probes last
//! said and the connections its switch sent it.

use super::state::{SessionHandle, SharedState, lock};
use crate::routing::compile::balance::{group_of, home_switch, probe_number};
use crate::topology::load_balancer::FrontendKind;
use sdn_proto::management as mgmt;
use sdn_proto::southbound::{self as pb, controller_message::Body as ToSwitch};
use std::collections::BTreeMap;
use tonic::Status;

/// What a switch said of its groups and probes.
#[derive(Default)]
struct SwitchStats {
    /// (group, backend) → what the switch counts of it.
    backends: BTreeMap<(u32, u32), pb::BackendStats>,
    /// (probe, backend) → result.
    probes: BTreeMap<(u32, u32), pb::ProbeResult>,
}

async fn stats_of(handle: &SessionHandle) -> Result<SwitchStats, Status> {
    let reply = handle
        .request(ToSwitch::LbStatsRequest(pb::LbStatsRequest {}))
        .await?;
    let stats = match reply.body {
        Some(pb::switch_message::Body::LbStatsReply(r)) => r,
        Some(pb::switch_message::Body::Error(e)) => return Err(Status::internal(e.message)),
        _ => return Err(Status::internal("unexpected reply from the switch")),
    };
    Ok(SwitchStats {
        backends: stats
            .backends
            .iter()
            .map(|b| ((b.group, b.backend), *b))
            .collect(),
        probes: stats
            .probes
            .into_iter()
            .map(|p| ((p.probe, p.backend), p))
            .collect(),
    })
}

/// Every load balancer of the lab; `session` finds a switch's session.
pub(super) async fn lb_status(
    state: &SharedState,
    session: impl Fn(&str) -> Option<SessionHandle>,
) -> Result<mgmt::LbStatusReply, Status> {
    let topology = lock(state).topology.clone();
    let mut per_switch: BTreeMap<String, SwitchStats> = BTreeMap::new();
    let mut out = mgmt::LbStatusReply::default();
    for (index, lb) in topology.load_balancers.iter().enumerate() {
        let switch = home_switch(&topology, lb).unwrap_or_default().to_string();
        if !per_switch.contains_key(&switch)
            && let Some(handle) = session(&switch)
        {
            per_switch.insert(switch.clone(), stats_of(&handle).await?);
        }
        let empty = SwitchStats::default();
        let stats = per_switch.get(&switch).unwrap_or(&empty);
        let rules = lb
            .rules
            .iter()
            .enumerate()
            .map(|(r, rule)| {
                let group = group_of(&topology, index, r);
                let probe = rule.probe.as_ref().and_then(|p| {
                    let at = lb.probes.iter().position(|x| &x.name == p)?;
                    Some(probe_number(&topology, index, at))
                });
                let backends = lb
                    .pool(&rule.pool)
                    .map(|pool| {
                        pool.members
                            .iter()
                            .map(|m| {
                                let id = u32::from(m.address);
                                let result = probe.and_then(|p| stats.probes.get(&(p, id)));
                                let health = match (probe, result) {
                                    _ if m.draining => "draining",
                                    (None, _) => "up",
                                    (Some(_), None) => "unknown",
                                    (Some(_), Some(r)) => match pb::ProbeHealth::try_from(r.health)
                                    {
                                        Ok(pb::ProbeHealth::Healthy) => "healthy",
                                        Ok(pb::ProbeHealth::Unhealthy) => "unhealthy",
                                        _ => "unknown",
                                    },
                                };
                                let counted = stats
                                    .backends
                                    .get(&(group, id))
                                    .copied()
                                    .unwrap_or_default();
                                mgmt::LbBackendStatus {
                                    interface: format!(
                                        "{}:{}",
                                        m.interface.host, m.interface.interface
                                    ),
                                    address: m.address.to_string(),
                                    weight: m.weight,
                                    health: health.into(),
                                    last_probe: match result.and_then(|r| r.last_ok) {
                                        Some(true) => "ok".into(),
                                        Some(false) => "failed".into(),
                                        None => String::new(),
                                    },
                                    last_probe_age_ms: result.map_or(0, |r| r.last_age_ms),
                                    live_connections: counted.live,
                                    total_connections: counted.total,
                                    packets: counted.packets,
                                    bytes: counted.bytes,
                                    draining: m.draining,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                mgmt::LbRuleStatus {
                    name: rule.name.clone(),
                    frontend: rule.frontend.clone(),
                    protocol: rule.protocol.name().into(),
                    frontend_port: u32::from(rule.frontend_port),
                    backend_port: u32::from(rule.backend_port),
                    pool: rule.pool.clone(),
                    probe: rule.probe.clone().unwrap_or_default(),
                    algorithm: rule.algorithm.name().into(),
                    group,
                    backends,
                }
            })
            .collect();
        out.load_balancers.push(mgmt::LoadBalancerStatus {
            name: lb.name.clone(),
            network: lb.network.clone(),
            switch,
            frontends: lb
                .frontends
                .iter()
                .map(|f| mgmt::LbFrontendStatus {
                    name: f.name.clone(),
                    address: f.address.to_string(),
                    kind: match f.kind {
                        FrontendKind::Public => "public".into(),
                        FrontendKind::Internal { .. } => "internal".into(),
                    },
                })
                .collect(),
            rules,
        });
    }
    Ok(out)
}
