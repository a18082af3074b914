//! The topology file as written: serde types that refuse unknown fields and
//! remember where each value came from. Nothing here is checked beyond its
//! shape; `validate` turns it into the typed model.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// A whole topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopology {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) controller: Option<Spanned<RawController>>,
    #[serde(default)]
    pub(crate) networks: Vec<Spanned<RawNetwork>>,
    #[serde(default)]
    pub(crate) switches: Vec<Spanned<RawSwitch>>,
    #[serde(default)]
    pub(crate) hosts: Vec<Spanned<RawHost>>,
    #[serde(default)]
    pub(crate) links: Vec<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) underlay: Option<Spanned<RawUnderlay>>,
    #[serde(default)]
    pub(crate) hypervisors: Vec<Spanned<RawHypervisor>>,
    #[serde(default)]
    pub(crate) security: Option<Spanned<RawSecurity>>,
    #[serde(default)]
    pub(crate) peerings: Vec<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) route_tables: Vec<Spanned<RawRouteTable>>,
    #[serde(default)]
    pub(crate) vpn_gateways: Vec<Spanned<RawVpnGateway>>,
    #[serde(default)]
    pub(crate) internet: Option<Spanned<RawInternet>>,
    #[serde(default)]
    pub(crate) internet_gateways: Vec<Spanned<RawInternetGateway>>,
    #[serde(default)]
    pub(crate) public_ips: Vec<Spanned<RawPublicIp>>,
    #[serde(default)]
    pub(crate) nat_gateways: Vec<Spanned<RawNatGateway>>,
    #[serde(default)]
    pub(crate) load_balancers: Vec<Spanned<RawLoadBalancer>>,
    #[serde(default)]
    pub(crate) onprem_sites: Vec<Spanned<RawOnpremSite>>,
    #[serde(default)]
    pub(crate) local_network_gateways: Vec<Spanned<RawLocalNetworkGateway>>,
    #[serde(default)]
    pub(crate) connections: Vec<Spanned<RawConnection>>,
}

/// A branch office: a namespace on the internet with a public address,
/// a LAN and hosts behind it, running strongSwan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOnpremSite {
    pub(crate) name: Spanned<String>,
    pub(crate) public_ip: Spanned<String>,
    pub(crate) lan: Spanned<String>,
    pub(crate) ipsec: Spanned<String>,
    #[serde(default)]
    pub(crate) hosts: Vec<Spanned<RawSiteHost>>,
}

/// A host on a site's LAN.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSiteHost {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
}

/// A remote VPN peer the lab does not run, and the prefixes behind it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocalNetworkGateway {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
    #[serde(default)]
    pub(crate) prefixes: Vec<Spanned<String>>,
}

/// A site-to-site or VNet-to-VNet IPsec connection of a VPN gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    pub(crate) name: Spanned<String>,
    pub(crate) gateway: Spanned<String>,
    #[serde(default)]
    pub(crate) site: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) local_network_gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) peer_gateway: Option<Spanned<String>>,
    pub(crate) psk_file: Spanned<String>,
    #[serde(default)]
    pub(crate) ipsec_policy: Option<Spanned<RawIpsecPolicy>>,
    #[serde(default)]
    pub(crate) ike_lifetime: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) child_lifetime: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) dpd_interval: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) dpd_retries: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) initiator: Option<Spanned<String>>,
}

/// The algorithms a connection offers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpsecPolicy {
    #[serde(default)]
    pub(crate) ike: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(crate) prf: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) dh: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) esp: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A load balancer: frontends, backend pools, probes and the rules that
/// join them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoadBalancer {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) network: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) frontends: Vec<Spanned<RawFrontend>>,
    #[serde(default)]
    pub(crate) backend_pools: Vec<Spanned<RawBackendPool>>,
    #[serde(default)]
    pub(crate) probes: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    pub(crate) rules: Vec<Spanned<RawLoadBalancingRule>>,
    #[serde(default)]
    pub(crate) inbound_nat_rules: Vec<Spanned<RawInboundNatRule>>,
}

/// A frontend: the address clients connect to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontend {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
}

/// A backend pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackendPool {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) members: Vec<Spanned<RawPoolMember>>,
}

/// A member of a backend pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoolMember {
    pub(crate) interface: Spanned<String>,
    #[serde(default)]
    pub(crate) weight: Option<Spanned<i64>>,
}

/// A health probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub(crate) name: Spanned<String>,
    pub(crate) protocol: Spanned<String>,
    pub(crate) port: Spanned<i64>,
    #[serde(default)]
    pub(crate) path: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) interval: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) unhealthy_threshold: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) healthy_threshold: Option<Spanned<i64>>,
}

/// A load-balancing rule: a frontend port spread over a pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoadBalancingRule {
    pub(crate) name: Spanned<String>,
    pub(crate) frontend: Spanned<String>,
    pub(crate) protocol: Spanned<String>,
    pub(crate) frontend_port: Spanned<i64>,
    #[serde(default)]
    pub(crate) backend_port: Option<Spanned<i64>>,
    pub(crate) pool: Spanned<String>,
    #[serde(default)]
    pub(crate) probe: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) algorithm: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) idle_timeout: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) no_healthy_backends: Option<Spanned<String>>,
}

/// An inbound NAT rule: a frontend port forwarded to one interface.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInboundNatRule {
    pub(crate) name: Spanned<String>,
    pub(crate) frontend: Spanned<String>,
    pub(crate) protocol: Spanned<String>,
    pub(crate) frontend_port: Spanned<i64>,
    #[serde(default)]
    pub(crate) backend_port: Option<Spanned<i64>>,
    pub(crate) target: Spanned<String>,
}

/// A duration: whole seconds, or text like `500ms`, `5s`, `4m`, `1h`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Seconds(i64),
    Text(String),
}

/// A route table: user routes attached to subnets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteTable {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub(crate) subnets: Vec<Spanned<String>>,
}

/// One user route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) prefix: Spanned<String>,
    pub(crate) next_hop: Spanned<RawNextHop>,
}

/// A next hop: a word (`none`, `internet`) or a one-key map
/// (`virtual_appliance: ADDRESS`, `vpn_gateway: NAME`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawNextHop {
    Word(String),
    Map(std::collections::BTreeMap<String, String>),
}

/// A VPN gateway of a network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVpnGateway {
    pub(crate) name: Spanned<String>,
    pub(crate) network: Spanned<String>,
    pub(crate) public_ip: Spanned<String>,
}

/// The internet: hosts on public addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInternet {
    #[serde(default)]
    pub(crate) hosts: Vec<Spanned<RawInternetHost>>,
}

/// A host on the internet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInternetHost {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
}

/// A network's internet gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInternetGateway {
    pub(crate) name: Spanned<String>,
    pub(crate) network: Spanned<String>,
}

/// A public IP attached to a host interface.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPublicIp {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
    pub(crate) interface: Spanned<String>,
}

/// A NAT gateway attached to subnets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNatGateway {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
    #[serde(default)]
    pub(crate) subnets: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) ports: Option<Spanned<RawPorts>>,
    #[serde(default)]
    pub(crate) switch: Option<Spanned<String>>,
}

/// Security groups and how the firewall behaves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    #[serde(default)]
    pub(crate) on_rule_removal: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) conntrack_max: Option<Spanned<u64>>,
    #[serde(default)]
    pub(crate) flow_log: Option<Spanned<RawFlowLog>>,
    #[serde(default)]
    pub(crate) asgs: Vec<Spanned<RawAsg>>,
    #[serde(default)]
    pub(crate) nsgs: Vec<Spanned<RawNsg>>,
    #[serde(default)]
    pub(crate) acgs: Vec<Spanned<RawAcg>>,
}

/// JSON lines for denied connection attempts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlowLog {
    #[serde(default)]
    pub(crate) rate: Option<Spanned<u32>>,
}

/// An application security group: interfaces rules can name together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAsg {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) members: Vec<Spanned<String>>,
}

/// A network security group (priority rules, allow and deny).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNsg {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) rules: Vec<Spanned<RawNsgRule>>,
    #[serde(default)]
    pub(crate) interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) subnets: Vec<Spanned<String>>,
}

/// One NSG rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNsgRule {
    pub(crate) name: Spanned<String>,
    pub(crate) priority: Spanned<i64>,
    pub(crate) direction: Spanned<String>,
    pub(crate) access: Spanned<String>,
    #[serde(default)]
    pub(crate) protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) source: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) source_ports: Option<Spanned<RawPorts>>,
    #[serde(default)]
    pub(crate) destination: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) destination_ports: Option<Spanned<RawPorts>>,
    #[serde(default)]
    pub(crate) description: Option<Spanned<String>>,
}

/// An access control group (allow-only rules, no priority).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcg {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) inbound: Vec<Spanned<RawAcgRule>>,
    #[serde(default)]
    pub(crate) outbound: Vec<Spanned<RawAcgRule>>,
}

/// One ACG rule: inbound rules name a source, outbound a destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAcgRule {
    #[serde(default)]
    pub(crate) protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) source: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) destination: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) ports: Option<Spanned<RawPorts>>,
    #[serde(default)]
    pub(crate) description: Option<Spanned<String>>,
}

/// Ports: a number, or text like `80`, `1000-2000`, `80,443` or `*`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawPorts {
    Number(i64),
    Text(String),
}

/// The network hypervisors reach each other on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUnderlay {
    pub(crate) cidr: Spanned<String>,
    #[serde(default)]
    pub(crate) mtu: Option<Spanned<u32>>,
}

/// A hypervisor: a namespace on the underlay, running a switch or an
/// external tunnel endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHypervisor {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
    #[serde(default)]
    pub(crate) vnis: Vec<Spanned<u32>>,
}

/// Controller settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawController {
    #[serde(default)]
    pub(crate) listen: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) mac_aging: Option<Spanned<u64>>,
}

/// A virtual network (a cloud VNet/VPC).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub(crate) name: Spanned<String>,
    pub(crate) cidr: Spanned<String>,
    #[serde(default)]
    pub(crate) subnets: Vec<Spanned<RawSubnet>>,
}

/// A subnet of a network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubnet {
    pub(crate) name: Spanned<String>,
    pub(crate) cidr: Spanned<String>,
    #[serde(default)]
    pub(crate) gateway: Option<Spanned<String>>,
}

/// A switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSwitch {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) fail_mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) cpu: Option<Spanned<RawCpu>>,
    #[serde(default)]
    pub(crate) hypervisor: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) vlan_vni: Option<Spanned<std::collections::BTreeMap<u16, u32>>>,
    #[serde(default)]
    pub(crate) ports: Vec<Spanned<RawPort>>,
}

/// Where a switch's datapath thread runs: a CPU number, `auto` or `none`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawCpu {
    Number(u32),
    Word(String),
}

/// A switch port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) number: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) offloads: Option<Spanned<bool>>,
    #[serde(default)]
    pub(crate) mode: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) vlan: Option<Spanned<u16>>,
    #[serde(default)]
    pub(crate) pcp: Option<Spanned<u8>>,
    #[serde(default)]
    pub(crate) vlans: Option<Spanned<Vec<u16>>>,
    #[serde(default)]
    pub(crate) native_vlan: Option<Spanned<u16>>,
}

/// A host (a network namespace).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) interfaces: Vec<Spanned<RawInterface>>,
}

/// A network interface of a host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInterface {
    pub(crate) name: Spanned<String>,
    pub(crate) subnet: Spanned<String>,
    pub(crate) address: Spanned<String>,
    #[serde(default)]
    pub(crate) mac: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) mtu: Option<Spanned<u32>>,
    #[serde(default)]
    pub(crate) ip_forward: Option<Spanned<bool>>,
}
