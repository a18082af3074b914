//! The compiler's state for one switch, and how a packet is handed to a
//! host from it: through the switch's own segments, or relayed over the edge
//! to the host's switch.

use super::*;

/// A host interface of the lab, with where it lives.
#[derive(Clone, Copy)]
pub(super) struct Host<'t> {
    pub(super) host: &'t str,
    pub(super) iface: &'t Interface,
    pub(super) address: Ipv4Addr,
    /// Its number among the lab's host interfaces (from 1): the VLAN id a
    /// frame relayed over the edge for it carries there.
    pub(super) relay_vid: u16,
}

/// Highest VLAN id a relayed frame can carry (802.1Q).
pub(super) const MAX_RELAY_VID: u16 = 4094;

pub(super) struct Builder<'t> {
    pub(super) topology: &'t Topology,
    pub(super) switch: &'t Switch,
    pub(super) indexes: Indexes,
    pub(super) segments: Segments,
    pub(super) vlan_aware: bool,
    pub(super) uplink: bool,
    pub(super) out: CompiledRouting,
}

pub(super) fn exact(value: u32) -> Option<MetadataMatch> {
    Some(MetadataMatch::exact(value))
}

pub(super) fn host_prefix(address: Ipv4Addr) -> Option<IpPrefix> {
    Some(IpPrefix::host(IpAddr::V4(address)))
}

pub(super) fn net_prefix(cidr: ipnet::Ipv4Net) -> Option<IpPrefix> {
    Some(IpPrefix {
        addr: IpAddr::V4(cidr.network()),
        len: cidr.prefix_len(),
    })
}

pub(super) fn state(set: u8) -> Option<CtStateMatch> {
    Some(CtStateMatch::new(TRK | set, 0))
}

pub(super) fn ipv4(matcher: Match) -> Match {
    Match {
        eth_type: Some(ETH_IPV4),
        ..matcher
    }
}

impl<'t> Builder<'t> {
    pub(super) fn flow(
        &mut self,
        table: u8,
        priority: u16,
        matcher: Match,
        actions: Vec<Action>,
        cookie: u64,
    ) {
        self.out
            .flows
            .push(FlowSpec::new(table, priority, matcher, actions).with_cookie(cookie));
    }

    pub(super) fn router_mac(&self) -> sdn_vswitch::wire::EthernetAddress {
        self.indexes.router_mac()
    }

    /// Every IPv4 host interface of the lab.
    pub(super) fn hosts(&self) -> impl Iterator<Item = Host<'t>> + use<'t> {
        let topology: &'t Topology = self.topology;
        topology
            .hosts
            .iter()
            .flat_map(|h| h.interfaces.iter().map(move |iface| (h, iface)))
            .enumerate()
            .filter_map(|(i, (h, iface))| match iface.address {
                IpAddr::V4(address) => Some(Host {
                    host: &h.name,
                    iface,
                    address,
                    relay_vid: u16::try_from(i + 1).unwrap_or(u16::MAX),
                }),
                IpAddr::V6(_) => None,
            })
    }

    /// The switch a host interface is linked to.
    pub(super) fn switch_of(&self, h: &Host<'_>) -> Option<&'t str> {
        self.topology
            .switch_of(h.host, &h.iface.name)
            .map(|(s, _)| s.name.as_str())
    }

    pub(super) fn is_local(&self, h: &Host<'_>) -> bool {
        self.switch_of(h) == Some(self.switch.name.as_str())
    }

    /// The gateway's own answer `first` (an ARP reply, an echo reply), sent
    /// back out of the port the request came in, untagged there.
    pub(super) fn answer_back(&self, first: Action) -> Vec<Action> {
        let mut actions = vec![first];
        if self.vlan_aware {
            actions.push(Action::PopVlan);
        }
        actions.push(Action::InPort);
        actions
    }

    /// The gateway of a host's subnet.
    pub(super) fn gateway_of(&self, iface: &Interface) -> Option<Ipv4Addr> {
        self.topology.subnet(&iface.network, &iface.subnet)?.gateway
    }

    /// Whether `switch` has an uplink that carries `network`.
    pub(super) fn on_edge(&self, switch: &str, network: &str) -> bool {
        self.topology.internet.gateway_of(network).is_some() && self.topology.has_uplink(switch)
    }

    /// The ways to hand a packet to `h` from this switch: (extra match,
    /// actions). `icmp_src` is where errors about a packet too big come
    /// from (`None`: such packets are dropped).
    pub(super) fn deliver(
        &self,
        h: &Host<'_>,
        icmp_src: Option<Ipv4Addr>,
    ) -> Vec<(Match, Vec<Action>)> {
        let mtu = u16::try_from(h.iface.mtu).unwrap_or(u16::MAX);
        if let Some(actions) = self.deliver_here(h, icmp_src) {
            return vec![(Match::default(), actions)];
        }
        let network = &h.iface.network;
        if let Some(home) = self.switch_of(h)
            && h.relay_vid <= MAX_RELAY_VID
            && self.on_edge(&self.switch.name, network)
            && self.on_edge(home, network)
        {
            let relay = |last: Action| {
                vec![
                    Action::CheckMtu {
                        mtu: mtu.min(UPLINK_MTU),
                        icmp_src,
                    },
                    Action::SetField(SetField::EthSrc(
                        self.indexes.edge_mac(&self.switch.name, network),
                    )),
                    Action::SetField(SetField::EthDst(self.indexes.edge_mac(home, network))),
                    // The host it is for, as a tag the other switch reads.
                    Action::SetField(SetField::VlanVid(h.relay_vid)),
                    last,
                ]
            };
            let from_uplink = Match {
                in_port: Some(UPLINK_PORT),
                ..Match::default()
            };
            return vec![
                (from_uplink, relay(Action::InPort)),
                (Match::default(), relay(Action::Output(UPLINK_PORT))),
            ];
        }
        let refuse = match (icmp_src, self.gateway_of(h.iface)) {
            (Some(_), Some(gateway)) => vec![Action::IcmpUnreachable {
                code: unreachable::HOST,
                icmp_src: gateway,
            }],
            _ => Vec::new(),
        };
        vec![(Match::default(), refuse)]
    }

    /// The actions that hand a packet to `h` through this switch's own
    /// segments (its MAC as destination, the gateway MAC as source, its VLAN
    /// on a VLAN-aware switch), if they reach it.
    pub(super) fn deliver_here(
        &self,
        h: &Host<'_>,
        icmp_src: Option<Ipv4Addr>,
    ) -> Option<Vec<Action>> {
        let vlan = self
            .segments
            .reach(&self.switch.name, (h.host, &h.iface.name))?;
        let mtu = u16::try_from(h.iface.mtu).unwrap_or(u16::MAX);
        let mut actions = vec![
            Action::CheckMtu { mtu, icmp_src },
            Action::SetField(SetField::EthSrc(self.router_mac())),
            Action::SetField(SetField::EthDst(h.iface.mac)),
        ];
        if let (true, Some(vid)) = (self.vlan_aware, vlan) {
            actions.push(Action::SetField(SetField::VlanVid(vid)));
        }
        actions.push(Action::GotoTable(IN_CT));
        Some(actions)
    }

    /// Entries in `table` matching `key` (plus each way's own match) that
    /// deliver to `h`.
    pub(super) fn deliver_flows(
        &mut self,
        table: u8,
        priority: u16,
        key: &Match,
        h: &Host<'_>,
        icmp_src: Option<Ipv4Addr>,
        prefix: &[Action],
    ) {
        for (extra, actions) in self.deliver(h, icmp_src) {
            let matcher = Match {
                in_port: extra.in_port.or(key.in_port),
                ..key.clone()
            };
            let bump = u16::from(extra.in_port.is_some());
            let all = prefix.iter().copied().chain(actions).collect();
            self.flow(table, priority + bump, matcher, all, COOKIE_DELIVER);
        }
    }
}
