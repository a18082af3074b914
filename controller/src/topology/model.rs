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

impl Topology {
    /// The network namespace of a node.
    pub fn namespace_of(&self, node: &str) -> String {
        format!("{}-{}", self.name, node)
    }

    /// The switch named `name`.
    pub fn switch(&self, name: &str) -> Option<&Switch> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every namespace the lab makes: hosts, then switches.
    pub fn namespaces(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| self.namespace_of(&h.name))
            .chain(self.switches.iter().map(|s| self.namespace_of(&s.name)))
            .collect()
    }
}
