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
}

/// Bytes VXLAN adds in front of an inner frame: outer IPv4 (20), UDP (8),
/// VXLAN (8) and the inner Ethernet header (14) counted against the MTU.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Default MTU of the underlay.
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;

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
    /// then switches that have one of their own.
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
            .collect()
    }

    /// Whether a switch needs the VLAN-aware pipeline (some port has a VLAN
    /// mode, or it tunnels VLANs).
    pub fn vlan_aware(&self, switch: &Switch) -> bool {
        !switch.vlan_vni.is_empty() || switch.ports.iter().any(|p| p.mode != PortMode::Plain)
    }
}
