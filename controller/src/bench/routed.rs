//! The routed bench: the topology's first two hosts, in different subnets of
//! one network, routed by their switch; the same hosts switched in one
//! subnet (a derived lab with the receiving host moved into the sender's
//! subnet, everything else as written); and the same hosts joined by a Linux
//! router. Then new TCP connections per second from the sending host to an
//! internet host through the lab's NAT gateway, beside nftables masquerade.
//! The kernel's peers are up while the lab as written is, and their runs
//! alternate with its runs, so that noise hits both; the switched lab
//! follows at once.

use super::connect::{CONNECT_PORT, ConnResult};
use super::pair::bench_hosts;
use super::router::{self, NatAddresses, RoutedEnd};
use super::{
    BenchOptions, LabGuard, PathResult, cell, heading, machine, measure, measure_once, median, nft,
    path_rows, print_path_table, ratio,
};
use crate::lab::{self, UpOptions};
use crate::topology::{self, Host, Topology};
use anyhow::{Context, Result};
use ipnet::IpNet;
use serde_json::json;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Row names.
const ROUTED: &str = "vswitchd routed";
const SWITCHED: &str = "vswitchd switched";
const LINUX_ROUTER: &str = "Linux router";
const NAT_OURS: &str = "vswitchd NAT gateway";
const NAT_KERNEL: &str = "nftables masquerade";

/// What the routed bench measures in a topology.
#[derive(Debug)]
struct Plan {
    /// The sending host.
    client: String,
    /// The receiving host.
    server: String,
    /// Both hosts on their links to a router, or why they are not routed.
    routed: Result<(RoutedEnd, RoutedEnd), String>,
    /// Connections through the NAT gateway, or why there are none.
    nat: Result<NatPath, String>,
}

/// Connections from the sending host to the internet through a NAT gateway.
#[derive(Debug)]
struct NatPath {
    /// The internet host connected to.
    server_host: String,
    /// The client, the NAT gateway's address and the internet host's.
    addresses: NatAddresses,
}

/// A host's first interface as the end of a routed link: its IPv4 address
/// and its subnet's gateway.
fn routed_end(topology: &Topology, host: &Host) -> Result<RoutedEnd, String> {
    let iface = &host.interfaces[0];
    let IpAddr::V4(address) = iface.address else {
        return Err(format!("{}:{} has no IPv4 address", host.name, iface.name));
    };
    let gateway = topology
        .subnet(&iface.network, &iface.subnet)
        .and_then(|s| s.gateway)
        .ok_or_else(|| format!("subnet {}/{} has no gateway", iface.network, iface.subnet))?;
    Ok(RoutedEnd {
        address,
        prefix_len: iface.prefix_len,
        gateway,
    })
}

/// The sending host's connections to the first internet host, when a NAT
/// gateway translates them.
fn nat_path(topology: &Topology, client: &Host) -> Result<NatPath, String> {
    let iface = &client.interfaces[0];
    if topology
        .internet
        .public_ip_of(&client.name, &iface.name)
        .is_some()
    {
        return Err(format!(
            "{}:{} has a public IP: its connections leave without the NAT gateway",
            client.name, iface.name
        ));
    }
    let gateway = topology
        .internet
        .nat_gateway_of(&iface.network, &iface.subnet)
        .ok_or_else(|| {
            format!(
                "no NAT gateway serves {}'s subnet {}/{}",
                client.name, iface.network, iface.subnet
            )
        })?;
    let server = topology
        .internet
        .hosts
        .first()
        .ok_or("the topology has no internet host to connect to")?;
    Ok(NatPath {
        server_host: server.name.clone(),
        addresses: NatAddresses {
            client: routed_end(topology, client)?,
            public: gateway.address,
            server: server.address,
        },
    })
}

impl Plan {
    fn of(topology: &Topology) -> Result<Plan> {
        let (client, server) = bench_hosts(topology)?;
        let (c, s) = (&client.interfaces[0], &server.interfaces[0]);
        let routed = if (&c.network, &c.subnet) == (&s.network, &s.subnet) {
            Err(format!(
                "{} and {} share subnet {}/{}: nothing is routed",
                client.name, server.name, c.network, c.subnet
            ))
        } else {
            routed_end(topology, client).and_then(|a| Ok((a, routed_end(topology, server)?)))
        };
        Ok(Plan {
            client: client.name.clone(),
            server: server.name.clone(),
            routed,
            nat: nat_path(topology, client),
        })
    }
}

/// An address of `cidr` no host interface has and that is not `gateway`:
/// `like`'s host number in `cidr` if that is free, else the first free one.
fn free_address(
    topology: &Topology,
    cidr: &IpNet,
    gateway: Option<Ipv4Addr>,
    like: IpAddr,
) -> Option<IpAddr> {
    let (IpNet::V4(net), IpAddr::V4(like)) = (cidr, like) else {
        return None;
    };
    let used: HashSet<IpAddr> = topology
        .hosts
        .iter()
        .flat_map(|h| &h.interfaces)
        .map(|i| i.address)
        .chain(gateway.map(IpAddr::V4))
        .collect();
    let same_number =
        Ipv4Addr::from(u32::from(net.network()) | (u32::from(like) & u32::from(net.hostmask())));
    let usable =
        |a: &Ipv4Addr| net.prefix_len() >= 31 || (*a != net.network() && *a != net.broadcast());
    std::iter::once(same_number)
        .filter(usable)
        .chain(net.hosts())
        .map(IpAddr::V4)
        .find(|a| !used.contains(a))
}

/// The topology's text with the receiving host's first interface moved
/// into the sending host's subnet, and everything else as written.
fn switched_text(text: &str, topology: &Topology) -> Result<String> {
    let (client, server) = bench_hosts(topology)?;
    let (c, s) = (&client.interfaces[0], &server.interfaces[0]);
    let subnet = topology
        .subnet(&c.network, &c.subnet)
        .context("the sending host's subnet")?;
    let address =
        free_address(topology, &subnet.cidr, subnet.gateway, s.address).with_context(|| {
            format!(
                "subnet {}/{} has no free address for {}",
                c.network, c.subnet, server.name
            )
        })?;
    Ok(topology::edit::move_interface(
        text,
        &topology.source,
        &server.name,
        &s.name,
        &format!("{}/{}", c.network, c.subnet),
        &format!("{address}/{}", subnet.cidr.prefix_len()),
    )?)
}

fn path(name: &str) -> PathResult {
    PathResult {
        name: name.into(),
        ..PathResult::default()
    }
}

/// The address iperf3 connects to: the receiving host's first interface's.
fn server_address(topology: &Topology, server: &str) -> Result<IpAddr> {
    Ok(topology
        .host(server)
        .and_then(|h| h.interfaces.first())
        .context("the receiving host")?
        .address)
}

async fn up(topology: &Topology) -> Result<LabGuard> {
    let record = lab::up(
        topology,
        &UpOptions {
            resume: false,
            timeout: Duration::from_secs(60),
        },
    )
    .await
    .with_context(|| format!("bring up the bench lab from {}", topology.source.display()))?;
    let guard = LabGuard(Some(record));
    // Let the switch resolve both hosts before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(guard)
}

/// Runs the routed bench on the topology at `path`.
pub(super) async fn run(file: &Path, options: &BenchOptions, as_json: bool) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let topology = topology::load(file)?;
    let plan = Plan::of(&topology)?;
    let prefix = format!("{}-bl", topology.name);
    let (mut routed, mut switched, mut linux) = (path(ROUTED), path(SWITCHED), path(LINUX_ROUTER));
    let (mut nat_ours, mut nat_kernel) = (ConnResult::new(NAT_OURS), ConnResult::new(NAT_KERNEL));
    if let Err(reason) = &plan.routed {
        routed.note = Some(reason.clone());
        linux.note = Some(reason.clone());
    }
    if let Err(reason) = &plan.nat {
        nat_ours.note = Some(reason.clone());
        nat_kernel.note = Some(reason.clone());
    }

    // The lab as written, with the kernel's peers up beside it.
    eprintln!(
        "bench {}: {} → {} through vswitchd ({}){}",
        topology.name,
        plan.client,
        plan.server,
        if plan.routed.is_ok() {
            "routed"
        } else {
            "switched"
        },
        if options.baselines {
            ", beside a Linux router and nftables masquerade"
        } else {
            ""
        }
    );
    let guard = up(&topology).await?;
    let linux_shape = match (&plan.routed, options.baselines) {
        (Ok((client, server)), true) => router::linux_router(&prefix, *client, *server)
            .map_err(|e| linux.note = Some(format!("could not be set up: {e:#}")))
            .ok(),
        _ => None,
    };
    let masquerade = match (&plan.nat, options.baselines) {
        (Ok(_), true) if !nft::available() => {
            nat_kernel.note = Some("nft is not installed (apt-get install nftables)".into());
            None
        }
        (Ok(nat), true) => router::nftables_masquerade(&prefix, nat.addresses)
            .map_err(|e| nat_kernel.note = Some(format!("could not be set up: {e:#}")))
            .ok(),
        _ => None,
    };
    let client_ns = topology.namespace_of(&plan.client);
    let server_ns = topology.namespace_of(&plan.server);
    let server = server_address(&topology, &plan.server)?;
    let as_written = if plan.routed.is_ok() {
        &mut routed
    } else {
        &mut switched
    };
    for run in 0..options.runs {
        measure_once(as_written, &client_ns, &server_ns, server, options, run);
        if let Some(shape) = &linux_shape {
            let (client, server) = (&shape.client_ns, &shape.server_ns);
            measure_once(&mut linux, client, server, shape.server_addr, options, run);
        }
        if let Ok(nat) = &plan.nat {
            nat_ours.measure_once(
                &topology.namespace_of(&nat.server_host),
                &client_ns,
                SocketAddr::new(nat.addresses.server.into(), CONNECT_PORT),
                options.seconds,
                run,
            );
        }
        if let Some(shape) = &masquerade {
            nat_kernel.measure_once(
                &shape.server_ns,
                &shape.client_ns,
                SocketAddr::new(shape.server_addr, CONNECT_PORT),
                options.seconds,
                run,
            );
        }
    }
    drop(linux_shape);
    drop(masquerade);
    drop(guard);

    // The same hosts in one subnet, right after.
    if plan.routed.is_ok() {
        let scratch = std::env::temp_dir().join(format!("sdn-bench-routed-{}", std::process::id()));
        let measured = measure_switched(&text, &topology, &scratch, &mut switched, options).await;
        if let Err(e) = measured {
            switched.note = Some(format!("could not be set up: {e:#}"));
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }

    let mut paths = vec![routed, switched];
    let mut nat = vec![nat_ours];
    if options.baselines {
        paths.push(linux);
        nat.push(nat_kernel);
    }
    report(&topology.name, options, &paths, &nat, as_json)
}

/// Brings up the switched lab (its file in `scratch`, which the lab's
/// controller reads) and measures it.
async fn measure_switched(
    text: &str,
    topology: &Topology,
    scratch: &Path,
    result: &mut PathResult,
    options: &BenchOptions,
) -> Result<()> {
    std::fs::create_dir_all(scratch).with_context(|| format!("create {}", scratch.display()))?;
    let file = scratch.join("switched.yaml");
    std::fs::write(&file, switched_text(text, topology)?)?;
    let switched = topology::load(&file)?;
    let (client, server) = bench_hosts(&switched)?;
    let (client, server) = (client.name.clone(), server.name.clone());
    eprintln!(
        "bench {}: {client} → {server} through vswitchd, {server} moved into {client}'s subnet",
        switched.name
    );
    let guard = up(&switched).await?;
    measure(
        result,
        &switched.namespace_of(&client),
        &switched.namespace_of(&server),
        server_address(&switched, &server)?,
        options,
    );
    drop(guard);
    Ok(())
}

fn report(
    name: &str,
    options: &BenchOptions,
    paths: &[PathResult],
    nat: &[ConnResult],
    as_json: bool,
) -> Result<()> {
    let bases: Vec<(&str, &PathResult)> = [("switched", SWITCHED), ("Linux router", LINUX_ROUTER)]
        .into_iter()
        .filter_map(|(label, row)| Some((label, paths.iter().find(|p| p.name == row)?)))
        .collect();
    let rows = path_rows(paths, &bases);
    let nat_rows: Vec<serde_json::Value> = nat
        .iter()
        .map(|r| {
            let conns = median(&r.rates);
            let other = nat
                .iter()
                .find(|o| o.name != r.name)
                .and_then(|o| median(&o.rates));
            json!({
                "path": r.name,
                "new_conns_per_s": conns,
                "new_conns_per_s_runs": r.rates,
                "vs_other": { "conns": ratio(conns, other) },
                "note": r.note,
            })
        })
        .collect();
    if as_json {
        let value = json!({
            "topology": name,
            "machine": machine(),
            "seconds": options.seconds,
            "runs": options.runs,
            "tool": "iperf3, single TCP stream; UDP 64-byte payloads, sender unthrottled; \
                     udp64_pps counts frames reaching the receiving interface, udp64_app_pps what iperf3 read; \
                     vs holds ratios to the switched path and the Linux router; \
                     nat: new TCP connections per second (connect and reset, several clients) to an internet host, \
                     vs_other: vswitchd's NAT gateway against nftables masquerade, or back",
            "paths": rows,
            "nat": nat_rows,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{}", heading(&format!("{name} (routed):"), options));
    let labels: Vec<&str> = bases.iter().map(|(label, _)| *label).collect();
    print_path_table(&labels, &rows);
    println!();
    println!("| path | new conn/s | vs other |");
    println!("|{}", " --- |".repeat(3));
    for row in &nat_rows {
        println!(
            "| {} | {} | {} |",
            row["path"].as_str().unwrap_or("?"),
            cell(&row["new_conns_per_s"], 0, ""),
            cell(&row["vs_other"]["conns"], 2, "x")
        );
        if let Some(note) = row["note"].as_str() {
            println!("|   ({note}) | |");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH: &str = include_str!("../../../topologies/bench-routed.yaml");

    fn parse(text: &str) -> Topology {
        topology::parse(text, Path::new("bench-routed.yaml")).expect("topology is valid")
    }

    #[test]
    fn the_switched_lab_moves_h2_into_h1s_subnet_and_nothing_else() {
        let original = parse(BENCH);
        let switched_text = switched_text(BENCH, &original).unwrap();
        let mut switched = parse(&switched_text);
        let h2 = &switched.host("h2").unwrap().interfaces[0];
        assert_eq!((h2.network.as_str(), h2.subnet.as_str()), ("net", "a"));
        assert_eq!(h2.address, "10.79.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(h2.prefix_len, 24);
        // Put h2 back: the rest is the lab as written.
        let before = original.host("h2").unwrap().interfaces[0].clone();
        let h2 = &mut switched
            .hosts
            .iter_mut()
            .find(|h| h.name == "h2")
            .unwrap()
            .interfaces[0];
        h2.subnet = before.subnet.clone();
        h2.address = before.address;
        assert_eq!(switched, original);
        // And the file differs in those two values only.
        assert_eq!(
            switched_text,
            BENCH.replace(
                "subnet: net/b, address: 10.79.2.2/24",
                "subnet: net/a, address: 10.79.1.2/24"
            )
        );
    }

    #[test]
    fn the_moved_host_takes_a_free_address_off_the_gateway() {
        // h2's number (2) is h1's in subnet a: take the first free one,
        // past the gateway (.1) and h1 (.2).
        let text = BENCH.replace("10.79.1.3/24", "10.79.1.2/24");
        let switched = parse(&switched_text(&text, &parse(&text)).unwrap());
        let h2 = &switched.host("h2").unwrap().interfaces[0];
        assert_eq!(h2.address, "10.79.1.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_plan_routes_between_gateways_and_nats_to_the_internet_host() {
        let plan = Plan::of(&parse(BENCH)).unwrap();
        assert_eq!((plan.client.as_str(), plan.server.as_str()), ("h1", "h2"));
        let (client, server) = plan.routed.unwrap();
        assert_eq!(
            client,
            RoutedEnd {
                address: Ipv4Addr::new(10, 79, 1, 3),
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 79, 1, 1),
            }
        );
        assert_eq!(server.gateway, Ipv4Addr::new(10, 79, 2, 1));
        let nat = plan.nat.unwrap();
        assert_eq!(nat.server_host, "server");
        assert_eq!(nat.addresses.public, Ipv4Addr::new(203, 0, 113, 20));
        assert_eq!(nat.addresses.server, Ipv4Addr::new(203, 0, 113, 79));
        assert_eq!(nat.addresses.client, client);

        // routing.yaml: web1 and app1 are routed; web1 has a public IP.
        let routing = crate::topology::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/routing.yaml"),
        )
        .unwrap();
        let plan = Plan::of(&routing).unwrap();
        assert!(plan.routed.is_ok());
        assert!(plan.nat.unwrap_err().contains("public IP"));

        // The switched lab shares a subnet: nothing routed, NAT still there.
        let switched = parse(&switched_text(BENCH, &parse(BENCH)).unwrap());
        let plan = Plan::of(&switched).unwrap();
        assert!(plan.routed.unwrap_err().contains("share subnet net/a"));
        assert!(plan.nat.is_ok());
    }
}
