//! The load-balancer bench: HTTP requests per second (wrk, keep-alive and a
//! new connection per request) and single-stream TCP throughput (iperf3)
//! from an internet host through a public load balancer's frontend to nginx
//! on its backends, balanced and DNATed by the switch; beside it, in the
//! same run, HAProxy in TCP mode between a client and as many backends, and
//! the client straight to one backend. The three paths are up together and
//! take turns for each run of each measure, so that the shared machine's
//! noise falls on all of them.

use super::cpu::{CpuClock, ElsewhereClock};
use super::daemon::Daemon;
use super::lb_report::{self, Measure, PathResults, Series};
use super::proxy_shape::{self, Ports, ProxyShape};
use super::web::{self, Scratch};
use super::{BenchOptions, LabGuard, iperf_pool, wrk};
use crate::lab::{self, UpOptions};
use crate::topology::load_balancer::{
    Algorithm, FrontendKind, LoadBalancingRule, TransportProtocol,
};
use crate::topology::{self, Topology};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rows and labels of the three paths.
const OURS: (&str, &str) = ("vswitchd load balancer", "vswitchd");
const HAPROXY: (&str, &str) = ("HAProxy (TCP mode)", "HAProxy");
const DIRECT: (&str, &str) = ("direct to one backend", "direct");

/// The frontend port of the rule the HTTP load goes through.
pub(super) const HTTP_PORT: u16 = 80;
/// The frontend port of the rule iperf3 goes through.
pub(super) const IPERF_PORT: u16 = 5201;

/// How long the frontend gets to answer from every backend (health probes
/// must find them up first).
const READY_LIMIT: Duration = Duration::from_secs(30);

const HAPROXY_MISSING: &str = "not installed (apt-get install haproxy)";

/// What the bench measures in a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// The load balancer's name.
    balancer: String,
    /// The internet host the load comes from.
    client: String,
    /// The public frontend.
    frontend: Ipv4Addr,
    /// The backends' port for HTTP (the HTTP rule's backend port).
    http_backend_port: u16,
    /// The backends' port for iperf3.
    iperf_backend_port: u16,
    /// The HTTP rule's algorithm.
    algorithm: Algorithm,
    /// The hosts of the pool both rules balance over, in pool order.
    backends: Vec<String>,
}

/// The TCP rule of `rules` on `frontend` and `port`.
fn tcp_rule<'a>(
    rules: &'a [LoadBalancingRule],
    frontend: &str,
    port: u16,
) -> Option<&'a LoadBalancingRule> {
    rules.iter().find(|r| {
        r.frontend == frontend && r.protocol == TransportProtocol::Tcp && r.frontend_port == port
    })
}

impl Plan {
    /// The first load balancer's first public frontend, its TCP rules on
    /// `HTTP_PORT` and `IPERF_PORT` over one pool, and the first internet
    /// host as the client.
    fn of(topology: &Topology) -> Result<Plan> {
        let source = topology.source.display();
        let Some(balancer) = topology.load_balancers.first() else {
            bail!("{source}: the load balancer bench needs a load balancer");
        };
        let Some(frontend) = balancer
            .frontends
            .iter()
            .find(|f| f.kind == FrontendKind::Public)
        else {
            bail!(
                "{source}: load balancer {} needs a public frontend for the bench (internal ones are not balanced yet)",
                balancer.name
            );
        };
        let rule = |port: u16, serves: &str| {
            tcp_rule(&balancer.rules, &frontend.name, port).with_context(|| {
                format!(
                    "{source}: load balancer {} needs a TCP rule on frontend {} port {port} ({serves})",
                    balancer.name, frontend.name
                )
            })
        };
        let http = rule(HTTP_PORT, "nginx serves it")?;
        let iperf = rule(IPERF_PORT, "iperf3 runs through it")?;
        if iperf.pool != http.pool {
            bail!(
                "{source}: rules {} and {} must balance the same pool (the backends run nginx and iperf3)",
                http.name,
                iperf.name
            );
        }
        let pool = balancer
            .pool(&http.pool)
            .with_context(|| format!("{source}: pool {}", http.pool))?;
        let keeps_client = matches!(
            iperf.algorithm,
            Algorithm::SourceIpHash | Algorithm::SourceIpProtocol
        );
        if pool.members.len() > 1 && !keeps_client {
            bail!(
                "{source}: rule {} balances with {}, which may send iperf3's control and data connections to different backends; use source_ip_hash or source_ip_protocol",
                iperf.name,
                iperf.algorithm.name()
            );
        }
        let backends: Vec<String> = pool
            .members
            .iter()
            .map(|m| m.interface.host.clone())
            .collect();
        if backends.iter().collect::<BTreeSet<_>>().len() != backends.len() {
            bail!(
                "{source}: pool {} holds two interfaces of one host; the bench runs one nginx per backend host",
                pool.name
            );
        }
        let Some(client) = topology.internet.hosts.first() else {
            bail!("{source}: the load balancer bench needs an internet host as its client");
        };
        Ok(Plan {
            balancer: balancer.name.clone(),
            client: client.name.clone(),
            frontend: frontend.address,
            http_backend_port: http.backend_port,
            iperf_backend_port: iperf.backend_port,
            algorithm: http.algorithm,
            backends,
        })
    }
}

/// One path as the load sees it.
struct Target {
    /// Where wrk and the iperf3 client run.
    client_ns: String,
    /// What wrk loads.
    http: SocketAddr,
    /// What the iperf3 client connects to.
    iperf: SocketAddr,
    /// Namespaces of the backends iperf3 may reach.
    iperf_backends: Vec<String>,
    /// The iperf3 servers' port.
    iperf_port: u16,
    /// The processes that forward the path (none: the kernel alone).
    forwarders: Vec<u32>,
    /// Every namespace of the bench (of all paths) and the lab's processes
    /// (which may live outside them), to tell the machine's other load from
    /// the bench's.
    bench_namespaces: Vec<String>,
    bench_processes: Vec<u32>,
}

/// Waits until `server` answers GETs from `namespace` from `count`
/// different backends (by their pages).
fn wait_for_backends(namespace: &str, server: SocketAddr, count: usize) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    let mut seen = BTreeSet::new();
    let mut last_error = None;
    while seen.len() < count {
        match web::fetch_page_letter(namespace, server) {
            Ok(letter) => {
                seen.insert(char::from(letter));
            }
            Err(e) => last_error = Some(format!("{e:#}")),
        }
        if Instant::now() >= deadline {
            bail!(
                "http://{server}/ answered from {} of {count} backends within {READY_LIMIT:?} (pages {:?}; last error: {})",
                seen.len(),
                seen,
                last_error.as_deref().unwrap_or("none")
            );
        }
        if seen.len() < count {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Run number `run` (from 0) of `measure` on `target`, added to `series`;
/// a failure becomes a note.
fn measure_once(
    name: &str,
    target: &Target,
    measure: Measure,
    options: &BenchOptions,
    scratch: &Path,
    series: &mut Series,
    run: usize,
) {
    let clock = CpuClock::start(&target.forwarders);
    let elsewhere = ElsewhereClock::start(&target.bench_namespaces, &target.bench_processes);
    let mut detail = String::new();
    let outcome = match measure {
        Measure::KeepAlive | Measure::NewConnection => {
            let reuse = if measure == Measure::KeepAlive {
                wrk::Reuse::KeepAlive
            } else {
                wrk::Reuse::NewConnection
            };
            wrk::run(&target.client_ns, target.http, reuse, options.seconds).map(|report| {
                if let Some(p99) = report.p99_ms {
                    series.p99_ms.push(p99);
                }
                for error in report.errors {
                    series.notes.push(format!("run {}: {error}", run + 1));
                }
                report.requests_per_s
            })
        }
        Measure::Tcp => iperf_pool::tcp_gbps(
            &target.client_ns,
            target.iperf,
            &target.iperf_backends,
            target.iperf_port,
            options.seconds,
            scratch,
        )
        .map(|run| {
            if let Some(count) = run.retransmits {
                series.retransmits.push(count);
                detail = format!(", {count} retransmits");
            }
            run.gbps
        }),
    };
    let cpu = clock.percent_of_core();
    let others = elsewhere.percent_of_core();
    match outcome {
        Ok(value) => {
            series.values.push(value);
            let forwarder = cpu.map_or(String::new(), |c| format!(", forwarder {c:.0}% of a core"));
            if let Some(cpu) = cpu {
                series.forwarder_cpu.push(cpu);
            }
            let others = others.map_or(String::new(), |c| {
                series.elsewhere_cpu.push(c);
                format!(", other processes {c:.0}%")
            });
            let precision = if measure == Measure::Tcp { 2 } else { 0 };
            eprintln!(
                "  {name} run {}: {} {value:.precision$}{detail}{forwarder}{others}",
                run + 1,
                measure.title()
            );
        }
        Err(e) => {
            eprintln!(
                "  {name} run {}: {} failed: {e:#}",
                run + 1,
                measure.title()
            );
            series.notes.push(format!("run {} failed: {e:#}", run + 1));
        }
    }
}

/// Lets the load generator in `namespace` open connection after connection
/// without running out of ports, the same way on every path: wrk often
/// closes first, so its side keeps each connection in TIME_WAIT for a
/// minute, and at thousands of connections per second the default 28,232
/// ports are gone within seconds; `connect` then searches the port range
/// for a free one, wrk's threads spend their time in the kernel, and the
/// rate collapses whatever the path. Reusing ports whose TIME_WAIT is past
/// a second (`tcp_tw_reuse`, safe with TCP timestamps) and the full port
/// range keep the measure about the path.
fn prepare_client(namespace: &str) -> Result<()> {
    sdn_vswitch::netns::run_in(Some(namespace), || {
        std::fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "1")?;
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535")
    })
    .with_context(|| format!("let the client in {namespace} reuse its ports"))
}

/// The one-minute load average, for the record of how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The paths of the peers' shape: HAProxy (if it runs) and direct to the
/// first backend.
fn peer_targets(shape: &ProxyShape, ports: Ports) -> (Option<Target>, Option<Target>) {
    let haproxy = shape.haproxy_pid().map(|pid| Target {
        client_ns: shape.client_ns.clone(),
        http: SocketAddr::from((shape.proxy, ports.http)),
        iperf: SocketAddr::from((shape.proxy, ports.iperf)),
        iperf_backends: shape.backend_ns.clone(),
        iperf_port: ports.iperf,
        forwarders: vec![pid],
        bench_namespaces: Vec::new(),
        bench_processes: Vec::new(),
    });
    let direct = shape.backends.first().map(|first| Target {
        client_ns: shape.client_ns.clone(),
        http: SocketAddr::from((*first, ports.http)),
        iperf: SocketAddr::from((*first, ports.iperf)),
        iperf_backends: shape.backend_ns.iter().take(1).cloned().collect(),
        iperf_port: ports.iperf,
        forwarders: Vec::new(),
        bench_namespaces: Vec::new(),
        bench_processes: Vec::new(),
    });
    (haproxy, direct)
}

/// Builds the peers' shape and checks that HAProxy and the first backend
/// answer; a failure becomes a note on both peers.
fn bring_up_peers(
    prefix: &str,
    plan: &Plan,
    ports: Ports,
    scratch: &Scratch,
    results: &mut [PathResults; 3],
) -> Option<ProxyShape> {
    let with_haproxy = proxy_shape::haproxy_available();
    if !with_haproxy {
        results[1].note_all(HAPROXY_MISSING);
    }
    let up = proxy_shape::build(prefix, plan.backends.len(), ports, scratch, with_haproxy)
        .and_then(|shape| {
            prepare_client(&shape.client_ns)?;
            let first = shape.backends.first().copied().context("a backend")?;
            wait_for_backends(&shape.client_ns, SocketAddr::from((first, ports.http)), 1)?;
            if shape.haproxy_pid().is_some() {
                let proxy = SocketAddr::from((shape.proxy, ports.http));
                wait_for_backends(&shape.client_ns, proxy, plan.backends.len())?;
            }
            Ok(shape)
        });
    match up {
        Ok(shape) => Some(shape),
        Err(e) => {
            let note = format!("could not be set up: {e:#}");
            results[1].note_all(&note);
            results[2].note_all(&note);
            None
        }
    }
}

/// Runs the load-balancer bench on the topology at `file`.
pub(super) async fn run(file: &Path, options: &BenchOptions, as_json: bool) -> Result<()> {
    for (available, tool) in [(wrk::available(), "wrk"), (web::available(), "nginx")] {
        if !available {
            bail!(
                "{tool} is not installed; `apt-get install {tool}` (the load balancer bench needs it)"
            );
        }
    }
    let topology = topology::load(file)?;
    let plan = Plan::of(&topology)?;
    let scratch = Scratch::create(&format!("sdn-bench-lb-{}", std::process::id()))?;
    let logs = scratch.subdir("logs")?;
    let load_before = load_average();
    let mut results = [
        PathResults::new(OURS.0, OURS.1),
        PathResults::new(HAPROXY.0, HAPROXY.1),
        PathResults::new(DIRECT.0, DIRECT.1),
    ];

    eprintln!(
        "bench {}: {} → {} ({}:{HTTP_PORT}, {}) over {}{}",
        topology.name,
        plan.client,
        plan.balancer,
        plan.frontend,
        plan.algorithm.name(),
        plan.backends.join(", "),
        if options.baselines {
            ", beside HAProxy (TCP mode) and direct to one backend"
        } else {
            ""
        }
    );
    let record = lab::up(
        &topology,
        &UpOptions {
            resume: false,
            timeout: Duration::from_secs(60),
        },
    )
    .await
    .with_context(|| format!("bring up the bench lab from {}", file.display()))?;
    let guard = LabGuard(Some(record));
    let forwarders: Vec<u32> = guard
        .0
        .iter()
        .flat_map(|r| &r.processes)
        .filter(|p| p.role == "switch")
        .map(|p| p.pid)
        .collect();
    let mut lab_servers: Vec<Daemon> = Vec::new();
    for (index, host) in plan.backends.iter().enumerate() {
        let dir = scratch.subdir(&format!("lab-{host}"))?;
        let namespace = topology.namespace_of(host);
        lab_servers.push(web::start_nginx(
            &namespace,
            index,
            plan.http_backend_port,
            &dir,
        )?);
    }
    let client_ns = topology.namespace_of(&plan.client);
    prepare_client(&client_ns)?;
    let frontend_http = SocketAddr::from((plan.frontend, HTTP_PORT));
    wait_for_backends(&client_ns, frontend_http, plan.backends.len())
        .context("the load balancer's frontend")?;
    let ours = Target {
        client_ns,
        http: frontend_http,
        iperf: SocketAddr::from((plan.frontend, IPERF_PORT)),
        iperf_backends: plan
            .backends
            .iter()
            .map(|h| topology.namespace_of(h))
            .collect(),
        iperf_port: plan.iperf_backend_port,
        forwarders,
        bench_namespaces: Vec::new(),
        bench_processes: Vec::new(),
    };

    let ports = Ports {
        http: plan.http_backend_port,
        iperf: plan.iperf_backend_port,
    };
    let prefix = format!("{}-p{}", topology.name, std::process::id());
    let peers = if options.baselines {
        bring_up_peers(&prefix, &plan, ports, &scratch, &mut results)
    } else {
        None
    };
    let (haproxy, direct) = match &peers {
        Some(shape) => peer_targets(shape, ports),
        None => (None, None),
    };
    let mut targets = [Some(ours), haproxy, direct];
    let mut bench_namespaces: Vec<String> =
        guard.0.iter().flat_map(|r| r.namespaces.clone()).collect();
    bench_namespaces.extend(peers.iter().flat_map(ProxyShape::namespaces));
    let bench_processes: Vec<u32> = guard
        .0
        .iter()
        .flat_map(|r| &r.processes)
        .map(|p| p.pid)
        .collect();
    for target in targets.iter_mut().flatten() {
        target.bench_namespaces = bench_namespaces.clone();
        target.bench_processes = bench_processes.clone();
    }

    for run in 0..options.runs {
        for measure in Measure::ALL {
            for (target, result) in targets.iter().zip(results.iter_mut()) {
                if let Some(target) = target {
                    let name = result.name;
                    let series = result.series_mut(measure);
                    measure_once(name, target, measure, options, &logs, series, run);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
    drop(peers);
    drop(lab_servers);
    drop(guard);

    let paths: Vec<PathResults> = if options.baselines {
        results.to_vec()
    } else {
        results[..1].to_vec()
    };
    let conditions = json!({
        "wrk": format!("-t{} -c{} -d{}s", wrk::THREADS, wrk::CONNECTIONS, options.seconds),
        "http_algorithm": plan.algorithm.name(),
        "haproxy_balance": "roundrobin (HTTP), source (iperf3)",
        "backends": plan.backends.len(),
        "page_bytes": web::PAGE_BYTES,
        "client_sysctls": "net.ipv4.tcp_tw_reuse=1, net.ipv4.ip_local_port_range=1024 65535",
        "load_average_before": load_before,
        "load_average_after": load_average(),
    });
    let goals = lb_report::goals(HAPROXY.1, DIRECT.1);
    lb_report::report(
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

    const BENCH: &str = include_str!("../../../topologies/bench-lb.yaml");

    fn parse(text: &str) -> Result<Topology> {
        Ok(topology::parse(text, Path::new("bench-lb.yaml"))?)
    }

    #[test]
    fn the_plan_loads_the_frontend_over_both_web_servers() {
        let plan = Plan::of(&parse(BENCH).unwrap()).unwrap();
        assert_eq!(
            plan,
            Plan {
                balancer: "web-lb".into(),
                client: "client".into(),
                frontend: Ipv4Addr::new(203, 0, 113, 81),
                http_backend_port: 80,
                iperf_backend_port: 5201,
                algorithm: Algorithm::RoundRobin,
                backends: vec!["web1".into(), "web2".into()],
            }
        );
    }

    #[test]
    fn a_topology_the_bench_cannot_load_is_refused_with_the_reason() {
        let no_iperf = BENCH.replace("frontend_port: 5201", "frontend_port: 5301");
        let error = Plan::of(&parse(&no_iperf).unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("TCP rule on frontend public port 5201"),
            "{error}"
        );

        let split = BENCH.replace(
            "backend_port: 5201, pool: web, algorithm: source_ip_hash",
            "backend_port: 5201, pool: web, algorithm: round_robin",
        );
        let error = Plan::of(&parse(&split).unwrap()).unwrap_err();
        assert!(
            error.to_string().contains("control and data connections"),
            "{error}"
        );

        let mut no_client = parse(BENCH).unwrap();
        no_client.internet.hosts.clear();
        let error = Plan::of(&no_client).unwrap_err();
        assert!(error.to_string().contains("internet host"), "{error}");
    }
}
