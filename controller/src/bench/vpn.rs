//! The VPN bench: single-stream TCP throughput and the 64-byte UDP packet
//! rate (iperf3) host to host across a VNet-to-VNet IPsec connection of
//! the lab, and in the same run across strongSwan (charon with
//! kernel-libipsec) and boringtun (userspace WireGuard) between two
//! gateway namespaces with a host behind each, and across the project's
//! own VXLAN overlay between two hosts on two hypervisors. The four paths
//! are up together and take turns for each run of each measure, so that
//! the shared machine's noise falls on all of them.
//!
//! Git keeps no key files, so the bench runs on a copy of the topology in
//! a private temporary directory, beside fresh random keys (mode 0600) for
//! every `psk_file` it names.

use super::cpu::{CpuClock, ElsewhereClock};
use super::pair::pick_pair;
use super::vpn_peers::{self, PeerShape};
use super::vpn_report::{self, Measure, PathResults};
use super::{BenchOptions, LabGuard, iperf};
use crate::lab::{self, UpOptions, private};
use crate::topology::vpn::Remote;
use crate::topology::{self, Topology};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Rows and labels of the four paths.
const OURS: (&str, &str) = ("vswitchd IPsec VPN (this project)", "VPN");
const STRONGSWAN: (&str, &str) = ("strongSwan (kernel-libipsec)", "strongSwan");
const BORINGTUN: (&str, &str) = ("boringtun (userspace WireGuard)", "boringtun");
const OVERLAY: (&str, &str) = ("vswitchd VXLAN overlay (this project)", "VXLAN overlay");

/// How long the lab's tunnel gets to carry a first ping once its switches
/// are synced (IKE_SA_INIT and IKE_AUTH between the gateways).
const TUNNEL_LIMIT: Duration = Duration::from_secs(30);

/// Bytes of randomness in each key the bench writes (written in hex).
const KEY_BYTES: usize = 32;

/// The part of a topology file the bench needs before validating it: the
/// key file of each connection (the validation reads them).
#[derive(Debug, Deserialize)]
struct KeyFiles {
    #[serde(default)]
    connections: Vec<KeyFile>,
}

#[derive(Debug, Deserialize)]
struct KeyFile {
    psk_file: String,
}

/// The key files that the connections of topology text `text` name,
/// relative to it, in file order without repeats; none for a topology
/// without connections.
///
/// # Errors
///
/// Text that is no YAML mapping, and a key file that is absolute or
/// climbs out of the topology's directory (the bench writes every key
/// beside its copy of the topology).
fn key_files(text: &str) -> Result<Vec<PathBuf>> {
    let parsed: KeyFiles =
        serde_saphyr::from_str(text).context("read the connections' key files")?;
    let mut files: Vec<PathBuf> = Vec::new();
    for connection in parsed.connections {
        let file = PathBuf::from(connection.psk_file.trim());
        let inside = file
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || file.as_os_str().is_empty() {
            bail!(
                "psk_file {}: the VPN bench writes its own keys beside a copy of the topology, so a key file must be a relative path below the topology's directory",
                file.display()
            );
        }
        if !files.contains(&file) {
            files.push(file);
        }
    }
    Ok(files)
}

/// Whether the topology file at `path` has VPN connections (it gets this
/// bench); read before validating, which needs the key files. A file that
/// cannot be read or parsed has none here: validation says what is wrong.
pub(super) fn has_connections(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    serde_saphyr::from_str::<KeyFiles>(&text).is_ok_and(|k| !k.connections.is_empty())
}

/// A directory only root may enter, removed with everything in it when
/// dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create(path: PathBuf) -> Result<PrivateDir> {
        if path.exists() {
            bail!("{} already exists", path.display());
        }
        private::create_dir(&path)?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `KEY_BYTES` random bytes in hex.
fn random_key() -> Result<String> {
    let mut bytes = [0u8; KEY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes topology text `text` as `name` into `dir`, and a fresh random key
/// (mode 0600) for each of its key files beside it; the copy's path.
fn write_copy(text: &str, name: &str, dir: &Path) -> Result<PathBuf> {
    let copy = dir.join(name);
    std::fs::write(&copy, text).with_context(|| format!("write {}", copy.display()))?;
    for file in key_files(text)? {
        let key = dir.join(&file);
        if let Some(parent) = key.parent() {
            private::create_dir(parent)?;
        }
        private::write_file(&key, format!("{}\n", random_key()?).as_bytes())?;
    }
    Ok(copy)
}

/// What the bench measures in a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// The VNet-to-VNet connection measured.
    connection: String,
    /// The sending host: the first host of the connection's gateway's network.
    client: String,
    /// The receiving host: the first host of the peer gateway's network.
    server: String,
    /// The receiving host's address.
    server_address: IpAddr,
    /// The switches the two gateways run on (sending side first).
    switches: [String; 2],
    /// The smaller MTU of the two hosts' interfaces: the peers' and the
    /// overlay's hosts get it too.
    host_mtu: u32,
    /// The connection's preferred ESP cipher.
    esp: String,
}

/// The first host with an interface in `network`, and that interface.
fn first_host_in<'t>(
    topology: &'t Topology,
    network: &str,
) -> Option<(&'t topology::Host, &'t topology::Interface)> {
    topology.hosts.iter().find_map(|h| {
        h.interfaces
            .iter()
            .find(|i| i.network == network)
            .map(|i| (h, i))
    })
}

impl Plan {
    /// The topology's first VNet-to-VNet connection, from the first host
    /// of its gateway's network to the first host of its peer's.
    fn of(topology: &Topology) -> Result<Plan> {
        let source = topology.source.display();
        let Some((connection, peer)) =
            topology
                .vpn
                .connections
                .iter()
                .find_map(|c| match &c.remote {
                    Remote::PeerGateway(peer) => Some((c, peer)),
                    _ => None,
                })
        else {
            bail!(
                "{source}: the VPN bench measures host to host across a VNet-to-VNet connection (one with peer_gateway), and there is none"
            );
        };
        let mut ends = Vec::new();
        for gateway_name in [&connection.gateway, peer] {
            let gateway = topology
                .routing
                .vpn_gateway(gateway_name)
                .with_context(|| format!("{source}: VPN gateway {gateway_name}"))?;
            let (host, interface) =
                first_host_in(topology, &gateway.network).with_context(|| {
                    format!(
                        "{source}: network {} of VPN gateway {gateway_name} needs a host for the bench",
                        gateway.network
                    )
                })?;
            let switch = topology
                .vpn_gateway_switch(gateway_name)
                .with_context(|| format!("{source}: the switch of VPN gateway {gateway_name}"))?;
            ends.push((host.name.clone(), interface, switch.name.clone()));
        }
        let [
            (client, client_if, client_switch),
            (server, server_if, server_switch),
        ] = <[_; 2]>::try_from(ends).expect("two ends were pushed");
        Ok(Plan {
            connection: connection.name.clone(),
            client,
            server,
            server_address: server_if.address,
            switches: [client_switch, server_switch],
            host_mtu: client_if.mtu.min(server_if.mtu),
            esp: connection
                .policy
                .esp
                .first()
                .map_or("?".into(), |a| a.name().to_string()),
        })
    }
}

/// The name of the overlay lab beside lab `name` (a lab name has at most
/// 32 characters).
fn overlay_name(name: &str) -> String {
    let stem: String = name.chars().take(30).collect();
    format!("{}vx", stem.trim_end_matches('-'))
}

/// The overlay lab's topology: two hosts of MTU `host_mtu`, each on a
/// switch of its own on two hypervisors, one VNI between them (the shape
/// of `bench-vxlan.yaml`).
fn overlay_text(name: &str, host_mtu: u32) -> String {
    format!(
        "# The VPN bench's VXLAN overlay: two hosts on two hypervisors.
name: {name}
underlay: {{ cidr: 192.168.151.0/24, mtu: 1500 }}
hypervisors:
  - {{ name: hv1, address: 192.168.151.1 }}
  - {{ name: hv2, address: 192.168.151.2 }}
networks:
  - name: overlay
    cidr: 10.151.0.0/16
    subnets: [{{ name: s1, cidr: 10.151.0.0/24 }}]
switches:
  - {{ name: sw1, hypervisor: hv1, vlan_vni: {{ 10: 5020 }}, ports: [{{ name: p1, mode: access, vlan: 10 }}] }}
  - {{ name: sw2, hypervisor: hv2, vlan_vni: {{ 10: 5020 }}, ports: [{{ name: p1, mode: access, vlan: 10 }}] }}
hosts:
  - {{ name: h1, interfaces: [{{ name: eth0, subnet: s1, address: 10.151.0.3/24, mtu: {host_mtu} }}] }}
  - {{ name: h2, interfaces: [{{ name: eth0, subnet: s1, address: 10.151.0.2/24, mtu: {host_mtu} }}] }}
links:
  - [h1:eth0, sw1:p1]
  - [h2:eth0, sw2:p1]
"
    )
}

/// One path as iperf3 sees it.
struct Target {
    client_ns: String,
    server_ns: String,
    server: IpAddr,
    /// The processes that forward the path.
    forwarders: Vec<u32>,
}

impl Target {
    fn of_lab(
        topology: &Topology,
        guard: &LabGuard,
        client: &str,
        server: IpAddr,
        to: &str,
    ) -> Target {
        Target {
            client_ns: topology.namespace_of(client),
            server_ns: topology.namespace_of(to),
            server,
            forwarders: switch_pids(guard),
        }
    }

    fn of_peer(peer: &PeerShape) -> Target {
        Target {
            client_ns: peer.shape.client_ns.clone(),
            server_ns: peer.shape.server_ns.clone(),
            server: peer.shape.server_addr,
            forwarders: peer.forwarders(),
        }
    }
}

/// The pids of a lab's switches.
fn switch_pids(guard: &LabGuard) -> Vec<u32> {
    guard
        .0
        .iter()
        .flat_map(|r| &r.processes)
        .filter(|p| p.role == "switch")
        .map(|p| p.pid)
        .collect()
}

/// Brings `topology` up as a bench lab.
async fn up(topology: &Topology) -> Result<LabGuard> {
    let record = lab::up(
        topology,
        &UpOptions {
            resume: false,
            timeout: Duration::from_secs(60),
        },
    )
    .await
    .with_context(|| format!("bring up bench lab {}", topology.name))?;
    Ok(LabGuard(Some(record)))
}

/// Waits until `client_ns` reaches `server` (through the lab's tunnel).
fn wait_for_ping(client_ns: &str, server: IpAddr, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let reached = iperf::command_in(client_ns, "ping")?
            .args(["-c", "1", "-W", "1", &server.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if reached {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{client_ns} cannot reach {server} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a run measures with one iperf3 test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    Tcp,
    Udp64,
}

/// Run number `run` (from 0) of `test` on `target`, added to `result`; a
/// failure becomes a note.
fn measure_once(
    target: &Target,
    test: Test,
    options: &BenchOptions,
    bench: (&[String], &[u32]),
    result: &mut PathResults,
    run: usize,
) {
    let port = 5201 + (run as u16) * 2;
    let clock = CpuClock::start(&target.forwarders);
    let elsewhere = ElsewhereClock::start(bench.0, bench.1);
    let figures: Result<Vec<(Measure, f64)>> = match test {
        Test::Tcp => iperf::tcp_gbps(
            &target.server_ns,
            &target.client_ns,
            target.server,
            port,
            options.seconds,
        )
        .map(|gbps| vec![(Measure::Tcp, gbps)]),
        Test::Udp64 => iperf::udp64(
            &target.server_ns,
            &target.client_ns,
            target.server,
            port + 1,
            options.seconds,
        )
        .map(|rate| {
            vec![
                (Measure::Udp64Delivered, rate.delivered_pps),
                (Measure::Udp64Read, rate.received_pps),
            ]
        }),
    };
    let cpu = clock.percent_of_core();
    let others = elsewhere.percent_of_core();
    match figures {
        Ok(figures) => {
            let mut line = Vec::new();
            for (measure, value) in figures {
                let series = result.series_mut(measure);
                series.values.push(value);
                series.forwarder_cpu.extend(cpu);
                series.elsewhere_cpu.extend(others);
                let precision = measure.precision();
                line.push(format!("{} {value:.precision$}", measure.title()));
            }
            eprintln!(
                "  {} run {}: {}{}{}",
                result.name,
                run + 1,
                line.join(", "),
                cpu.map_or(String::new(), |c| format!(", forwarders {c:.0}% of a core")),
                others.map_or(String::new(), |c| format!(", other processes {c:.0}%"))
            );
        }
        Err(e) => {
            eprintln!("  {} run {}: {test:?} failed: {e:#}", result.name, run + 1);
            let measures: &[Measure] = match test {
                Test::Tcp => &[Measure::Tcp],
                Test::Udp64 => &[Measure::Udp64Delivered, Measure::Udp64Read],
            };
            for measure in measures {
                let note = format!("run {} failed: {e:#}", run + 1);
                result.series_mut(*measure).notes.push(note);
            }
        }
    }
}

/// Brings up a peer, or notes on its row why it is not measured.
fn bring_up_peer(
    result: &mut PathResults,
    unavailable: Option<&str>,
    make: impl FnOnce() -> Result<PeerShape>,
) -> Option<PeerShape> {
    if let Some(reason) = unavailable {
        eprintln!("  {}: {reason}", result.name);
        result.note_all(reason);
        return None;
    }
    eprintln!("bench: bringing up {}", result.name);
    match make() {
        Ok(peer) => Some(peer),
        Err(e) => {
            eprintln!("  {} could not be set up: {e:#}", result.name);
            result.note_all(&format!("could not be set up: {e:#}"));
            None
        }
    }
}

/// Runs the VPN bench on the topology at `file`.
pub(super) async fn run(file: &Path, options: &BenchOptions, as_json: bool) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let scratch = PrivateDir::create(
        std::env::temp_dir().join(format!("sdn-bench-vpn-{}", std::process::id())),
    )?;
    let topology_dir = scratch.0.join("topology");
    private::create_dir(&topology_dir)?;
    let file_name = file.file_name().map_or_else(
        || "topology.yaml".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let copy = write_copy(&text, &file_name, &topology_dir)?;
    let topology = topology::load(&copy)?;
    let plan = Plan::of(&topology)?;
    let mut results = [
        PathResults::new(OURS.0, OURS.1),
        PathResults::new(STRONGSWAN.0, STRONGSWAN.1),
        PathResults::new(BORINGTUN.0, BORINGTUN.1),
        PathResults::new(OVERLAY.0, OVERLAY.1),
    ];
    eprintln!(
        "bench {}: {} → {} across connection {} ({}; gateways on {} and {}){}",
        topology.name,
        plan.client,
        plan.server,
        plan.connection,
        plan.esp,
        plan.switches[0],
        plan.switches[1],
        if options.baselines {
            ", beside strongSwan, boringtun and the VXLAN overlay"
        } else {
            ""
        }
    );
    let lab_guard = up(&topology).await?;
    wait_for_ping(
        &topology.namespace_of(&plan.client),
        plan.server_address,
        TUNNEL_LIMIT,
    )
    .context("the lab's VPN tunnel")?;
    let ours = Target::of_lab(
        &topology,
        &lab_guard,
        &plan.client,
        plan.server_address,
        &plan.server,
    );

    let mut overlay_guard = None;
    let mut overlay_topology = None;
    let mut strongswan = None;
    let mut boringtun = None;
    if options.baselines {
        let overlay_file = scratch.0.join("overlay.yaml");
        std::fs::write(
            &overlay_file,
            overlay_text(&overlay_name(&topology.name), plan.host_mtu),
        )?;
        let overlay = topology::load(&overlay_file)?;
        eprintln!("bench: bringing up {}", OVERLAY.0);
        match up(&overlay).await {
            Ok(guard) => overlay_guard = Some(guard),
            Err(e) => results[3].note_all(&format!("could not be set up: {e:#}")),
        }
        overlay_topology = Some(overlay);

        let prefix = format!("{}-p{}", topology.name, std::process::id() % 10_000);
        let key = random_key()?;
        let missing =
            (!vpn_peers::strongswan_available()).then_some(crate::lab::strongswan::INSTALL);
        let dir = scratch.0.join("strongswan");
        strongswan = bring_up_peer(&mut results[1], missing, || {
            private::create_dir(&dir)?;
            vpn_peers::strongswan(&prefix, plan.host_mtu, &dir, &key)
        });
        let missing = if vpn_peers::boringtun_program().is_none() {
            Some(vpn_peers::BORINGTUN_MISSING)
        } else if !vpn_peers::wg_available() {
            Some(vpn_peers::WG_MISSING)
        } else {
            None
        };
        let dir = scratch.0.join("boringtun");
        boringtun = bring_up_peer(&mut results[2], missing, || {
            vpn_peers::boringtun(&prefix, plan.host_mtu, &dir)
        });
    }
    let overlay_target = match (&overlay_guard, &overlay_topology) {
        (Some(guard), Some(overlay)) => {
            let pair = pick_pair(overlay)?;
            let server = pair.addresses.server;
            Some(Target::of_lab(
                overlay,
                guard,
                &pair.client,
                server,
                &pair.server,
            ))
        }
        _ => None,
    };
    let targets = [
        Some(ours),
        strongswan.as_ref().map(Target::of_peer),
        boringtun.as_ref().map(Target::of_peer),
        overlay_target,
    ];

    let guards = [Some(&lab_guard), overlay_guard.as_ref()];
    let mut bench_namespaces: Vec<String> = guards
        .iter()
        .flatten()
        .flat_map(|g| g.0.iter().flat_map(|r| r.namespaces.clone()))
        .collect();
    bench_namespaces.extend(
        strongswan
            .iter()
            .chain(&boringtun)
            .flat_map(PeerShape::namespaces),
    );
    let bench_processes: Vec<u32> = guards
        .iter()
        .flatten()
        .flat_map(|g| g.0.iter().flat_map(|r| r.processes.iter().map(|p| p.pid)))
        .collect();
    let bench = (bench_namespaces.as_slice(), bench_processes.as_slice());
    for run in 0..options.runs {
        for test in [Test::Tcp, Test::Udp64] {
            for (target, result) in targets.iter().zip(results.iter_mut()) {
                if let Some(target) = target {
                    measure_once(target, test, options, bench, result, run);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
    drop(boringtun);
    drop(strongswan);
    drop(overlay_guard);
    drop(lab_guard);
    drop(scratch);

    let paths: Vec<PathResults> = if options.baselines {
        results.to_vec()
    } else {
        results[..1].to_vec()
    };
    let conditions = json!({
        "connection": plan.connection,
        "esp": plan.esp,
        "client": plan.client,
        "server": plan.server,
        "gateway_switches": plan.switches,
        "host_mtu": plan.host_mtu,
        "peers": "strongSwan and boringtun in two gateway namespaces joined by a veth, a host behind each; \
                  the lab's ESP crosses its internet router (a kernel router namespace) between the switches",
    });
    let goals = vpn_report::goals(STRONGSWAN.1, BORINGTUN.1, OVERLAY.1);
    vpn_report::report(
        &topology.name,
        options,
        &paths,
        OURS.1,
        &goals,
        conditions,
        as_json,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const BENCH: &str = include_str!("../../../topologies/bench-vpn.yaml");

    /// A scratch directory for a test, removed when dropped.
    fn scratch(name: &str) -> PrivateDir {
        let dir =
            std::env::temp_dir().join(format!("sdn-bench-vpn-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        PrivateDir::create(dir).unwrap()
    }

    #[test]
    fn the_key_files_are_read_before_validation() {
        assert_eq!(key_files(BENCH).unwrap(), [PathBuf::from("bench-vpn.psk")]);
        let vpn = include_str!("../../../topologies/vpn.yaml");
        assert_eq!(
            key_files(vpn).unwrap(),
            [PathBuf::from("branch.psk"), PathBuf::from("east-west.psk")]
        );
        let two = BENCH.replace(
            "psk_file: bench-vpn.psk",
            "psk_file: keys/a.psk\n  - name: again\n    gateway: west-gw\n    peer_gateway: east-gw\n    psk_file: keys/a.psk",
        );
        assert_eq!(key_files(&two).unwrap(), [PathBuf::from("keys/a.psk")]);
        let none = include_str!("../../../topologies/bench-vxlan.yaml");
        assert!(key_files(none).unwrap().is_empty());
        for outside in ["/etc/k.psk", "../k.psk", "keys/../../k.psk"] {
            let text = BENCH.replace("bench-vpn.psk", outside);
            let error = key_files(&text).unwrap_err();
            assert!(error.to_string().contains("relative path below"), "{error}");
        }
    }

    #[test]
    fn the_copy_gets_private_random_keys_and_validates() {
        let dir = scratch("copy");
        let copy = write_copy(BENCH, "bench-vpn.yaml", &dir.0).unwrap();
        let key = dir.0.join("bench-vpn.psk");
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&key).unwrap();
        assert_eq!(text.trim_end().len(), 2 * KEY_BYTES);
        assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(random_key().unwrap(), random_key().unwrap());
        let topology = topology::load(&copy).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(topology.vpn.connections[0].psk_file, key);
        let nested = BENCH.replace("bench-vpn.psk", "keys/bench.psk");
        write_copy(&nested, "nested.yaml", &dir.0).unwrap();
        let keys = dir.0.join("keys");
        assert_eq!(std::fs::metadata(&keys).unwrap().mode() & 0o777, 0o700);
        assert!(keys.join("bench.psk").is_file());
    }

    #[test]
    fn the_plan_goes_from_the_east_host_to_the_west_host_across_two_switches() {
        let dir = scratch("plan");
        let topology =
            topology::load(&write_copy(BENCH, "bench-vpn.yaml", &dir.0).unwrap()).unwrap();
        assert_eq!(
            Plan::of(&topology).unwrap(),
            Plan {
                connection: "east-to-west".into(),
                client: "east1".into(),
                server: "west1".into(),
                server_address: "10.96.1.11".parse().unwrap(),
                switches: ["sw1".into(), "sw2".into()],
                host_mtu: 1400,
                esp: "aes256gcm16".into(),
            }
        );
        // vpn.yaml: its VNet-to-VNet connection, both gateways on sw1.
        let vpn = include_str!("../../../topologies/vpn.yaml");
        let topology = topology::load(&write_copy(vpn, "vpn.yaml", &dir.0).unwrap()).unwrap();
        let plan = Plan::of(&topology).unwrap();
        assert_eq!(
            (plan.client.as_str(), plan.server.as_str()),
            ("east1", "west1")
        );
        assert_eq!(plan.switches, ["sw1", "sw2"].map(|_| "sw1".to_string()));
        assert_eq!(plan.host_mtu, 1500);
        assert_eq!(
            super::super::kind_of(&topology).unwrap(),
            super::super::Kind::Vpn
        );
    }

    #[test]
    fn a_topology_without_a_vnet_to_vnet_connection_is_refused() {
        let dir = scratch("refused");
        let vpn = include_str!("../../../topologies/vpn.yaml");
        let at = vpn.find("  - name: east-to-west").unwrap();
        let branch_only = &vpn[..at];
        let topology =
            topology::load(&write_copy(branch_only, "vpn.yaml", &dir.0).unwrap()).unwrap();
        let error = Plan::of(&topology).unwrap_err();
        assert!(error.to_string().contains("VNet-to-VNet"), "{error}");
    }

    #[test]
    fn the_overlay_lab_is_two_hosts_on_two_hypervisors() {
        let name = overlay_name("benchvpn");
        assert_eq!(name, "benchvpnvx");
        assert!(overlay_name(&"a-".repeat(20)).len() <= 32);
        let overlay = topology::parse(&overlay_text(&name, 1400), Path::new("overlay.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = pick_pair(&overlay).unwrap();
        assert_eq!((pair.client.as_str(), pair.server.as_str()), ("h1", "h2"));
        assert_eq!(
            pair.addresses.server,
            "10.151.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(pair.host_mtu, 1400);
        let tunnel = pair.overlay.expect("across the overlay");
        assert_ne!(tunnel.client_vtep, tunnel.server_vtep);
    }
}
