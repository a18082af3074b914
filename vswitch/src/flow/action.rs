//! `Action`: what a flow entry does with a frame, its validation and its
//! `ovs-ofctl`-style text.

use super::key::PortNo;
use crate::wire::EthernetAddress;
use std::fmt;
use std::net::Ipv4Addr;

/// A field an action can rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetField {
    /// Source Ethernet address.
    EthSrc(EthernetAddress),
    /// Destination Ethernet address.
    EthDst(EthernetAddress),
    /// IPv4 source (header and L4 checksums are updated).
    Ipv4Src(Ipv4Addr),
    /// IPv4 destination (header and L4 checksums are updated).
    Ipv4Dst(Ipv4Addr),
    /// TCP/UDP source port.
    TpSrc(u16),
    /// TCP/UDP destination port.
    TpDst(u16),
    /// VLAN id of the outermost tag; an untagged frame gets a tag with
    /// this VID and PCP 0 (as Open vSwitch's `mod_vlan_vid`).
    VlanVid(u16),
    /// Priority code point of the outermost tag (ignored on untagged frames).
    VlanPcp(u8),
    /// VNI for a later output to a tunnel port.
    TunnelId(u32),
    /// Remote endpoint for a later output to a tunnel port.
    TunnelDst(Ipv4Addr),
}

/// The address translation a `ct` action sets up for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nat {
    /// Source NAT: the connection leaves from `addr`, with a source port
    /// (ICMP echo: identifier) from `ports` (inclusive) or its own if `None`.
    Src {
        /// Address to leave from.
        addr: Ipv4Addr,
        /// Port range to allocate from.
        ports: Option<(u16, u16)>,
    },
    /// Destination NAT: the connection goes to `addr` (and `port`, if given).
    Dst {
        /// Address to send to.
        addr: Ipv4Addr,
        /// Port to send to (the original one if `None`).
        port: Option<u16>,
    },
    /// Translate packets of connections NATed before; set up nothing new.
    Existing,
    /// Load balancing: a new connection is DNATed to the backend (address
    /// and port) that load-balancing group `group` picks; a tracked one
    /// keeps its backend.
    Balance {
        /// The group.
        group: u32,
    },
}

impl fmt::Display for Nat {
    /// `nat(src=203.0.113.20:1024-65535)` style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Nat::Src { addr, ports: None } => write!(f, "nat(src={addr})"),
            Nat::Src {
                addr,
                ports: Some((lo, hi)),
            } => write!(f, "nat(src={addr}:{lo}-{hi})"),
            Nat::Dst { addr, port: None } => write!(f, "nat(dst={addr})"),
            Nat::Dst {
                addr,
                port: Some(port),
            } => write!(f, "nat(dst={addr}:{port})"),
            Nat::Existing => write!(f, "nat"),
            Nat::Balance { group } => write!(f, "nat(lb={group})"),
        }
    }
}

/// ICMP destination-unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
pub mod unreachable {
    /// No route to the destination network.
    pub const NET: u8 = 0;
    /// The destination host cannot be reached.
    pub const HOST: u8 = 1;
    /// Fragmentation needed and DF set.
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited.
    pub const ADMIN: u8 = 13;

    /// The name `dump-flows` shows for a code.
    pub fn name(code: u8) -> String {
        match code {
            NET => "net".into(),
            HOST => "host".into(),
            FRAG_NEEDED => "frag-needed".into(),
            ADMIN => "admin".into(),
            other => other.to_string(),
        }
    }
}

/// One step of an entry's action list, run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send out of a port (never back out of the input port; use `InPort`).
    Output(PortNo),
    /// Send out of every port except the input port.
    Flood,
    /// Send back out of the input port.
    InPort,
    /// Send to the controller as a packet-in, truncated to `max_len` bytes
    /// (0 = whole frame).
    Controller {
        /// Bytes to send.
        max_len: u16,
    },
    /// Forward as a MAC-learning switch would.
    Normal,
    /// Rewrite a field.
    SetField(SetField),
    /// Insert an 802.1Q tag with this TCI (PCP << 13 | VID) after the MACs.
    PushVlan(u16),
    /// Remove the outermost 802.1Q tag (ignored on untagged frames).
    PopVlan,
    /// Continue matching in a later table. Must be the last action.
    GotoTable(u8),
    /// Send an IPv4 frame through connection tracking in `zone` (adding a
    /// valid new connection if `commit`), then continue in the later table
    /// `table` with `ct_state` and `ct_zone` set. Must be the last action.
    Ct {
        /// Zone.
        zone: u16,
        /// Add the connection if it is new and valid.
        commit: bool,
        /// Table to continue in.
        table: u8,
        /// Translation for a new connection (a tracked one keeps its own).
        nat: Option<Nat>,
    },
    /// Sets the metadata (for later tables to match).
    WriteMetadata(u32),
    /// Decrements the IPv4 TTL, updating the header checksum (RFC 1624). A
    /// packet whose TTL is 1 or 0 goes no further and is answered with an
    /// ICMP time-exceeded from `icmp_src` (RFC 1812 §5.3.1). Non-IPv4 frames
    /// are left alone.
    DecTtl {
        /// Source of the ICMP error (the router's address).
        icmp_src: Ipv4Addr,
    },
    /// An IPv4 packet longer than `mtu` bytes: with DF set it goes no further
    /// and is answered with fragmentation-needed carrying `mtu` from
    /// `icmp_src` (silently dropped if `None`); without DF it is fragmented
    /// (RFC 791, RFC 1812 §5.2.6).
    CheckMtu {
        /// Largest IPv4 packet that fits.
        mtu: u16,
        /// Source of fragmentation-needed errors.
        icmp_src: Option<Ipv4Addr>,
    },
    /// Answers an IPv4 packet with ICMP destination-unreachable of `code`
    /// from `icmp_src`; the packet goes no further.
    IcmpUnreachable {
        /// The code (see `unreachable`).
        code: u8,
        /// Source of the error.
        icmp_src: Ipv4Addr,
    },
    /// Turns an ARP request into its reply, claiming the requested address
    /// for `mac` (send it with `in_port`). Other frames are left alone.
    ArpReply(EthernetAddress),
    /// Turns an ICMP echo request into its reply: addresses and MACs swapped,
    /// TTL 64 (send it with `in_port`). Other frames are left alone.
    IcmpEchoReply,
}

/// An action list that cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// `goto_table` or `ct` is not the last action.
    #[error("goto_table and ct must be the last action")]
    GotoNotLast,
    /// `goto_table` does not point to a later table.
    #[error("goto_table:{to} from table {from}: the target must be a later table")]
    GotoBackwards {
        /// Table of the entry.
        from: u8,
        /// Target.
        to: u8,
    },
    /// `goto_table` points past the last table.
    #[error("goto_table:{to}: the switch has tables 0..{n_tables}")]
    NoSuchTable {
        /// Target.
        to: u8,
        /// Number of tables.
        n_tables: u8,
    },
    /// Output to port 0.
    #[error("output to port 0")]
    PortZero,
    /// A value too large for its field.
    #[error("{field}: {value} is out of range")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: u32,
    },
}

/// Smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_MTU: u16 = 68;

/// Checks an action list for an entry in `table` of a switch with `n_tables`.
pub fn validate_actions(actions: &[Action], table: u8, n_tables: u8) -> Result<(), ActionError> {
    for (i, action) in actions.iter().enumerate() {
        if let Action::Ct {
            nat:
                Some(Nat::Src {
                    ports: Some((lo, hi)),
                    ..
                }),
            ..
        } = *action
            && (lo == 0 || lo > hi)
        {
            return Err(ActionError::OutOfRange {
                field: "nat ports",
                value: u32::from(lo),
            });
        }
        match *action {
            Action::GotoTable(to) | Action::Ct { table: to, .. } => {
                if i + 1 != actions.len() {
                    return Err(ActionError::GotoNotLast);
                }
                if to <= table {
                    return Err(ActionError::GotoBackwards { from: table, to });
                }
                if to >= n_tables {
                    return Err(ActionError::NoSuchTable { to, n_tables });
                }
            }
            Action::Output(0) => return Err(ActionError::PortZero),
            Action::PushVlan(tci) if tci & 0x0fff == 0x0fff => {
                return Err(ActionError::OutOfRange {
                    field: "push_vlan vid",
                    value: u32::from(tci & 0x0fff),
                });
            }
            Action::SetField(SetField::VlanVid(vid)) if vid > 4094 => {
                return Err(ActionError::OutOfRange {
                    field: "vlan_vid",
                    value: u32::from(vid),
                });
            }
            Action::SetField(SetField::VlanPcp(pcp)) if pcp > 7 => {
                return Err(ActionError::OutOfRange {
                    field: "vlan_pcp",
                    value: u32::from(pcp),
                });
            }
            Action::CheckMtu { mtu, .. } if mtu < MIN_MTU => {
                return Err(ActionError::OutOfRange {
                    field: "check_mtu",
                    value: u32::from(mtu),
                });
            }
            Action::ArpReply(mac) if mac.is_multicast() => {
                return Err(ActionError::OutOfRange {
                    field: "arp_reply",
                    value: u32::from(mac.0[0]),
                });
            }
            Action::SetField(SetField::TunnelId(id)) if id > crate::wire::vxlan::MAX_VNI => {
                return Err(ActionError::OutOfRange {
                    field: "tun_id",
                    value: id,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether an action list sends anything out of `port` (for `out_port` filters).
pub fn outputs_to(actions: &[Action], port: PortNo) -> bool {
    actions.contains(&Action::Output(port))
}

/// Writes an action list in `ovs-ofctl` style, `drop` when empty.
pub fn write_actions(
    out: &mut impl fmt::Write,
    actions: &[Action],
    port_name: &dyn Fn(PortNo) -> Option<String>,
) -> fmt::Result {
    if actions.is_empty() {
        return write!(out, "drop");
    }
    for (i, action) in actions.iter().enumerate() {
        if i > 0 {
            write!(out, ",")?;
        }
        match *action {
            Action::Output(p) => write!(out, "output:{}", port_name(p).unwrap_or(p.to_string()))?,
            Action::Flood => write!(out, "FLOOD")?,
            Action::InPort => write!(out, "IN_PORT")?,
            Action::Normal => write!(out, "NORMAL")?,
            Action::Controller { max_len: 0 } => write!(out, "CONTROLLER")?,
            Action::Controller { max_len } => write!(out, "CONTROLLER:{max_len}")?,
            Action::GotoTable(t) => write!(out, "goto_table:{t}")?,
            Action::Ct {
                zone,
                commit,
                table,
                nat,
            } => {
                let commit = if commit { "commit," } else { "" };
                write!(out, "ct({commit}zone={zone},")?;
                if let Some(nat) = nat {
                    write!(out, "{nat},")?;
                }
                write!(out, "table={table})")?
            }
            Action::WriteMetadata(value) => write!(out, "write_metadata:{value:#x}")?,
            Action::DecTtl { icmp_src } => write!(out, "dec_ttl(icmp_src={icmp_src})")?,
            Action::CheckMtu {
                mtu,
                icmp_src: Some(src),
            } => write!(out, "check_mtu({mtu},icmp_src={src})")?,
            Action::CheckMtu {
                mtu,
                icmp_src: None,
            } => write!(out, "check_mtu({mtu})")?,
            Action::IcmpUnreachable { code, icmp_src } => write!(
                out,
                "icmp_unreachable({},icmp_src={icmp_src})",
                unreachable::name(code)
            )?,
            Action::ArpReply(mac) => write!(out, "arp_reply({mac})")?,
            Action::IcmpEchoReply => write!(out, "icmp_echo_reply")?,
            Action::PushVlan(tci) => {
                write!(out, "push_vlan:vid={},pcp={}", tci & 0x0fff, tci >> 13)?
            }
            Action::PopVlan => write!(out, "pop_vlan")?,
            Action::SetField(f) => match f {
                SetField::EthSrc(m) => write!(out, "set_field:{m}->eth_src")?,
                SetField::EthDst(m) => write!(out, "set_field:{m}->eth_dst")?,
                SetField::Ipv4Src(a) => write!(out, "set_field:{a}->ip_src")?,
                SetField::Ipv4Dst(a) => write!(out, "set_field:{a}->ip_dst")?,
                SetField::TpSrc(p) => write!(out, "set_field:{p}->tp_src")?,
                SetField::TpDst(p) => write!(out, "set_field:{p}->tp_dst")?,
                SetField::VlanVid(v) => write!(out, "set_field:{v}->vlan_vid")?,
                SetField::VlanPcp(p) => write!(out, "set_field:{p}->vlan_pcp")?,
                SetField::TunnelId(id) => write!(out, "set_field:{id:#x}->tun_id")?,
                SetField::TunnelDst(a) => write!(out, "set_field:{a}->tun_dst")?,
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goto_rules() {
        assert_eq!(
            validate_actions(&[Action::GotoTable(1), Action::Flood], 0, 4),
            Err(ActionError::GotoNotLast)
        );
        assert_eq!(
            validate_actions(&[Action::GotoTable(1)], 1, 4),
            Err(ActionError::GotoBackwards { from: 1, to: 1 })
        );
        assert_eq!(
            validate_actions(&[Action::GotoTable(4)], 0, 4),
            Err(ActionError::NoSuchTable { to: 4, n_tables: 4 })
        );
        assert!(
            validate_actions(
                &[Action::Controller { max_len: 128 }, Action::GotoTable(1)],
                0,
                4
            )
            .is_ok()
        );
        assert_eq!(
            validate_actions(&[Action::Output(0)], 0, 4),
            Err(ActionError::PortZero)
        );
    }

    #[test]
    fn text() {
        let mut s = String::new();
        write_actions(
            &mut s,
            &[
                Action::SetField(SetField::EthDst(EthernetAddress([2, 0, 0, 0, 0, 9]))),
                Action::Output(3),
                Action::Controller { max_len: 128 },
                Action::GotoTable(1),
            ],
            &|p| (p == 3).then(|| "p3".into()),
        )
        .unwrap();
        assert_eq!(
            s,
            "set_field:02:00:00:00:00:09->eth_dst,output:p3,CONTROLLER:128,goto_table:1"
        );
        let mut routed = String::new();
        let gw: Ipv4Addr = "10.0.1.1".parse().unwrap();
        write_actions(
            &mut routed,
            &[
                Action::WriteMetadata(0x2000_0001),
                Action::DecTtl { icmp_src: gw },
                Action::CheckMtu {
                    mtu: 1450,
                    icmp_src: Some(gw),
                },
                Action::Ct {
                    zone: 65280,
                    commit: true,
                    table: 9,
                    nat: Some(Nat::Src {
                        addr: "203.0.113.20".parse().unwrap(),
                        ports: Some((1024, 65535)),
                    }),
                },
            ],
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            routed,
            "write_metadata:0x20000001,dec_ttl(icmp_src=10.0.1.1),check_mtu(1450,icmp_src=10.0.1.1),\
             ct(commit,zone=65280,nat(src=203.0.113.20:1024-65535),table=9)"
        );
        let mut empty = String::new();
        write_actions(&mut empty, &[], &|_| None).unwrap();
        assert_eq!(empty, "drop");
    }
}
