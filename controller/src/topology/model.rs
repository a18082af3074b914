//! The validated topology: what `sdn up` builds and the controller programs.
//! Only `validate` constructs it, so everything here has passed every check.

use ipnet::IpNet;
use sdn_vswitch::agent::FailMode;
use sdn_vswitch::flow::PortNo;
use sdn_vswitch::wire::EthernetAddress;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default MAC aging of the L2 application (idle timeout of learned flows).
pub const DEFAULT_MAC_AGING: Duration = Duration::from_secs(300);

/// Default MTU of host interfaces.
pub const DEFAULT_MTU: u32 = 1500;

/// A whole lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Lab name; prefixes every namespace (`<name>-<node>`).
    pub name: String,
    /// The file it was read from.
    pub source: PathBuf,
    /// Controller settings.
    pub controller: ControllerSettings,
    /// Virtual networks.
    pub networks: Vec<Network>,
    /// Switches.
    pub switches: Vec<Switch>,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Links (veth pairs).
    pub links: Vec<Link>,
    /// The network hypervisors reach each other on, if the lab has one.
    pub underlay: Option<Underlay>,
    /// Hypervisors on the underlay.
    pub hypervisors: Vec<Hypervisor>,
    /// Security groups.
    pub security: super::security::Security,
    /// Peerings, route tables and VPN gateways.
    pub routing: super::routing::Routing,
    /// The internet edge.
    pub internet: super::routing::Internet,
    /// Load balancers.
    pub load_balancers: Vec<super::load_balancer::LoadBalancer>,
    /// On-premises sites, local network gateways and the connections of
    /// VPN gateways (the gateways are `routing.vpn_gateways`).
    pub vpn: super::vpn::Vpn,
}

/// Bytes VXLAN adds in front of an inner frame: outer IPv4 (20), UDP (8),
/// VXLAN (8) and the inner Ethernet header (14) counted against the MTU.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Default MTU of the underlay.
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;

/// The name of a switch's port to the internet (its uplink).
pub const UPLINK_PORT_NAME: &str = "uplink";

/// The number of a switch's port to the internet.
pub const UPLINK_PORT: PortNo = 65_001;

/// The number of a switch's ESP port of its first VPN gateway; the others
/// follow in file order (see `Topology::vpn_gateways_on`).
pub const ESP_PORT_BASE: PortNo = 65_100;

/// The bridge that is the underlay network, in the underlay namespace.
pub const UNDERLAY_BRIDGE: &str = "underlay";

/// A hypervisor's device on the underlay (its end of the link to the bridge,
/// whose other end is named after the hypervisor).
pub const UNDERLAY_DEVICE: &str = "underlay0";

/// The network the hypervisors share (a Linux bridge in its own namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// Address range of the hypervisors.
    pub cidr: IpNet,
    /// MTU of its links; tunnelled frames get this minus `VXLAN_OVERHEAD`.
    pub mtu: u32,
}

/// A hypervisor: a namespace with an address on the underlay. It runs the
/// switch that names it, or else stands for an external tunnel endpoint
/// (a Linux `vxlan` device, say) serving `vnis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hypervisor {
    /// Name.
    pub name: String,
    /// Underlay address.
    pub address: std::net::Ipv4Addr,
    /// VNIs an external endpoint at this address serves.
    pub vnis: Vec<u32>,
}

/// How a switch port treats VLAN tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMode {
    /// No VLAN configuration: on a VLAN-aware switch, access VLAN 1.
    Plain,
    /// Frames belong to one VLAN and cross the port untagged.
    Access {
        /// The VLAN.
        vlan: u16,
        /// Priority put in the tag of frames from this port.
        pcp: u8,
    },
    /// Frames of several VLANs cross the port tagged; the native VLAN untagged.
    Trunk {
        /// VLANs carried tagged.
        vlans: Vec<u16>,
        /// VLAN carried untagged.
        native: Option<u16>,
    },
}

/// Where and how the controller runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Listening address.
    pub listen: Listen,
    /// Idle timeout of learned MAC flows.
    pub mac_aging: Duration,
}

/// The controller's southbound listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket in the lab's run directory (the default).
    Unix,
    /// A TCP address in the root network namespace.
    Tcp(std::net::SocketAddr),
}

/// A virtual network with an address range, as a cloud VNet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Address range.
    pub cidr: IpNet,
    /// Subnets, each inside `cidr`, none overlapping.
    pub subnets: Vec<Subnet>,
}

/// A subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Name, unique within its network.
    pub name: String,
    /// Address range.
    pub cidr: IpNet,
    /// The address its hosts route through: the first host address unless
    /// the file names another (IPv4 subnets only; none for a /32).
    pub gateway: Option<std::net::Ipv4Addr>,
}

/// The default gateway of a subnet: its first host address (RFC 3021: the
/// first of a /31; a /32 has none).
pub fn default_gateway(cidr: &IpNet) -> Option<std::net::Ipv4Addr> {
    let IpNet::V4(net) = cidr else { return None };
    match net.prefix_len() {
        32 => None,
        31 => Some(net.network()),
        _ => Some(std::net::Ipv4Addr::from(u32::from(net.network()) + 1)),
    }
}

/// A switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// Name.
    pub name: String,
    /// Behaviour without a controller.
    pub fail_mode: FailMode,
    /// Where its datapath thread runs.
    pub cpu: CpuPin,
    /// The hypervisor it runs on (its namespace and tunnel address).
    pub hypervisor: Option<String>,
    /// VLANs stretched over VXLAN: VLAN id → VNI.
    pub vlan_vni: std::collections::BTreeMap<u16, u32>,
    /// Ports.
    pub ports: Vec<SwitchPort>,
}

/// CPU placement of a switch's datapath thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPin {
    /// Pinned to a CPU chosen by `sdn up`: switches spread round-robin from
    /// the highest CPU down.
    Auto,
    /// Left to the scheduler.
    Unpinned,
    /// Pinned to this CPU.
    Cpu(usize),
}

/// A port of a switch; the switch's end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchPort {
    /// Device name in the switch's namespace.
    pub name: String,
    /// Port number (1 and up, unique in the switch).
    pub number: PortNo,
    /// Exchange TSO super-frames and partial checksums with the device.
    pub offloads: bool,
    /// VLAN treatment.
    pub mode: PortMode,
}

/// A host: a network namespace with interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name.
    pub name: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
}

/// A host interface: the host's end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Device name in the host's namespace.
    pub name: String,
    /// Network it belongs to.
    pub network: String,
    /// Subnet it belongs to.
    pub subnet: String,
    /// Its address, inside the subnet.
    pub address: IpAddr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// Ethernet address.
    pub mac: EthernetAddress,
    /// MTU.
    pub mtu: u32,
    /// It forwards packets not addressed to it (a virtual appliance).
    pub ip_forward: bool,
}

/// Which kind of node an endpoint is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A host.
    Host,
    /// A switch.
    Switch,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host or switch name.
    pub node: String,
    /// Interface or port name.
    pub device: String,
    /// Kind of node.
    pub kind: NodeKind,
}

/// A veth pair between two endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// First end.
    pub a: Endpoint,
    /// Second end.
    pub b: Endpoint,
}

impl Link {
    /// The end facing `node:device`, if this link has that device at its
    /// other end.
    pub fn peer_of(&self, node: &str, device: &str) -> Option<&Endpoint> {
        if self.a.node == node && self.a.device == device {
            Some(&self.b)
        } else if self.b.node == node && self.b.device == device {
            Some(&self.a)
        } else {
            None
        }
    }
}

/// The end linked to `node:device` among `links`.
pub fn peer_of<'l>(links: &'l [Link], node: &str, device: &str) -> Option<&'l Endpoint> {
    links.iter().find_map(|l| l.peer_of(node, device))
}

impl Topology {
    /// The network namespace of a node. A switch on a hypervisor lives in
    /// the hypervisor's namespace.
    pub fn namespace_of(&self, node: &str) -> String {
        match self.switch(node).and_then(|s| s.hypervisor.as_deref()) {
            Some(hypervisor) => format!("{}-{}", self.name, hypervisor),
            None => format!("{}-{}", self.name, node),
        }
    }

    /// The namespace of the underlay bridge.
    pub fn underlay_namespace(&self) -> String {
        format!("{}-underlay", self.name)
    }

    /// The hypervisor named `name`.
    pub fn hypervisor(&self, name: &str) -> Option<&Hypervisor> {
        self.hypervisors.iter().find(|h| h.name == name)
    }

    /// The switch named `name`.
    pub fn switch(&self, name: &str) -> Option<&Switch> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every namespace the lab makes: the underlay, hypervisors, hosts,
    /// switches that have one of their own, then the internet's router and
    /// hosts, then the on-premises sites and their hosts.
    pub fn namespaces(&self) -> Vec<String> {
        let underlay = self.underlay.as_ref().map(|_| self.underlay_namespace());
        underlay
            .into_iter()
            .chain(
                self.hypervisors
                    .iter()
                    .map(|h| format!("{}-{}", self.name, h.name)),
            )
            .chain(self.hosts.iter().map(|h| self.namespace_of(&h.name)))
            .chain(
                self.switches
                    .iter()
                    .filter(|s| s.hypervisor.is_none())
                    .map(|s| self.namespace_of(&s.name)),
            )
            .chain(
                self.internet
                    .present
                    .then(|| format!("{}-internet", self.name)),
            )
            .chain(
                self.internet
                    .hosts
                    .iter()
                    .map(|h| self.namespace_of(&h.name)),
            )
            .chain(self.site_namespaces())
            .collect()
    }

    /// The namespaces of the on-premises sites: each site's router
    /// (`<lab>-<site>`) followed by its hosts' (`<lab>-<host>`).
    pub fn site_namespaces(&self) -> Vec<String> {
        self.vpn
            .onprem_sites
            .iter()
            .flat_map(|site| {
                std::iter::once(format!("{}-{}", self.name, site.name)).chain(
                    site.hosts
                        .iter()
                        .map(|h| format!("{}-{}", self.name, h.name)),
                )
            })
            .collect()
    }

    /// The host interface linked to `switch:port`, if a host is there.
    pub fn host_on(&self, switch: &str, port: &str) -> Option<(&Host, &Interface)> {
        let end = peer_of(&self.links, switch, port)?;
        if end.kind != NodeKind::Host {
            return None;
        }
        let host = self.host(&end.node)?;
        let iface = host.interfaces.iter().find(|i| i.name == end.device)?;
        Some((host, iface))
    }

    /// The switch (and port) a host interface is linked to.
    pub fn switch_of(&self, host: &str, interface: &str) -> Option<(&Switch, &SwitchPort)> {
        let end = peer_of(&self.links, host, interface)?;
        let switch = self.switch(&end.node)?;
        let port = switch.ports.iter().find(|p| p.name == end.device)?;
        Some((switch, port))
    }

    /// The subnet `network/subnet`.
    pub fn subnet(&self, network: &str, subnet: &str) -> Option<&Subnet> {
        self.network(network)?
            .subnets
            .iter()
            .find(|s| s.name == subnet)
    }

    /// The load balancer named `name`.
    pub fn load_balancer(&self, name: &str) -> Option<&super::load_balancer::LoadBalancer> {
        self.load_balancers.iter().find(|l| l.name == name)
    }

    /// The network of a name, if declared.
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    /// The switch that carries VPN gateway `gateway`: the first switch, in
    /// file order, with a port linked to a host interface in the gateway's
    /// network. Its ESP port sends what the network routes into the
    /// gateway's tunnels, and what the tunnels bring is routed from there;
    /// its IKE and ESP reach the switch on a link of its own to the internet
    /// router. `None` for an unknown gateway, or one whose network has no
    /// host on a switch (validation refuses that).
    pub fn vpn_gateway_switch(&self, gateway: &str) -> Option<&Switch> {
        let network = &self.routing.vpn_gateway(gateway)?.network;
        self.switches.iter().find(|s| {
            s.ports.iter().any(|p| {
                self.host_on(&s.name, &p.name)
                    .is_some_and(|(_, i)| &i.network == network)
            })
        })
    }

    /// The public address of the far end of `connection`, seen from VPN
    /// gateway `gateway` (one of its ends).
    pub fn vpn_peer_address(
        &self,
        connection: &super::vpn::Connection,
        gateway: &str,
    ) -> Option<std::net::Ipv4Addr> {
        use super::vpn::Remote;
        if connection.gateway != gateway {
            return Some(self.routing.vpn_gateway(&connection.gateway)?.public_ip);
        }
        match &connection.remote {
            Remote::Site(name) => Some(self.vpn.site(name)?.public_ip),
            Remote::LocalNetworkGateway(name) => {
                Some(self.vpn.local_network_gateway(name)?.address)
            }
            Remote::PeerGateway(name) => Some(self.routing.vpn_gateway(name)?.public_ip),
        }
    }

    /// The VPN gateways switch `switch` carries, each with its ESP port's
    /// number, in the order of `vpn_gateways`.
    pub fn vpn_gateways_on(&self, switch: &str) -> Vec<(&super::routing::VpnGateway, PortNo)> {
        self.routing
            .vpn_gateways
            .iter()
            .filter(|g| {
                self.vpn_gateway_switch(&g.name)
                    .is_some_and(|s| s.name == switch)
            })
            .zip(ESP_PORT_BASE..)
            .collect()
    }

    /// Whether switch `name` has an uplink to the internet: it holds hosts of
    /// a network with an internet gateway, or translates for a NAT gateway.
    pub fn has_uplink(&self, name: &str) -> bool {
        let Some(switch) = self.switch(name) else {
            return false;
        };
        let hosts_online = switch.ports.iter().any(|p| {
            self.host_on(name, &p.name)
                .is_some_and(|(_, i)| self.internet.gateway_of(&i.network).is_some())
        });
        hosts_online || self.internet.nat_gateways.iter().any(|g| g.switch == name)
    }

    /// Whether a switch needs the VLAN-aware pipeline (some port has a VLAN
    /// mode, or it tunnels VLANs).
    pub fn vlan_aware(&self, switch: &Switch) -> bool {
        !switch.vlan_vni.is_empty() || switch.ports.iter().any(|p| p.mode != PortMode::Plain)
    }
}

/// A deterministic locally administered MAC for `host`'s `interface` in
/// `lab` (also used, with other words, for the addresses of the switches'
/// router and edge ports).
pub fn derived_mac(lab: &str, host: &str, interface: &str) -> EthernetAddress {
    let hash = [lab, host, interface]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, part| {
            part.bytes()
                .chain(std::iter::once(0))
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
        });
    let b = hash.to_be_bytes();
    // 0x02: locally administered, unicast.
    EthernetAddress([0x02, b[3], b[4], b[5], b[6], b[7]])
}
