//! Translation between the southbound protocol and the datapath: controller
//! messages become datapath commands (or direct answers), datapath events
//! become switch messages. Input from the wire is checked, never trusted.

use crate::conntrack::packet::Tuple;
use crate::conntrack::{ConntrackQuery, ConntrackReport};
use crate::datapath::{CapturedFrame, Command, DatapathHandle, Event, PortDescription};
use crate::flow::convert::{ConvertError, actions_from_pb, narrow};
use crate::flow::{FlowMod, Match};
use crate::pipeline::balance::{GroupBackend, GroupSpec};
use crate::pipeline::{PacketInReason, RemovedReason};
use crate::probe::{ProbeKind, ProbeReport, ProbeSpec};
use crate::wire::{GsoType, VnetRepr, vnet_hdr};
use sdn_lb::{Algorithm, NoHealthyBackends};
use sdn_proto::southbound::{
    self as pb, controller_message::Body as In, switch_message::Body as Out,
};
use std::net::Ipv4Addr;
use std::time::Duration;
use std::time::Instant;

pub(super) fn error_message(xid: u64, kind: pb::ErrorType, message: String) -> pb::SwitchMessage {
    pb::SwitchMessage {
        xid,
        body: Some(Out::Error(pb::Error {
            r#type: kind as i32,
            message,
        })),
    }
}

pub(super) fn port_to_pb(p: &PortDescription) -> pb::Port {
    pb::Port {
        number: p.number,
        name: p.info.name.clone(),
        hw_addr: p.info.hw_addr.0.to_vec().into(),
        link_up: true,
        mtu: p.info.mtu,
        offloads: p.info.offloads,
        tunnel_local: p
            .info
            .tunnel_local
            .map(|a| a.octets().to_vec().into())
            .unwrap_or_default(),
    }
}

fn vnet_from_pb(o: Option<&pb::Offload>) -> Result<VnetRepr, ConvertError> {
    let Some(o) = o else {
        return Ok(VnetRepr::PLAIN);
    };
    let narrow = |field: &'static str, v: u32| {
        u16::try_from(v).map_err(|_| ConvertError::OutOfRange {
            field,
            value: u64::from(v),
        })
    };
    Ok(VnetRepr {
        flags: if o.needs_checksum {
            vnet_hdr::FLAG_NEEDS_CSUM
        } else {
            0
        },
        gso_type: GsoType::from(u8::try_from(o.gso_type).map_err(|_| {
            ConvertError::OutOfRange {
                field: "offload.gso_type",
                value: u64::from(o.gso_type),
            }
        })?),
        hdr_len: 0,
        gso_size: narrow("offload.gso_size", o.gso_size)?,
        csum_start: narrow("offload.checksum_start", o.checksum_start)?,
        csum_offset: narrow("offload.checksum_offset", o.checksum_offset)?,
    })
}

fn vnet_to_pb(v: &VnetRepr) -> Option<pb::Offload> {
    (*v != VnetRepr::PLAIN).then(|| pb::Offload {
        gso_type: u32::from(u8::from(v.gso_type)),
        gso_size: u32::from(v.gso_size),
        needs_checksum: v.needs_checksum(),
        checksum_start: u32::from(v.csum_start),
        checksum_offset: u32::from(v.csum_offset),
    })
}

/// Turns a controller message into a datapath command, or answers it directly.
pub(super) fn handle_message(
    message: pb::ControllerMessage,
    datapath: &DatapathHandle,
) -> Option<pb::SwitchMessage> {
    let xid = message.xid;
    let bad = |e: ConvertError| Some(error_message(xid, pb::ErrorType::BadRequest, e.to_string()));
    let command = match message.body? {
        In::Hello(_) => return None,
        In::EchoRequest(echo) => {
            return Some(pb::SwitchMessage {
                xid,
                body: Some(Out::EchoReply(echo)),
            });
        }
        In::EchoReply(_) => return None,
        In::FlowMod(fm) => match FlowMod::try_from(&fm) {
            Ok(flow_mod) => Command::FlowMod { xid, flow_mod },
            Err(e) => return bad(e),
        },
        In::BarrierRequest(_) => Command::Barrier { xid },
        In::PacketOut(po) => {
            let actions = match actions_from_pb(&po.actions) {
                Ok(a) => a,
                Err(e) => return bad(e),
            };
            let vnet = match vnet_from_pb(po.offload.as_ref()) {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            Command::PacketOut {
                xid,
                in_port: po.in_port,
                actions,
                data: po.data.to_vec(),
                vnet,
            }
        }
        In::FlowStatsRequest(req) => {
            let filter = match req.r#match.as_ref().map(Match::try_from).transpose() {
                Ok(m) => m.unwrap_or_default(),
                Err(e) => return bad(e),
            };
            let table = match req.table_id.map(u8::try_from).transpose() {
                Ok(t) => t,
                Err(_) => {
                    return bad(ConvertError::OutOfRange {
                        field: "table_id",
                        value: u64::from(req.table_id.unwrap_or(0)),
                    });
                }
            };
            Command::FlowStats {
                xid,
                table,
                filter,
                cookie: req.cookie,
                cookie_mask: req.cookie_mask,
            }
        }
        In::PortStatsRequest(_) => Command::PortStats { xid },
        In::CaptureStart(c) => Command::CaptureStart {
            id: c.capture_id,
            port: c.port,
            snaplen: c.snaplen,
        },
        In::CaptureStop(c) => Command::CaptureStop { id: c.capture_id },
        In::ConntrackRequest(req) => match conntrack_query(&req) {
            Ok(query) => Command::Conntrack { xid, query },
            Err(e) => return bad(e),
        },
        In::GroupMod(gm) => match group_from_pb(&gm) {
            Ok(change) => Command::GroupMod { xid, change },
            Err(e) => return bad(e),
        },
        In::LbStatsRequest(_) => Command::LbStats { xid },
        In::ProbeMod(pm) => match pm.probes.iter().map(probe_from_pb).collect() {
            Ok(probes) => Command::ProbeMod { probes },
            Err(e) => return bad(e),
        },
    };
    if datapath.send(command) {
        None
    } else {
        Some(error_message(
            xid,
            pb::ErrorType::BadRequest,
            "datapath stopped".into(),
        ))
    }
}

fn zone(value: u32) -> Result<u16, ConvertError> {
    u16::try_from(value).map_err(|_| ConvertError::OutOfRange {
        field: "zone",
        value: u64::from(value),
    })
}

fn tuple_from_pb(t: &pb::ConnTuple) -> Result<Tuple, ConvertError> {
    let addr = |field: &'static str, b: &[u8]| {
        <[u8; 4]>::try_from(b)
            .map(Ipv4Addr::from)
            .map_err(|_| ConvertError::BadLength {
                field,
                len: b.len(),
            })
    };
    let port = |field: &'static str, v: u32| {
        u16::try_from(v).map_err(|_| ConvertError::OutOfRange {
            field,
            value: u64::from(v),
        })
    };
    Ok(Tuple {
        proto: u8::try_from(t.proto).map_err(|_| ConvertError::OutOfRange {
            field: "proto",
            value: u64::from(t.proto),
        })?,
        src: addr("src", &t.src)?,
        dst: addr("dst", &t.dst)?,
        sport: port("sport", t.sport)?,
        dport: port("dport", t.dport)?,
    })
}

fn tuple_to_pb(t: &Tuple) -> pb::ConnTuple {
    pb::ConnTuple {
        proto: u32::from(t.proto),
        src: t.src.octets().to_vec().into(),
        dst: t.dst.octets().to_vec().into(),
        sport: u32::from(t.sport),
        dport: u32::from(t.dport),
    }
}

/// A probe as the switch runs it.
pub fn probe_from_pb(p: &pb::ProbeSpec) -> Result<ProbeSpec, ConvertError> {
    let router_mac =
        crate::wire::EthernetAddress::from_bytes(&p.router_mac).ok_or(ConvertError::BadLength {
            field: "probe.router_mac",
            len: p.router_mac.len(),
        })?;
    let targets = p
        .targets
        .iter()
        .map(|t| match t.address.as_ref() {
            [a, b, c, d] => Ok((t.backend, Ipv4Addr::new(*a, *b, *c, *d))),
            other => Err(ConvertError::BadLength {
                field: "probe.targets.address",
                len: other.len(),
            }),
        })
        .collect::<Result<_, _>>()?;
    let interval = std::time::Duration::from_millis(p.interval_ms);
    let timeout = std::time::Duration::from_millis(p.timeout_ms);
    if interval.is_zero() || timeout.is_zero() || timeout >= interval {
        return Err(ConvertError::OutOfRange {
            field: "probe.timeout_ms",
            value: p.timeout_ms,
        });
    }
    Ok(ProbeSpec {
        probe: p.probe,
        kind: if p.http_path.is_empty() {
            ProbeKind::Tcp
        } else {
            ProbeKind::Http(p.http_path.clone())
        },
        port: narrow("probe.port", p.port)?,
        config: sdn_lb::ProbeConfig {
            interval,
            timeout,
            healthy_threshold: p.healthy_threshold.max(1),
            unhealthy_threshold: p.unhealthy_threshold.max(1),
        },
        router_mac,
        targets,
    })
}

/// The message that carries probe `spec`.
pub fn probe_to_pb(spec: &ProbeSpec) -> pb::ProbeSpec {
    pb::ProbeSpec {
        probe: spec.probe,
        http_path: match &spec.kind {
            ProbeKind::Tcp => String::new(),
            ProbeKind::Http(path) => path.clone(),
        },
        port: u32::from(spec.port),
        interval_ms: spec.config.interval.as_millis() as u64,
        timeout_ms: spec.config.timeout.as_millis() as u64,
        healthy_threshold: spec.config.healthy_threshold,
        unhealthy_threshold: spec.config.unhealthy_threshold,
        router_mac: spec.router_mac.as_bytes().to_vec().into(),
        targets: spec
            .targets
            .iter()
            .map(|(backend, addr)| pb::ProbeTarget {
                backend: *backend,
                address: addr.octets().to_vec().into(),
            })
            .collect(),
    }
}

fn probe_result_to_pb(r: &ProbeReport, now: Instant) -> pb::ProbeResult {
    pb::ProbeResult {
        probe: r.probe,
        backend: r.backend,
        health: match r.health {
            sdn_lb::Health::Unknown => pb::ProbeHealth::Unknown,
            sdn_lb::Health::Healthy => pb::ProbeHealth::Healthy,
            sdn_lb::Health::Unhealthy => pb::ProbeHealth::Unhealthy,
        } as i32,
        last_ok: r.last.map(|(o, _)| o == sdn_lb::ProbeOutcome::Success),
        last_age_ms: r.last.map_or(0, |(_, at)| {
            now.saturating_duration_since(at).as_millis() as u64
        }),
    }
}

/// The group-mod that installs `spec` (`group_from_pb` reads it back).
pub fn group_to_pb(spec: &GroupSpec) -> pb::GroupMod {
    let algorithm = match spec.algorithm {
        Algorithm::RoundRobin => pb::BalanceAlgorithm::RoundRobin,
        Algorithm::WeightedRoundRobin => pb::BalanceAlgorithm::WeightedRoundRobin,
        Algorithm::LeastConnections => pb::BalanceAlgorithm::LeastConnections,
        Algorithm::SourceIpHash => pb::BalanceAlgorithm::SourceIpHash,
        Algorithm::SourceIpProtocol => pb::BalanceAlgorithm::SourceIpProtocol,
        Algorithm::FiveTupleHash => pb::BalanceAlgorithm::FiveTupleHash,
    };
    pb::GroupMod {
        group: spec.group,
        version: spec.version,
        delete: false,
        algorithm: algorithm as i32,
        all_probed_up: spec.no_healthy == NoHealthyBackends::AllProbedUp,
        backends: spec
            .backends
            .iter()
            .map(|b| pb::GroupBackend {
                id: b.id,
                address: b.addr.octets().to_vec().into(),
                port: u32::from(b.port.unwrap_or(0)),
                weight: b.weight,
                healthy: b.healthy,
                draining: b.draining,
            })
            .collect(),
        idle_timeout_ms: spec
            .idle_timeout
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    }
}

/// A group-mod as the pipeline takes it: the group to install, or
/// `Err(group)` to delete.
pub fn group_from_pb(gm: &pb::GroupMod) -> Result<Result<GroupSpec, u32>, ConvertError> {
    if gm.delete {
        return Ok(Err(gm.group));
    }
    let algorithm = match pb::BalanceAlgorithm::try_from(gm.algorithm) {
        Ok(pb::BalanceAlgorithm::RoundRobin) => Algorithm::RoundRobin,
        Ok(pb::BalanceAlgorithm::WeightedRoundRobin) => Algorithm::WeightedRoundRobin,
        Ok(pb::BalanceAlgorithm::LeastConnections) => Algorithm::LeastConnections,
        Ok(pb::BalanceAlgorithm::SourceIpHash) => Algorithm::SourceIpHash,
        Ok(pb::BalanceAlgorithm::SourceIpProtocol) => Algorithm::SourceIpProtocol,
        Ok(pb::BalanceAlgorithm::FiveTupleHash) => Algorithm::FiveTupleHash,
        Ok(pb::BalanceAlgorithm::Unspecified) | Err(_) => {
            return Err(ConvertError::Missing("group_mod.algorithm"));
        }
    };
    let backends = gm
        .backends
        .iter()
        .map(|b| {
            let addr = match b.address.as_ref() {
                [a, b, c, d] => Ipv4Addr::new(*a, *b, *c, *d),
                other => {
                    return Err(ConvertError::BadLength {
                        field: "group_mod.backends.address",
                        len: other.len(),
                    });
                }
            };
            Ok(GroupBackend {
                id: b.id,
                addr,
                port: match narrow::<u16>("group_mod.backends.port", b.port)? {
                    0 => None,
                    port => Some(port),
                },
                weight: b.weight,
                healthy: b.healthy,
                draining: b.draining,
            })
        })
        .collect::<Result<_, ConvertError>>()?;
    Ok(Ok(GroupSpec {
        group: gm.group,
        version: gm.version,
        algorithm,
        no_healthy: if gm.all_probed_up {
            NoHealthyBackends::AllProbedUp
        } else {
            NoHealthyBackends::Refuse
        },
        backends,
        idle_timeout: (gm.idle_timeout_ms > 0).then(|| Duration::from_millis(gm.idle_timeout_ms)),
    }))
}

fn conntrack_query(req: &pb::ConntrackRequest) -> Result<ConntrackQuery, ConvertError> {
    Ok(ConntrackQuery {
        set_capacity: req.set_capacity.map(|c| c as usize),
        flush_zones: req
            .flush_zones
            .iter()
            .map(|&z| zone(z))
            .collect::<Result<_, _>>()?,
        remove: req
            .remove
            .iter()
            .map(|r| {
                let orig = r
                    .orig
                    .as_ref()
                    .ok_or(ConvertError::Missing("remove.orig"))?;
                Ok((zone(r.zone)?, tuple_from_pb(orig)?))
            })
            .collect::<Result<_, ConvertError>>()?,
        list: req.list,
        zone: req.zone.map(zone).transpose()?,
    })
}

fn conntrack_report_to_pb(r: ConntrackReport) -> pb::ConntrackReply {
    pb::ConntrackReply {
        conns: r
            .conns
            .iter()
            .map(|c| pb::TrackedConn {
                zone: u32::from(c.zone),
                orig: Some(tuple_to_pb(&c.orig)),
                reply: Some(tuple_to_pb(&c.reply)),
                state: c.state.to_string(),
                age_ms: c.age.as_millis() as u64,
                expires_in_ms: c.expires_in.as_millis() as u64,
                packets_orig: c.packets[0],
                packets_reply: c.packets[1],
                lb_group: c.backend.map(|m| m.group),
                lb_backend: c.backend.map_or(0, |m| m.backend),
            })
            .collect(),
        count: r.count as u64,
        capacity: r.capacity as u64,
        committed: r.counters.committed,
        expired: r.counters.expired,
        invalid: r.counters.invalid,
        full_drops: r.counters.full_drops,
        nat_exhausted: r.counters.nat_exhausted,
        lb_no_backend: r.counters.lb_no_backend,
        removed: r.removed as u64,
    }
}

fn captured_to_pb(f: CapturedFrame) -> pb::CapturedFrame {
    pb::CapturedFrame {
        timestamp_ns: f.timestamp_ns,
        original_len: f.original_len,
        data: f.data.into(),
        direction: if f.inbound {
            pb::CaptureDirection::In
        } else {
            pb::CaptureDirection::Out
        } as i32,
    }
}

pub(super) fn event_to_pb(event: Event, xid: &mut u64) -> pb::SwitchMessage {
    let mut unsolicited = || {
        *xid += 1;
        *xid
    };
    match event {
        Event::LbStats {
            xid,
            backends,
            probes,
        } => {
            let now = Instant::now();
            pb::SwitchMessage {
                xid,
                body: Some(Out::LbStatsReply(pb::LbStatsReply {
                    backends: backends
                        .into_iter()
                        .map(|b| pb::BackendStats {
                            group: b.group,
                            backend: b.backend,
                            live: b.live,
                            total: b.total,
                            packets: b.traffic.packets,
                            bytes: b.traffic.bytes,
                        })
                        .collect(),
                    probes: probes.iter().map(|r| probe_result_to_pb(r, now)).collect(),
                })),
            }
        }
        Event::ProbeChange(reports) => {
            let now = Instant::now();
            pb::SwitchMessage {
                xid: unsolicited(),
                body: Some(Out::ProbeStatus(pb::ProbeStatus {
                    results: reports.iter().map(|r| probe_result_to_pb(r, now)).collect(),
                })),
            }
        }
        Event::PacketIn {
            in_port,
            request,
            total_len,
            data,
            vnet,
            tunnel,
        } => pb::SwitchMessage {
            xid: unsolicited(),
            body: Some(Out::PacketIn(pb::PacketIn {
                in_port,
                reason: match request.reason {
                    PacketInReason::Action => pb::PacketInReason::Action,
                    PacketInReason::NoMatch => pb::PacketInReason::NoMatch,
                } as i32,
                table_id: u32::from(request.table),
                cookie: request.cookie,
                total_len,
                data: data.into(),
                offload: vnet_to_pb(&vnet),
                tunnel_id: tunnel.map(|t| t.vni),
                tunnel_src: tunnel
                    .map(|t| t.src.octets().to_vec().into())
                    .unwrap_or_default(),
            })),
        },
        Event::FlowRemoved(removed) => {
            let stats = pb::FlowStats::from(&removed.stats);
            pb::SwitchMessage {
                xid: unsolicited(),
                body: Some(Out::FlowRemoved(pb::FlowRemoved {
                    reason: match removed.reason {
                        RemovedReason::IdleTimeout => pb::FlowRemovedReason::IdleTimeout,
                        RemovedReason::HardTimeout => pb::FlowRemovedReason::HardTimeout,
                        RemovedReason::Delete => pb::FlowRemovedReason::Delete,
                    } as i32,
                    table_id: stats.table_id,
                    priority: stats.priority,
                    r#match: stats.r#match,
                    cookie: stats.cookie,
                    duration_ms: stats.duration_ms,
                    packet_count: stats.packet_count,
                    byte_count: stats.byte_count,
                })),
            }
        }
        Event::BarrierReply { xid } => pb::SwitchMessage {
            xid,
            body: Some(Out::BarrierReply(pb::BarrierReply {})),
        },
        Event::FlowStats { xid, flows } => pb::SwitchMessage {
            xid,
            body: Some(Out::FlowStatsReply(pb::FlowStatsReply {
                flows: flows.iter().map(pb::FlowStats::from).collect(),
            })),
        },
        Event::PortStats {
            xid,
            ports,
            datapath,
        } => pb::SwitchMessage {
            xid,
            body: Some(Out::PortStatsReply(pb::PortStatsReply {
                ports: ports
                    .into_iter()
                    .map(|(d, c)| pb::PortStats {
                        port: d.number,
                        name: d.info.name,
                        rx_packets: c.rx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_packets: c.tx_packets,
                        tx_bytes: c.tx_bytes,
                        rx_dropped: c.rx_dropped,
                        tx_dropped: c.tx_dropped,
                        rx_errors: c.rx_errors,
                        tx_errors: c.tx_errors,
                    })
                    .collect(),
                datapath: Some(pb::DatapathStats {
                    packet_in_sent: datapath.packet_in_sent,
                    packet_in_dropped: datapath.packet_in_dropped,
                    cache_hits: datapath.pipeline.cache_hits,
                    cache_misses: datapath.pipeline.cache_misses,
                    segmented_frames: datapath.segmented_frames,
                    icmp_sent: datapath.pipeline.icmp_sent,
                    icmp_limited: datapath.pipeline.icmp_limited,
                    ttl_expired: datapath.pipeline.ttl_expired,
                    too_big: datapath.pipeline.too_big,
                    fragmented_frames: datapath.fragmented_frames,
                }),
            })),
        },
        Event::Conntrack { xid, report } => pb::SwitchMessage {
            xid,
            body: Some(Out::ConntrackReply(conntrack_report_to_pb(report))),
        },
        Event::Error { xid, message } => error_message(xid, pb::ErrorType::FlowModFailed, message),
        Event::Capture {
            id,
            frames,
            dropped,
        } => pb::SwitchMessage {
            xid: unsolicited(),
            body: Some(Out::CaptureData(pb::CaptureData {
                capture_id: id,
                frames: frames.into_iter().map(captured_to_pb).collect(),
                dropped,
            })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_metadata_round_trip_and_bad_values() {
        let v = VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: 0,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(vnet_from_pb(vnet_to_pb(&v).as_ref()).unwrap(), v);
        assert_eq!(vnet_to_pb(&VnetRepr::PLAIN), None);
        let bad = pb::Offload {
            gso_size: 70_000,
            ..Default::default()
        };
        assert!(vnet_from_pb(Some(&bad)).is_err());
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    fn message() -> pb::GroupMod {
        pb::GroupMod {
            group: 7,
            version: 3,
            delete: false,
            algorithm: pb::BalanceAlgorithm::WeightedRoundRobin as i32,
            all_probed_up: true,
            backends: vec![pb::GroupBackend {
                id: 1,
                address: vec![10, 30, 1, 11].into(),
                port: 8080,
                weight: 2,
                healthy: true,
                draining: false,
            }],
            idle_timeout_ms: 240_000,
        }
    }

    #[test]
    fn a_group_mod_becomes_a_group() {
        let spec = group_from_pb(&message()).unwrap().unwrap();
        assert_eq!(spec.group, 7);
        assert_eq!(spec.version, 3);
        assert_eq!(spec.algorithm, Algorithm::WeightedRoundRobin);
        assert_eq!(spec.no_healthy, NoHealthyBackends::AllProbedUp);
        assert_eq!(spec.idle_timeout, Some(Duration::from_secs(240)));
        assert_eq!(
            spec.backends,
            [GroupBackend {
                id: 1,
                addr: Ipv4Addr::new(10, 30, 1, 11),
                port: Some(8080),
                weight: 2,
                healthy: true,
                draining: false,
            }]
        );
        let delete = pb::GroupMod {
            delete: true,
            ..message()
        };
        assert_eq!(group_from_pb(&delete).unwrap(), Err(7));
    }

    #[test]
    fn a_group_round_trips() {
        let spec = group_from_pb(&message()).unwrap().unwrap();
        assert_eq!(group_to_pb(&spec), message());
    }

    #[test]
    fn malformed_group_mods_are_refused() {
        let mut no_algorithm = message();
        no_algorithm.algorithm = 0;
        assert!(group_from_pb(&no_algorithm).is_err());
        let mut short = message();
        short.backends[0].address = vec![10, 30].into();
        assert!(group_from_pb(&short).is_err());
        let mut big_port = message();
        big_port.backends[0].port = 70_000;
        assert!(group_from_pb(&big_port).is_err());
    }
}
