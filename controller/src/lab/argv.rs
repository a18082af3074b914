//! The command lines of a lab's daemons: the controller's, and each
//! switch's `vswitchd` with its ports, tunnel endpoint, ESP ports and VPN
//! configuration.

use super::{sibling_binary, vpn};
use crate::plan::TUNNEL_PORT;
use crate::topology::{
    CpuPin, DEFAULT_UNDERLAY_MTU, Topology, UPLINK_PORT, UPLINK_PORT_NAME, VXLAN_OVERHEAD,
};
use anyhow::{Context, Result, anyhow};
use sdn_vswitch::agent::FailMode;
use std::path::Path;

/// The controller's command line: `sdn controller` on the topology's
/// copy, listening on `address`.
pub(super) fn controller_argv(copy: &Path, address: &str) -> Result<Vec<String>> {
    let own = std::env::current_exe().context("find this program's path")?;
    // Test harnesses run from target/*/deps: use the real sdn binary then.
    let sdn = if own.file_name().is_some_and(|n| n == "sdn") {
        own
    } else {
        sibling_binary("sdn")?
    };
    Ok(vec![
        sdn.display().to_string(),
        "controller".into(),
        "--topology".into(),
        copy.display().to_string(),
        "--listen".into(),
        address.into(),
    ])
}

/// Switch `name`'s `vswitchd` command line, its lab running in `dir`.
pub(super) fn switch_argv(
    topology: &Topology,
    name: &str,
    address: &str,
    dir: &Path,
) -> Result<Vec<String>> {
    let mut argv = vec![sibling_binary("vswitchd")?.display().to_string()];
    argv.extend(switch_arguments(topology, name, address, dir)?);
    Ok(argv)
}

/// The arguments of switch `name`'s `vswitchd`, whose lab runs in `dir`.
fn switch_arguments(
    topology: &Topology,
    name: &str,
    address: &str,
    dir: &Path,
) -> Result<Vec<String>> {
    let switch = topology
        .switch(name)
        .ok_or_else(|| anyhow!("no switch {name}"))?;
    let index = topology
        .switches
        .iter()
        .position(|s| s.name == name)
        .unwrap_or(0);
    let mut argv = vec![
        "--name".into(),
        name.into(),
        "--controller".into(),
        address.into(),
        "--netns".into(),
        topology.namespace_of(name),
        "--fail-mode".into(),
        match switch.fail_mode {
            FailMode::Secure => "secure".into(),
            FailMode::Standalone => "standalone".into(),
        },
    ];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = match switch.cpu {
        // Highest CPUs first: CPU 0 usually carries most interrupts and housekeeping.
        CpuPin::Auto => Some(cpus - 1 - index % cpus),
        CpuPin::Cpu(n) => Some(n),
        CpuPin::Unpinned => None,
    };
    if let Some(cpu) = cpu {
        argv.push("--cpu".into());
        argv.push(cpu.to_string());
    }
    if let Some(hv) = switch
        .hypervisor
        .as_deref()
        .and_then(|h| topology.hypervisor(h))
    {
        let underlay_mtu = topology
            .underlay
            .as_ref()
            .map_or(DEFAULT_UNDERLAY_MTU, |u| u.mtu);
        argv.push("--vxlan".into());
        argv.push(format!("{TUNNEL_PORT}={}", hv.address));
        argv.push("--vxlan-mtu".into());
        argv.push((underlay_mtu - VXLAN_OVERHEAD).to_string());
    }
    for port in &switch.ports {
        argv.push("--port".into());
        let suffix = if port.offloads { "" } else { ":no-offloads" };
        argv.push(format!("{}={}{}", port.number, port.name, suffix));
    }
    if topology.has_uplink(name) {
        argv.push("--port".into());
        argv.push(format!("{UPLINK_PORT}={UPLINK_PORT_NAME}"));
    }
    let esp = vpn::esp_ports(topology, name);
    for (number, address) in &esp {
        argv.push("--esp".into());
        argv.push(format!("{number}={address}"));
    }
    if !esp.is_empty() {
        argv.push("--vpn-config".into());
        argv.push(vpn::config_path(dir, name).display().to_string());
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{VPN, VpnFixture};
    use super::*;

    #[test]
    fn a_switch_with_vpn_gateways_gets_an_esp_port_each_and_its_configuration() {
        let fixture = VpnFixture::new(VPN);
        let topology = fixture.topology();
        let dir = Path::new("/run/sdn/vpn");
        let argv = switch_arguments(&topology, "sw1", "unix:/c.sock", dir).unwrap();
        let esp = argv
            .iter()
            .position(|a| a == "--esp")
            .expect("sw1 has ESP ports");
        assert_eq!(
            argv[esp..],
            [
                "--esp",
                "65100=203.0.113.90",
                "--esp",
                "65101=203.0.113.91",
                "--esp",
                "65102=203.0.113.92",
                "--vpn-config",
                "/run/sdn/vpn/vpn-sw1.json",
            ]
        );
        assert_eq!(argv[esp - 2..esp], ["--port", "4=p4"], "after the ports");
        assert_eq!(argv[..2], ["--name", "sw1"]);

        let plain = crate::topology::parse(
            "name: plain\nnetworks:\n  - { name: net, cidr: 10.0.0.0/16, subnets: [{ name: s1, cidr: 10.0.0.0/24 }] }\n\
             switches:\n  - { name: sw1, ports: [{ name: p1 }] }\n\
             hosts:\n  - { name: h1, interfaces: [{ name: eth0, subnet: s1, address: 10.0.0.11/24 }] }\n\
             links:\n  - [h1:eth0, sw1:p1]\n",
            Path::new("plain.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let argv = switch_arguments(&plain, "sw1", "unix:/c.sock", dir).unwrap();
        assert!(
            !argv.iter().any(|a| a == "--esp" || a == "--vpn-config"),
            "{argv:?}"
        );
    }
}
