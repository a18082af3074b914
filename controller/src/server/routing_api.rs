//! The management API's routing call: a switch's effective routes per
//! subnet, as Azure lists them, with what each route carried there.

use super::state::{SessionHandle, SharedState, lock};
use crate::routing::compile::COOKIE_ROUTING;
use crate::routing::routes::subnet_routes;
use crate::routing::switch::Router;
use crate::topology::Topology;
use sdn_proto::management as mgmt;
use sdn_proto::southbound::{self as pb, controller_message::Body as ToSwitch};
use std::collections::BTreeSet;
use tonic::Status;

/// The subnets a request names: one (`subnet` or `network/subnet`), or
/// every subnet with hosts on `switch`.
fn subnets_of(
    topology: &Topology,
    switch: &str,
    filter: &str,
) -> Result<Vec<(String, String)>, Status> {
    if !filter.is_empty() {
        let found: Vec<(String, String)> = topology
            .networks
            .iter()
            .flat_map(|n| {
                n.subnets
                    .iter()
                    .map(move |s| (n.name.clone(), s.name.clone()))
            })
            .filter(|(n, s)| match filter.split_once('/') {
                Some((fn_, fs)) => n == fn_ && s == fs,
                None => s == filter,
            })
            .collect();
        return match found.len() {
            0 => Err(Status::not_found(format!("no subnet {filter}"))),
            1 => Ok(found),
            _ => Err(Status::invalid_argument(format!(
                "subnet {filter} is in several networks; write network/subnet"
            ))),
        };
    }
    let Some(sw) = topology.switch(switch) else {
        return Err(Status::not_found(format!("no switch {switch}")));
    };
    let set: BTreeSet<(String, String)> = sw
        .ports
        .iter()
        .filter_map(|p| topology.host_on(switch, &p.name))
        .map(|(_, i)| (i.network.clone(), i.subnet.clone()))
        .collect();
    let order = |(n, s): &(String, String)| {
        topology.networks.iter().position(|x| &x.name == n).zip(
            topology
                .network(n)
                .and_then(|x| x.subnets.iter().position(|y| &y.name == s)),
        )
    };
    let mut list: Vec<(String, String)> = set.into_iter().collect();
    list.sort_by_key(order);
    Ok(list)
}

/// The effective routes of `request.switch`'s subnets with their counters.
pub(super) async fn routes(
    state: &SharedState,
    handle: SessionHandle,
    request: mgmt::RoutesRequest,
) -> Result<mgmt::RoutesReply, Status> {
    let topology = lock(state).topology.clone();
    let subnets = subnets_of(&topology, &request.switch, &request.subnet)?;
    let router = Router::for_switch(&topology, &request.switch);
    let reply = handle
        .request(ToSwitch::FlowStatsRequest(pb::FlowStatsRequest {
            cookie: COOKIE_ROUTING,
            cookie_mask: 0xffff << 48,
            ..Default::default()
        }))
        .await?;
    let flows = match reply.body {
        Some(pb::switch_message::Body::FlowStatsReply(r)) => r.flows,
        Some(pb::switch_message::Body::Error(e)) => return Err(Status::internal(e.message)),
        _ => return Err(Status::internal("unexpected reply from the switch")),
    };
    let compiled = router.compiled();
    let mut out = mgmt::RoutesReply::default();
    for (network, subnet) in subnets {
        let Some(s) = topology.subnet(&network, &subnet) else {
            continue;
        };
        let routes = subnet_routes(&topology, &network, &subnet)
            .into_iter()
            .map(|route| {
                let (mut packets, mut bytes) = (0, 0);
                for stats in &flows {
                    if let Some(r) = compiled.route_of(stats.cookie)
                        && r.network == network
                        && r.subnet == subnet
                        && r.route == route
                    {
                        packets += stats.packet_count;
                        bytes += stats.byte_count;
                    }
                }
                mgmt::RouteInfo {
                    source: route.source.name().into(),
                    state: if route.active { "active" } else { "invalid" }.into(),
                    prefix: route.prefix.to_string(),
                    next_hop_type: route.hop.type_name().into(),
                    next_hop: route.hop.target().unwrap_or_default(),
                    name: route.name.clone(),
                    packets,
                    bytes,
                }
            })
            .collect();
        out.subnets.push(mgmt::SubnetRoutes {
            network: network.clone(),
            subnet: subnet.clone(),
            cidr: s.cidr.to_string(),
            gateway: s.gateway.map(|g| g.to_string()).unwrap_or_default(),
            route_table: topology
                .routing
                .table_of(&network, &subnet)
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            routes,
        });
    }
    Ok(out)
}
