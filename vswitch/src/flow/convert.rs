//! Conversions between the flow model and the southbound protocol messages.
//! Input from the wire is checked: bad lengths and out-of-range numbers are
//! errors, never panics.

use super::action::Nat;
use super::{
    Action, CtStateMatch, FlowMod, FlowModCommand, FlowSpec, FlowStats, IpPrefix, MacMatch, Match,
    MetadataMatch, SetField, VlanMatch,
};
use crate::wire::EthernetAddress;
use sdn_proto::southbound as pb;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// A protocol message that does not describe a valid flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A required field is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A bytes field has the wrong length.
    #[error("{field}: {len} bytes is not a valid length")]
    BadLength {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A number is out of range for its field.
    #[error("{field}: {value} is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}

type Result<T> = std::result::Result<T, ConvertError>;

pub(crate) fn narrow<T: TryFrom<u64>>(field: &'static str, value: impl Into<u64>) -> Result<T> {
    let value = value.into();
    T::try_from(value).map_err(|_| ConvertError::OutOfRange { field, value })
}

fn mac(field: &'static str, bytes: &[u8]) -> Result<EthernetAddress> {
    if bytes.len() != 6 {
        return Err(ConvertError::BadLength {
            field,
            len: bytes.len(),
        });
    }
    EthernetAddress::from_bytes(bytes).ok_or(ConvertError::BadLength {
        field,
        len: bytes.len(),
    })
}

fn ip(field: &'static str, bytes: &[u8]) -> Result<IpAddr> {
    match bytes.len() {
        4 => {
            let b: [u8; 4] = bytes
                .try_into()
                .map_err(|_| ConvertError::BadLength { field, len: 4 })?;
            Ok(IpAddr::V4(Ipv4Addr::from(b)))
        }
        16 => {
            let b: [u8; 16] = bytes
                .try_into()
                .map_err(|_| ConvertError::BadLength { field, len: 16 })?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
        len => Err(ConvertError::BadLength { field, len }),
    }
}

fn ipv4(field: &'static str, bytes: &[u8]) -> Result<Ipv4Addr> {
    match ip(field, bytes)? {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(ConvertError::BadLength { field, len: 16 }),
    }
}

fn nat_from_pb(n: &pb::CtNat) -> Result<Nat> {
    if n.kind == pb::NatKind::Existing as i32 {
        return Ok(Nat::Existing);
    }
    if n.kind == pb::NatKind::Balance as i32 {
        return Ok(Nat::Balance { group: n.group });
    }
    let addr = ipv4("ct.nat.address", &n.address)?;
    let port = |field, v: u32| narrow::<u16>(field, v);
    match pb::NatKind::try_from(n.kind).unwrap_or(pb::NatKind::Unspecified) {
        pb::NatKind::Source => Ok(Nat::Src {
            addr,
            ports: match n.port_min {
                0 => None,
                lo => Some((
                    port("ct.nat.port_min", lo)?,
                    port("ct.nat.port_max", n.port_max.max(lo))?,
                )),
            },
        }),
        pb::NatKind::Destination => Ok(Nat::Dst {
            addr,
            port: match n.port_min {
                0 => None,
                p => Some(port("ct.nat.port_min", p)?),
            },
        }),
        pb::NatKind::Existing => Ok(Nat::Existing),
        pb::NatKind::Balance => Ok(Nat::Balance { group: n.group }),
        pb::NatKind::Unspecified => Err(ConvertError::Missing("ct.nat.kind")),
    }
}

fn nat_to_pb(n: &Nat) -> pb::CtNat {
    match *n {
        Nat::Src { addr, ports } => pb::CtNat {
            kind: pb::NatKind::Source as i32,
            address: addr.octets().to_vec().into(),
            port_min: ports.map_or(0, |(lo, _)| u32::from(lo)),
            port_max: ports.map_or(0, |(_, hi)| u32::from(hi)),
            group: 0,
        },
        Nat::Dst { addr, port } => pb::CtNat {
            kind: pb::NatKind::Destination as i32,
            address: addr.octets().to_vec().into(),
            port_min: port.map_or(0, u32::from),
            port_max: 0,
            group: 0,
        },
        Nat::Existing => pb::CtNat {
            kind: pb::NatKind::Existing as i32,
            ..Default::default()
        },
        Nat::Balance { group } => pb::CtNat {
            kind: pb::NatKind::Balance as i32,
            group,
            ..Default::default()
        },
    }
}

fn optional_ipv4(field: &'static str, bytes: &[u8]) -> Result<Option<Ipv4Addr>> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        ipv4(field, bytes).map(Some)
    }
}

fn ip_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn mac_match(field: &'static str, m: &pb::MacMatch) -> Result<MacMatch> {
    let value = mac(field, &m.value)?;
    let mask = if m.mask.is_empty() {
        EthernetAddress::BROADCAST
    } else {
        mac(field, &m.mask)?
    };
    Ok(MacMatch { value, mask })
}

fn prefix(field: &'static str, p: &pb::IpPrefix) -> Result<IpPrefix> {
    let addr = ip(field, &p.address)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if p.prefix_len > max {
        return Err(ConvertError::OutOfRange {
            field,
            value: u64::from(p.prefix_len),
        });
    }
    Ok(IpPrefix {
        addr,
        len: p.prefix_len as u8,
    })
}

impl TryFrom<&pb::Match> for Match {
    type Error = ConvertError;

    fn try_from(m: &pb::Match) -> Result<Match> {
        Ok(Match {
            in_port: m.in_port,
            eth_src: m
                .eth_src
                .as_ref()
                .map(|x| mac_match("eth_src", x))
                .transpose()?,
            eth_dst: m
                .eth_dst
                .as_ref()
                .map(|x| mac_match("eth_dst", x))
                .transpose()?,
            eth_type: m.eth_type.map(|v| narrow("eth_type", v)).transpose()?,
            vlan: match (m.vlan_any_tag, m.vlan_tci) {
                (true, _) => Some(VlanMatch::AnyTagged),
                (false, Some(0)) => Some(VlanMatch::Untagged),
                (false, Some(tci))
                    if tci & 0x1000 != 0 && tci & 0x0fff < 0x0fff && tci <= 0x1fff =>
                {
                    Some(VlanMatch::Vid((tci & 0x0fff) as u16))
                }
                (false, Some(tci)) => {
                    return Err(ConvertError::OutOfRange {
                        field: "vlan_tci",
                        value: u64::from(tci),
                    });
                }
                (false, None) => None,
            },
            ip_src: m.ip_src.as_ref().map(|p| prefix("ip_src", p)).transpose()?,
            ip_dst: m.ip_dst.as_ref().map(|p| prefix("ip_dst", p)).transpose()?,
            ip_proto: m.ip_proto.map(|v| narrow("ip_proto", v)).transpose()?,
            tp_src: m.tp_src.map(|v| narrow("tp_src", v)).transpose()?,
            tp_dst: m.tp_dst.map(|v| narrow("tp_dst", v)).transpose()?,
            tunnel_id: m.tunnel_id,
            tp_src_mask: m
                .tp_src_mask
                .map(|v| narrow("tp_src_mask", v))
                .transpose()?,
            tp_dst_mask: m
                .tp_dst_mask
                .map(|v| narrow("tp_dst_mask", v))
                .transpose()?,
            ct_state: m
                .ct_state
                .map(|v| -> Result<CtStateMatch> {
                    Ok(CtStateMatch {
                        value: narrow("ct_state", v)?,
                        mask: narrow("ct_state_mask", m.ct_state_mask)?,
                    })
                })
                .transpose()?,
            ct_zone: m.ct_zone.map(|v| narrow("ct_zone", v)).transpose()?,
            metadata: m.metadata.map(|value| MetadataMatch {
                value,
                mask: m.metadata_mask.unwrap_or(u32::MAX),
            }),
            tunnel_src: match ip("tunnel_src", &m.tunnel_src) {
                _ if m.tunnel_src.is_empty() => None,
                Ok(IpAddr::V4(a)) => Some(a),
                Ok(IpAddr::V6(_)) => {
                    return Err(ConvertError::BadLength {
                        field: "tunnel_src",
                        len: 16,
                    });
                }
                Err(e) => return Err(e),
            },
        })
    }
}

impl From<&Match> for pb::Match {
    fn from(m: &Match) -> pb::Match {
        let mac_pb = |x: MacMatch| pb::MacMatch {
            value: x.value.0.to_vec().into(),
            mask: if x.mask == EthernetAddress::BROADCAST {
                Default::default()
            } else {
                x.mask.0.to_vec().into()
            },
        };
        let prefix_pb = |p: IpPrefix| pb::IpPrefix {
            address: ip_bytes(p.addr).into(),
            prefix_len: u32::from(p.len),
        };
        pb::Match {
            in_port: m.in_port,
            eth_src: m.eth_src.map(mac_pb),
            eth_dst: m.eth_dst.map(mac_pb),
            eth_type: m.eth_type.map(u32::from),
            vlan_tci: match m.vlan {
                Some(VlanMatch::Untagged) => Some(0),
                Some(VlanMatch::Vid(vid)) => Some(0x1000 | u32::from(vid)),
                Some(VlanMatch::AnyTagged) | None => None,
            },
            vlan_any_tag: m.vlan == Some(VlanMatch::AnyTagged),
            ip_src: m.ip_src.map(prefix_pb),
            ip_dst: m.ip_dst.map(prefix_pb),
            ip_proto: m.ip_proto.map(u32::from),
            tp_src: m.tp_src.map(u32::from),
            tp_dst: m.tp_dst.map(u32::from),
            tunnel_id: m.tunnel_id,
            tunnel_src: m
                .tunnel_src
                .map(|a| a.octets().to_vec().into())
                .unwrap_or_default(),
            tp_src_mask: m.tp_src_mask.map(u32::from),
            tp_dst_mask: m.tp_dst_mask.map(u32::from),
            ct_state: m.ct_state.map(|c| u32::from(c.value)),
            ct_state_mask: m.ct_state.map_or(0, |c| u32::from(c.mask)),
            ct_zone: m.ct_zone.map(u32::from),
            metadata: m.metadata.map(|x| x.value),
            metadata_mask: m
                .metadata
                .and_then(|x| (x.mask != u32::MAX).then_some(x.mask)),
        }
    }
}

impl TryFrom<&pb::Action> for Action {
    type Error = ConvertError;

    fn try_from(a: &pb::Action) -> Result<Action> {
        use pb::action::Kind;
        use pb::set_field_action::Field;
        Ok(
            match a.kind.as_ref().ok_or(ConvertError::Missing("action"))? {
                Kind::Output(o) => Action::Output(o.port),
                Kind::Flood(_) => Action::Flood,
                Kind::InPort(_) => Action::InPort,
                Kind::Normal(_) => Action::Normal,
                Kind::Controller(c) => Action::Controller {
                    max_len: narrow("controller.max_len", c.max_len)?,
                },
                Kind::GotoTable(g) => Action::GotoTable(narrow("goto_table", g.table_id)?),
                Kind::PushVlan(p) => Action::PushVlan(narrow("push_vlan.tci", p.tci)?),
                Kind::PopVlan(_) => Action::PopVlan,
                Kind::Ct(c) => Action::Ct {
                    zone: narrow("ct.zone", c.zone)?,
                    commit: c.commit,
                    table: narrow("ct.table", c.table)?,
                    nat: c.nat.as_ref().map(nat_from_pb).transpose()?,
                },
                Kind::WriteMetadata(w) => Action::WriteMetadata(w.value),
                Kind::DecTtl(d) => Action::DecTtl {
                    icmp_src: ipv4("dec_ttl.icmp_src", &d.icmp_src)?,
                },
                Kind::CheckMtu(c) => Action::CheckMtu {
                    mtu: narrow("check_mtu.mtu", c.mtu)?,
                    icmp_src: optional_ipv4("check_mtu.icmp_src", &c.icmp_src)?,
                },
                Kind::IcmpUnreachable(u) => Action::IcmpUnreachable {
                    code: narrow("icmp_unreachable.code", u.code)?,
                    icmp_src: ipv4("icmp_unreachable.icmp_src", &u.icmp_src)?,
                },
                Kind::ArpReply(a) => Action::ArpReply(mac("arp_reply.mac", &a.mac)?),
                Kind::IcmpEchoReply(_) => Action::IcmpEchoReply,
                Kind::SetField(s) => Action::SetField(
                    match s.field.as_ref().ok_or(ConvertError::Missing("set_field"))? {
                        Field::EthSrc(b) => SetField::EthSrc(mac("set_field.eth_src", b)?),
                        Field::EthDst(b) => SetField::EthDst(mac("set_field.eth_dst", b)?),
                        Field::Ipv4Src(b) => match ip("set_field.ipv4_src", b)? {
                            IpAddr::V4(a) => SetField::Ipv4Src(a),
                            IpAddr::V6(_) => {
                                return Err(ConvertError::BadLength {
                                    field: "set_field.ipv4_src",
                                    len: 16,
                                });
                            }
                        },
                        Field::Ipv4Dst(b) => match ip("set_field.ipv4_dst", b)? {
                            IpAddr::V4(a) => SetField::Ipv4Dst(a),
                            IpAddr::V6(_) => {
                                return Err(ConvertError::BadLength {
                                    field: "set_field.ipv4_dst",
                                    len: 16,
                                });
                            }
                        },
                        Field::TpSrc(p) => SetField::TpSrc(narrow("set_field.tp_src", *p)?),
                        Field::TpDst(p) => SetField::TpDst(narrow("set_field.tp_dst", *p)?),
                        Field::VlanVid(v) => SetField::VlanVid(narrow("set_field.vlan_vid", *v)?),
                        Field::VlanPcp(p) => SetField::VlanPcp(narrow("set_field.vlan_pcp", *p)?),
                        Field::TunnelId(id) => SetField::TunnelId(*id),
                        Field::TunnelDst(b) => match ip("set_field.tunnel_dst", b)? {
                            IpAddr::V4(a) => SetField::TunnelDst(a),
                            IpAddr::V6(_) => {
                                return Err(ConvertError::BadLength {
                                    field: "set_field.tunnel_dst",
                                    len: 16,
                                });
                            }
                        },
                    },
                ),
            },
        )
    }
}

impl From<&Action> for pb::Action {
    fn from(a: &Action) -> pb::Action {
        use pb::action::Kind;
        use pb::set_field_action::Field;
        let kind = match *a {
            Action::Output(port) => Kind::Output(pb::OutputAction { port }),
            Action::Flood => Kind::Flood(pb::Empty {}),
            Action::InPort => Kind::InPort(pb::Empty {}),
            Action::Normal => Kind::Normal(pb::Empty {}),
            Action::Controller { max_len } => Kind::Controller(pb::ControllerAction {
                max_len: u32::from(max_len),
            }),
            Action::GotoTable(t) => Kind::GotoTable(pb::GotoTableAction {
                table_id: u32::from(t),
            }),
            Action::PushVlan(tci) => Kind::PushVlan(pb::PushVlanAction {
                tci: u32::from(tci),
            }),
            Action::PopVlan => Kind::PopVlan(pb::Empty {}),
            Action::Ct {
                zone,
                commit,
                table,
                nat,
            } => Kind::Ct(pb::CtAction {
                zone: u32::from(zone),
                commit,
                table: u32::from(table),
                nat: nat.as_ref().map(nat_to_pb),
            }),
            Action::WriteMetadata(value) => Kind::WriteMetadata(pb::WriteMetadataAction { value }),
            Action::DecTtl { icmp_src } => Kind::DecTtl(pb::DecTtlAction {
                icmp_src: icmp_src.octets().to_vec().into(),
            }),
            Action::CheckMtu { mtu, icmp_src } => Kind::CheckMtu(pb::CheckMtuAction {
                mtu: u32::from(mtu),
                icmp_src: icmp_src
                    .map(|a| a.octets().to_vec().into())
                    .unwrap_or_default(),
            }),
            Action::IcmpUnreachable { code, icmp_src } => {
                Kind::IcmpUnreachable(pb::IcmpUnreachableAction {
                    code: u32::from(code),
                    icmp_src: icmp_src.octets().to_vec().into(),
                })
            }
            Action::ArpReply(m) => Kind::ArpReply(pb::ArpReplyAction {
                mac: m.0.to_vec().into(),
            }),
            Action::IcmpEchoReply => Kind::IcmpEchoReply(pb::Empty {}),
            Action::SetField(f) => Kind::SetField(pb::SetFieldAction {
                field: Some(match f {
                    SetField::EthSrc(m) => Field::EthSrc(m.0.to_vec().into()),
                    SetField::EthDst(m) => Field::EthDst(m.0.to_vec().into()),
                    SetField::Ipv4Src(a) => Field::Ipv4Src(a.octets().to_vec().into()),
                    SetField::Ipv4Dst(a) => Field::Ipv4Dst(a.octets().to_vec().into()),
                    SetField::TpSrc(p) => Field::TpSrc(u32::from(p)),
                    SetField::TpDst(p) => Field::TpDst(u32::from(p)),
                    SetField::VlanVid(v) => Field::VlanVid(u32::from(v)),
                    SetField::VlanPcp(p) => Field::VlanPcp(u32::from(p)),
                    SetField::TunnelId(id) => Field::TunnelId(id),
                    SetField::TunnelDst(a) => Field::TunnelDst(a.octets().to_vec().into()),
                }),
            }),
        };
        pb::Action { kind: Some(kind) }
    }
}

/// Converts a protocol action list.
pub fn actions_from_pb(actions: &[pb::Action]) -> Result<Vec<Action>> {
    actions.iter().map(Action::try_from).collect()
}

/// Converts an action list to its protocol form.
pub fn actions_to_pb(actions: &[Action]) -> Vec<pb::Action> {
    actions.iter().map(pb::Action::from).collect()
}

impl TryFrom<&pb::FlowMod> for FlowMod {
    type Error = ConvertError;

    fn try_from(fm: &pb::FlowMod) -> Result<FlowMod> {
        use pb::FlowModCommand as C;
        let command = match C::try_from(fm.command).unwrap_or(C::Unspecified) {
            C::Add => FlowModCommand::Add,
            C::Modify => FlowModCommand::Modify { strict: false },
            C::ModifyStrict => FlowModCommand::Modify { strict: true },
            C::Delete => FlowModCommand::Delete { strict: false },
            C::DeleteStrict => FlowModCommand::Delete { strict: true },
            C::Unspecified => return Err(ConvertError::Missing("flow_mod.command")),
        };
        let matcher = match &fm.r#match {
            Some(m) => Match::try_from(m)?,
            None => Match::default(),
        };
        Ok(FlowMod {
            command,
            spec: FlowSpec {
                table: narrow("flow_mod.table_id", fm.table_id)?,
                priority: narrow("flow_mod.priority", fm.priority)?,
                matcher,
                actions: actions_from_pb(&fm.actions)?,
                cookie: fm.cookie,
                idle_timeout: Duration::from_secs(u64::from(fm.idle_timeout)),
                hard_timeout: Duration::from_secs(u64::from(fm.hard_timeout)),
                send_flow_removed: fm.send_flow_removed,
            },
            cookie_mask: fm.cookie_mask,
            out_port: (fm.out_port != 0).then_some(fm.out_port),
            all_tables: fm.all_tables,
        })
    }
}

impl From<&FlowMod> for pb::FlowMod {
    fn from(fm: &FlowMod) -> pb::FlowMod {
        use pb::FlowModCommand as C;
        let command = match fm.command {
            FlowModCommand::Add => C::Add,
            FlowModCommand::Modify { strict: false } => C::Modify,
            FlowModCommand::Modify { strict: true } => C::ModifyStrict,
            FlowModCommand::Delete { strict: false } => C::Delete,
            FlowModCommand::Delete { strict: true } => C::DeleteStrict,
        };
        pb::FlowMod {
            command: command as i32,
            table_id: u32::from(fm.spec.table),
            priority: u32::from(fm.spec.priority),
            r#match: Some(pb::Match::from(&fm.spec.matcher)),
            actions: actions_to_pb(&fm.spec.actions),
            cookie: fm.spec.cookie,
            cookie_mask: fm.cookie_mask,
            idle_timeout: duration_secs(fm.spec.idle_timeout),
            hard_timeout: duration_secs(fm.spec.hard_timeout),
            send_flow_removed: fm.spec.send_flow_removed,
            out_port: fm.out_port.unwrap_or(0),
            all_tables: fm.all_tables,
        }
    }
}

fn duration_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&FlowStats> for pb::FlowStats {
    fn from(s: &FlowStats) -> pb::FlowStats {
        pb::FlowStats {
            table_id: u32::from(s.spec.table),
            priority: u32::from(s.spec.priority),
            r#match: Some(pb::Match::from(&s.spec.matcher)),
            actions: actions_to_pb(&s.spec.actions),
            cookie: s.spec.cookie,
            idle_timeout: duration_secs(s.spec.idle_timeout),
            hard_timeout: duration_secs(s.spec.hard_timeout),
            duration_ms: millis(s.duration),
            idle_age_ms: millis(s.idle_age),
            packet_count: s.packets,
            byte_count: s.bytes,
            send_flow_removed: s.spec.send_flow_removed,
        }
    }
}

impl TryFrom<&pb::FlowStats> for FlowStats {
    type Error = ConvertError;

    fn try_from(s: &pb::FlowStats) -> Result<FlowStats> {
        let matcher = match &s.r#match {
            Some(m) => Match::try_from(m)?,
            None => Match::default(),
        };
        Ok(FlowStats {
            spec: FlowSpec {
                table: narrow("flow_stats.table_id", s.table_id)?,
                priority: narrow("flow_stats.priority", s.priority)?,
                matcher,
                actions: actions_from_pb(&s.actions)?,
                cookie: s.cookie,
                idle_timeout: Duration::from_secs(u64::from(s.idle_timeout)),
                hard_timeout: Duration::from_secs(u64::from(s.hard_timeout)),
                send_flow_removed: s.send_flow_removed,
            },
            duration: Duration::from_millis(s.duration_ms),
            idle_age: Duration::from_millis(s.idle_age_ms),
            packets: s.packet_count,
            bytes: s.byte_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::mac;

    fn sample_spec() -> FlowSpec {
        FlowSpec {
            table: 1,
            priority: 100,
            matcher: Match {
                in_port: Some(2),
                eth_src: Some(MacMatch::exact(mac(1))),
                eth_dst: Some(MacMatch::multicast()),
                eth_type: Some(0x0800),
                ip_src: Some(IpPrefix {
                    addr: "10.0.0.0".parse().unwrap(),
                    len: 8,
                }),
                ip_dst: Some(IpPrefix::host("10.1.2.3".parse().unwrap())),
                ip_proto: Some(6),
                tp_src: Some(1234),
                tp_dst: Some(80),
                vlan: Some(VlanMatch::Vid(10)),
                tunnel_id: Some(42),
                tunnel_src: Some("192.168.100.3".parse().unwrap()),
                tp_src_mask: None,
                tp_dst_mask: Some(0xfff0),
                ct_state: Some(CtStateMatch {
                    value: 0x22,
                    mask: 0x32,
                }),
                ct_zone: Some(7),
                metadata: Some(MetadataMatch {
                    value: 0x1000_0002,
                    mask: 0xf000_ffff,
                }),
            },
            actions: vec![
                Action::SetField(SetField::EthDst(mac(9))),
                Action::SetField(SetField::Ipv4Dst("10.9.9.9".parse().unwrap())),
                Action::SetField(SetField::TpDst(8080)),
                Action::PushVlan(0x2000 | 10),
                Action::SetField(SetField::VlanVid(20)),
                Action::SetField(SetField::VlanPcp(5)),
                Action::PopVlan,
                Action::SetField(SetField::TunnelId(100)),
                Action::SetField(SetField::TunnelDst("192.168.100.2".parse().unwrap())),
                Action::Output(3),
                Action::Flood,
                Action::InPort,
                Action::Normal,
                Action::Controller { max_len: 128 },
                Action::WriteMetadata(0x2000_0003),
                Action::DecTtl {
                    icmp_src: "10.0.1.1".parse().unwrap(),
                },
                Action::CheckMtu {
                    mtu: 1450,
                    icmp_src: None,
                },
                Action::CheckMtu {
                    mtu: 1500,
                    icmp_src: Some("10.0.1.1".parse().unwrap()),
                },
                Action::IcmpUnreachable {
                    code: 1,
                    icmp_src: "10.0.1.1".parse().unwrap(),
                },
                Action::ArpReply(mac(5)),
                Action::IcmpEchoReply,
                Action::Ct {
                    zone: 7,
                    commit: true,
                    table: 2,
                    nat: Some(Nat::Src {
                        addr: "203.0.113.7".parse().unwrap(),
                        ports: Some((1024, 2047)),
                    }),
                },
            ],
            cookie: 0xdead,
            idle_timeout: Duration::from_secs(30),
            hard_timeout: Duration::from_secs(300),
            send_flow_removed: true,
        }
    }

    #[test]
    fn every_nat_round_trips() {
        let addr = "203.0.113.50".parse().unwrap();
        for nat in [
            Nat::Src { addr, ports: None },
            Nat::Src {
                addr,
                ports: Some((1024, 2047)),
            },
            Nat::Dst { addr, port: None },
            Nat::Dst {
                addr,
                port: Some(8080),
            },
            Nat::Existing,
            Nat::Balance { group: 7 },
        ] {
            assert_eq!(nat_from_pb(&nat_to_pb(&nat)), Ok(nat));
        }
        assert_eq!(Nat::Balance { group: 7 }.to_string(), "nat(lb=7)");
    }

    #[test]
    fn flow_mod_round_trip() {
        for command in [
            FlowModCommand::Add,
            FlowModCommand::Modify { strict: true },
            FlowModCommand::Modify { strict: false },
            FlowModCommand::Delete { strict: true },
            FlowModCommand::Delete { strict: false },
        ] {
            let fm = FlowMod {
                command,
                spec: sample_spec(),
                cookie_mask: 0xff,
                out_port: Some(3),
                all_tables: false,
            };
            let wire = pb::FlowMod::from(&fm);
            assert_eq!(FlowMod::try_from(&wire).unwrap(), fm);
        }
    }

    #[test]
    fn flow_stats_round_trip() {
        let stats = FlowStats {
            spec: sample_spec(),
            duration: Duration::from_millis(1500),
            idle_age: Duration::from_millis(20),
            packets: 10,
            bytes: 1000,
        };
        assert_eq!(
            FlowStats::try_from(&pb::FlowStats::from(&stats)).unwrap(),
            stats
        );
    }

    #[test]
    fn rejects_bad_wire_values() {
        let mut m = pb::Match {
            eth_src: Some(pb::MacMatch {
                value: vec![1, 2, 3].into(),
                mask: Default::default(),
            }),
            ..Default::default()
        };
        assert_eq!(
            Match::try_from(&m),
            Err(ConvertError::BadLength {
                field: "eth_src",
                len: 3
            })
        );
        m.eth_src = None;
        m.tp_dst = Some(70000);
        assert!(matches!(
            Match::try_from(&m),
            Err(ConvertError::OutOfRange { .. })
        ));
        m.tp_dst = None;
        m.ip_dst = Some(pb::IpPrefix {
            address: vec![10, 0, 0, 1].into(),
            prefix_len: 33,
        });
        assert!(Match::try_from(&m).is_err());
        let fm = pb::FlowMod {
            command: 99,
            ..Default::default()
        };
        assert_eq!(
            FlowMod::try_from(&fm),
            Err(ConvertError::Missing("flow_mod.command"))
        );
        let fm = pb::FlowMod {
            command: pb::FlowModCommand::Add as i32,
            priority: 70000,
            ..Default::default()
        };
        assert!(FlowMod::try_from(&fm).is_err());
        let empty = pb::Action { kind: None };
        assert_eq!(
            Action::try_from(&empty),
            Err(ConvertError::Missing("action"))
        );
    }
}
