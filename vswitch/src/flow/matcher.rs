//! `Match`: which frames a flow entry applies to, as optional fields (absent =
//! wildcard), its masked-key form for the classifier, OpenFlow-style
//! prerequisite checks, and the text form `dump-flows` prints.

use super::key::{FlowKey, PortNo, VLAN_PRESENT};
use crate::wire::EthernetAddress;
use std::fmt;
use std::net::IpAddr;

/// An Ethernet address with a mask (all ones = exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacMatch {
    /// Address (bits outside the mask are ignored).
    pub value: EthernetAddress,
    /// Mask.
    pub mask: EthernetAddress,
}

impl MacMatch {
    /// An exact match.
    pub fn exact(value: EthernetAddress) -> MacMatch {
        MacMatch {
            value,
            mask: EthernetAddress::BROADCAST,
        }
    }

    /// Frames whose address has the group bit set (multicast and broadcast).
    pub fn multicast() -> MacMatch {
        MacMatch {
            value: EthernetAddress([1, 0, 0, 0, 0, 0]),
            mask: EthernetAddress([1, 0, 0, 0, 0, 0]),
        }
    }
}

/// Which frames a VLAN match takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VlanMatch {
    /// Frames without an 802.1Q tag.
    Untagged,
    /// Frames with a tag, whatever its VID.
    AnyTagged,
    /// Frames tagged with this VID (PCP not matched).
    Vid(u16),
}

/// An IPv4 or IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// Address; bits past the prefix are ignored.
    pub addr: IpAddr,
    /// Prefix length (0..=32 or 0..=128).
    pub len: u8,
}

impl IpPrefix {
    /// A host prefix (/32 or /128).
    pub fn host(addr: IpAddr) -> IpPrefix {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        IpPrefix { addr, len }
    }

    /// The value and mask as 128-bit key words (IPv4 in the low 32 bits).
    fn to_bits(self) -> (u128, u128) {
        match self.addr {
            IpAddr::V4(a) => {
                let len = u32::from(self.len.min(32));
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                (u128::from(u32::from(a) & mask), u128::from(mask))
            }
            IpAddr::V6(a) => {
                let len = u32::from(self.len.min(128));
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                (u128::from(a) & mask, mask)
            }
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// Which frames an entry applies to. Every `None` is a wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Match {
    /// Input port.
    pub in_port: Option<PortNo>,
    /// Source Ethernet address.
    pub eth_src: Option<MacMatch>,
    /// Destination Ethernet address.
    pub eth_dst: Option<MacMatch>,
    /// EtherType.
    pub eth_type: Option<u16>,
    /// VLAN tag.
    pub vlan: Option<VlanMatch>,
    /// Source IP prefix (ARP: sender address).
    pub ip_src: Option<IpPrefix>,
    /// Destination IP prefix (ARP: target address).
    pub ip_dst: Option<IpPrefix>,
    /// IP protocol (ARP: operation).
    pub ip_proto: Option<u8>,
    /// L4 source port (ICMP: type).
    pub tp_src: Option<u16>,
    /// L4 destination port (ICMP: code).
    pub tp_dst: Option<u16>,
    /// Tunnel id (VNI).
    pub tunnel_id: Option<u64>,
    /// Remote tunnel endpoint the frame came from.
    pub tunnel_src: Option<std::net::Ipv4Addr>,
    /// Mask of `tp_src` (None = exact).
    pub tp_src_mask: Option<u16>,
    /// Mask of `tp_dst` (None = exact).
    pub tp_dst_mask: Option<u16>,
    /// Connection tracking state bits.
    pub ct_state: Option<CtStateMatch>,
    /// Zone of the last `ct` action.
    pub ct_zone: Option<u16>,
    /// Metadata written by earlier tables.
    pub metadata: Option<MetadataMatch>,
}

/// A metadata match: the bits under `mask` must equal `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetadataMatch {
    /// Required bits.
    pub value: u32,
    /// Bits that matter.
    pub mask: u32,
}

impl MetadataMatch {
    /// Exactly `value`.
    pub fn exact(value: u32) -> MetadataMatch {
        MetadataMatch {
            value,
            mask: u32::MAX,
        }
    }
}

/// A `ct_state` match: the bits under `mask` must equal `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtStateMatch {
    /// Required bits.
    pub value: u8,
    /// Bits that matter.
    pub mask: u8,
}

impl CtStateMatch {
    /// Frames whose state has every bit of `set` and none of `clear`.
    pub fn new(set: u8, clear: u8) -> CtStateMatch {
        CtStateMatch {
            value: set,
            mask: set | clear,
        }
    }
}

impl fmt::Display for CtStateMatch {
    /// `+trk+est-new` style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::conntrack::state::*;
        for (bit, name) in [
            (TRK, "trk"),
            (NEW, "new"),
            (EST, "est"),
            (REL, "rel"),
            (RPL, "rpl"),
            (INV, "inv"),
        ] {
            if self.mask & bit != 0 {
                let sign = if self.value & bit != 0 { '+' } else { '-' };
                write!(f, "{sign}{name}")?;
            }
        }
        Ok(())
    }
}

/// A match as the classifier sees it: key bits and which bits matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaskedKey {
    /// Values, already masked.
    pub value: FlowKey,
    /// Which bits matter.
    pub mask: FlowKey,
}

impl MaskedKey {
    /// Whether `key` matches.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.masked(&self.mask) == self.value
    }

    /// Whether every frame this matches is also matched by `filter`
    /// (OpenFlow's non-strict modify/delete semantics).
    pub fn is_covered_by(&self, filter: &MaskedKey) -> bool {
        self.mask
            .words
            .iter()
            .zip(&filter.mask.words)
            .zip(self.value.words.iter().zip(&filter.value.words))
            .all(|((own_mask, f_mask), (own_value, f_value))| {
                f_mask & !own_mask == 0 && own_value & f_mask == *f_value
            })
    }
}

/// A match that breaks OpenFlow's prerequisites or mixes address families.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// A field was given without the field it depends on.
    #[error("{field} needs {needs}")]
    MissingPrerequisite {
        /// The field.
        field: &'static str,
        /// What it needs.
        needs: &'static str,
    },
    /// A prefix is longer than its address.
    #[error("{field}: prefix length {len} is too long")]
    BadPrefix {
        /// The field.
        field: &'static str,
        /// The length.
        len: u8,
    },
}

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IPV6: u16 = 0x86dd;

impl Match {
    /// Checks OpenFlow prerequisites: IP fields need an IP (or ARP) EtherType
    /// of the same family; L4 ports need TCP, UDP or ICMP.
    pub fn validate(&self) -> Result<(), MatchError> {
        for (field, prefix) in [("ip_src", self.ip_src), ("ip_dst", self.ip_dst)] {
            let Some(prefix) = prefix else { continue };
            let family_ok = match (prefix.addr, self.eth_type) {
                (IpAddr::V4(_), Some(ETH_IPV4 | ETH_ARP)) => prefix.len <= 32,
                (IpAddr::V6(_), Some(ETH_IPV6)) => prefix.len <= 128,
                (IpAddr::V4(_), _) => {
                    return Err(MatchError::MissingPrerequisite {
                        field,
                        needs: "eth_type=0x0800 or 0x0806",
                    });
                }
                (IpAddr::V6(_), _) => {
                    return Err(MatchError::MissingPrerequisite {
                        field,
                        needs: "eth_type=0x86dd",
                    });
                }
            };
            if !family_ok {
                return Err(MatchError::BadPrefix {
                    field,
                    len: prefix.len,
                });
            }
        }
        if self.ip_proto.is_some() && !matches!(self.eth_type, Some(ETH_IPV4 | ETH_IPV6 | ETH_ARP))
        {
            return Err(MatchError::MissingPrerequisite {
                field: "ip_proto",
                needs: "eth_type IPv4, IPv6 or ARP",
            });
        }
        if (self.tp_src.is_some() || self.tp_dst.is_some())
            && !(matches!(self.eth_type, Some(ETH_IPV4 | ETH_IPV6))
                && matches!(self.ip_proto, Some(1 | 6 | 17 | 58)))
        {
            return Err(MatchError::MissingPrerequisite {
                field: "tp_src/tp_dst",
                needs: "ip_proto TCP, UDP or ICMP over IPv4/IPv6",
            });
        }
        Ok(())
    }

    /// The classifier form of this match.
    pub fn to_masked(&self) -> MaskedKey {
        let mut value = FlowKey::default();
        let mut mask = FlowKey::default();
        if let Some(port) = self.in_port {
            value.set_in_port(port);
            mask.set_in_port(u32::MAX);
        }
        if let Some(m) = self.eth_src {
            value.set_eth_src(m.value);
            mask.set_eth_src(m.mask);
        }
        if let Some(m) = self.eth_dst {
            value.set_eth_dst(m.value);
            mask.set_eth_dst(m.mask);
        }
        if let Some(t) = self.eth_type {
            value.set_eth_type(t);
            mask.set_eth_type(u16::MAX);
        }
        if let Some(vlan) = self.vlan {
            // Presence and VID; PCP is not matched.
            let (v, m) = match vlan {
                VlanMatch::Untagged => (0, 0x1fff),
                VlanMatch::AnyTagged => (VLAN_PRESENT, VLAN_PRESENT),
                VlanMatch::Vid(vid) => (VLAN_PRESENT | (vid & 0x0fff), 0x1fff),
            };
            value.set_vlan_tci(v);
            mask.set_vlan_tci(m);
        }
        if let Some(p) = self.ip_src {
            let (v, m) = p.to_bits();
            value.set_ip_src_bits(v);
            mask.set_ip_src_bits(m);
        }
        if let Some(p) = self.ip_dst {
            let (v, m) = p.to_bits();
            value.set_ip_dst_bits(v);
            mask.set_ip_dst_bits(m);
        }
        if let Some(p) = self.ip_proto {
            value.set_ip_proto(p);
            mask.set_ip_proto(u8::MAX);
        }
        if let Some(p) = self.tp_src {
            value.set_tp_src(p);
            mask.set_tp_src(self.tp_src_mask.unwrap_or(u16::MAX));
        }
        if let Some(p) = self.tp_dst {
            value.set_tp_dst(p);
            mask.set_tp_dst(self.tp_dst_mask.unwrap_or(u16::MAX));
        }
        if let Some(ct) = self.ct_state {
            value.set_ct_state(ct.value);
            mask.set_ct_state(ct.mask);
        }
        if let Some(zone) = self.ct_zone {
            value.set_ct_zone(zone);
            mask.set_ct_zone(u16::MAX);
        }
        if let Some(id) = self.tunnel_id {
            value.set_tunnel_id(id);
            mask.set_tunnel_id(u64::MAX);
        }
        if let Some(src) = self.tunnel_src {
            value.set_tunnel_src(src);
            mask.set_tunnel_src(std::net::Ipv4Addr::BROADCAST);
        }
        if let Some(m) = self.metadata {
            value.set_metadata(m.value);
            mask.set_metadata(m.mask);
        }
        MaskedKey {
            value: value.masked(&mask),
            mask,
        }
    }

    /// Writes the match in `ovs-ofctl` style (`in_port=1,dl_dst=…`), using
    /// `port_name` to show port names.
    pub fn write_text(
        &self,
        out: &mut impl fmt::Write,
        port_name: &dyn Fn(PortNo) -> Option<String>,
    ) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(p) = self.in_port {
            parts.push(format!("in_port={}", port_name(p).unwrap_or(p.to_string())));
        }
        match self.vlan {
            Some(VlanMatch::Untagged) => parts.push("vlan_tci=0x0000/0x1fff".into()),
            Some(VlanMatch::AnyTagged) => parts.push("vlan_tci=0x1000/0x1000".into()),
            Some(VlanMatch::Vid(vid)) => parts.push(format!("dl_vlan={vid}")),
            None => {}
        }
        for (name, m) in [("dl_src", self.eth_src), ("dl_dst", self.eth_dst)] {
            if let Some(m) = m {
                if m.mask == EthernetAddress::BROADCAST {
                    parts.push(format!("{name}={}", m.value));
                } else {
                    parts.push(format!("{name}={}/{}", m.value, m.mask));
                }
            }
        }
        let named_type = match (self.eth_type, self.ip_proto) {
            (Some(ETH_IPV4), Some(6)) => Some("tcp"),
            (Some(ETH_IPV4), Some(17)) => Some("udp"),
            (Some(ETH_IPV4), Some(1)) => Some("icmp"),
            (Some(ETH_IPV6), Some(6)) => Some("tcp6"),
            (Some(ETH_IPV6), Some(17)) => Some("udp6"),
            (Some(ETH_IPV6), Some(58)) => Some("icmp6"),
            (Some(ETH_IPV4), _) => Some("ip"),
            (Some(ETH_IPV6), _) => Some("ipv6"),
            (Some(ETH_ARP), _) => Some("arp"),
            _ => None,
        };
        let proto_named = matches!(
            named_type,
            Some("tcp" | "udp" | "icmp" | "tcp6" | "udp6" | "icmp6")
        );
        match (named_type, self.eth_type) {
            (Some(name), _) => parts.insert(0, name.into()),
            (None, Some(t)) => parts.push(format!("dl_type={t:#06x}")),
            (None, None) => {}
        }
        let is_arp = self.eth_type == Some(ETH_ARP);
        let (src_name, dst_name) = match (is_arp, self.eth_type) {
            (true, _) => ("arp_spa", "arp_tpa"),
            (false, Some(ETH_IPV6)) => ("ipv6_src", "ipv6_dst"),
            _ => ("nw_src", "nw_dst"),
        };
        if let Some(p) = self.ip_src {
            parts.push(format!("{src_name}={p}"));
        }
        if let Some(p) = self.ip_dst {
            parts.push(format!("{dst_name}={p}"));
        }
        if let Some(p) = self.ip_proto {
            if is_arp {
                parts.push(format!("arp_op={p}"));
            } else if !proto_named {
                parts.push(format!("nw_proto={p}"));
            }
        }
        let icmp = matches!(self.ip_proto, Some(1 | 58));
        let port = |p: u16, mask: Option<u16>| match mask {
            Some(m) if m != u16::MAX => format!("{p:#x}/{m:#x}"),
            _ => p.to_string(),
        };
        if let Some(p) = self.tp_src {
            parts.push(if icmp {
                format!("icmp_type={p}")
            } else {
                format!("tp_src={}", port(p, self.tp_src_mask))
            });
        }
        if let Some(p) = self.tp_dst {
            parts.push(if icmp {
                format!("icmp_code={p}")
            } else {
                format!("tp_dst={}", port(p, self.tp_dst_mask))
            });
        }
        if let Some(ct) = self.ct_state {
            parts.push(format!("ct_state={ct}"));
        }
        if let Some(zone) = self.ct_zone {
            parts.push(format!("ct_zone={zone}"));
        }
        if let Some(id) = self.tunnel_id {
            parts.push(format!("tun_id={id:#x}"));
        }
        if let Some(src) = self.tunnel_src {
            parts.push(format!("tun_src={src}"));
        }
        match self.metadata {
            Some(m) if m.mask == u32::MAX => parts.push(format!("metadata={:#x}", m.value)),
            Some(m) => parts.push(format!("metadata={:#x}/{:#x}", m.value, m.mask)),
            None => {}
        }
        write!(out, "{}", parts.join(","))
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_text(f, &|_| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{FrameBuilder, mac};

    fn key_of(frame: &[u8]) -> FlowKey {
        FlowKey::extract(frame, 1).unwrap().key
    }

    #[test]
    fn prefix_matching() {
        let m = Match {
            eth_type: Some(ETH_IPV4),
            ip_dst: Some(IpPrefix {
                addr: "10.0.0.0".parse().unwrap(),
                len: 24,
            }),
            ..Match::default()
        };
        m.validate().unwrap();
        let masked = m.to_masked();
        let inside = FrameBuilder::udp4("10.9.9.9:1", "10.0.0.77:2", b"").build();
        let outside = FrameBuilder::udp4("10.9.9.9:1", "10.0.1.77:2", b"").build();
        assert!(masked.matches(&key_of(&inside)));
        assert!(!masked.matches(&key_of(&outside)));
    }

    #[test]
    fn prerequisites() {
        let no_type = Match {
            ip_src: Some(IpPrefix::host("10.0.0.1".parse().unwrap())),
            ..Match::default()
        };
        assert!(matches!(
            no_type.validate(),
            Err(MatchError::MissingPrerequisite {
                field: "ip_src",
                ..
            })
        ));
        let port_without_proto = Match {
            eth_type: Some(ETH_IPV4),
            tp_dst: Some(80),
            ..Match::default()
        };
        assert!(port_without_proto.validate().is_err());
        let v6_on_v4 = Match {
            eth_type: Some(ETH_IPV4),
            ip_dst: Some(IpPrefix::host("fd00::1".parse().unwrap())),
            ..Match::default()
        };
        assert!(v6_on_v4.validate().is_err());
        let too_long = Match {
            eth_type: Some(ETH_IPV4),
            ip_dst: Some(IpPrefix {
                addr: "10.0.0.1".parse().unwrap(),
                len: 33,
            }),
            ..Match::default()
        };
        assert!(matches!(
            too_long.validate(),
            Err(MatchError::BadPrefix { .. })
        ));
    }

    #[test]
    fn coverage_for_wildcard_delete() {
        let specific = Match {
            in_port: Some(1),
            eth_dst: Some(MacMatch::exact(mac(2))),
            ..Match::default()
        }
        .to_masked();
        let by_dst = Match {
            eth_dst: Some(MacMatch::exact(mac(2))),
            ..Match::default()
        }
        .to_masked();
        let other_dst = Match {
            eth_dst: Some(MacMatch::exact(mac(3))),
            ..Match::default()
        }
        .to_masked();
        let all = Match::default().to_masked();
        assert!(specific.is_covered_by(&by_dst));
        assert!(specific.is_covered_by(&all));
        assert!(!by_dst.is_covered_by(&specific));
        assert!(!specific.is_covered_by(&other_dst));
    }

    #[test]
    fn text_form() {
        let m = Match {
            in_port: Some(2),
            eth_type: Some(ETH_IPV4),
            ip_proto: Some(6),
            ip_dst: Some(IpPrefix {
                addr: "10.0.0.0".parse().unwrap(),
                len: 24,
            }),
            tp_dst: Some(80),
            eth_dst: Some(MacMatch::multicast()),
            ..Match::default()
        };
        let mut text = String::new();
        m.write_text(&mut text, &|p| (p == 2).then(|| "p2".to_string()))
            .unwrap();
        assert_eq!(
            text,
            "tcp,in_port=p2,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,nw_dst=10.0.0.0/24,tp_dst=80"
        );
        assert_eq!(Match::default().to_string(), "");
    }
}
