//! The load-balancer bench's peers, in one shape built from namespaces: the
//! client and the backends (nginx) on a Linux bridge in a middle namespace,
//! which also runs HAProxy in TCP mode (round robin for HTTP, source
//! hashing for iperf3, whose two connections must reach one server).
//! HAProxy is measured on its own address, the direct baseline on the first
//! backend's. Addresses are the reference measurement's: 10.86.0.0/24, the
//! proxy on .1, the client on .10, backends from .11. Everything is removed
//! when the shape is dropped.

use super::baseline::{Shape, bridge_of, host, veth};
use super::daemon::Daemon;
use super::web::{self, Scratch};
use crate::lab::netlink::{self, Netlink};
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The proxy's address on the bridge.
const PROXY: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 1);
/// The client's address.
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 86, 0, 10);
/// Prefix length of the shape's subnet.
const PREFIX_LEN: u8 = 24;
/// The bridge in the middle namespace.
const BRIDGE: &str = "br0";
/// Most backends the shape numbers (from .11 up).
const MAX_BACKENDS: usize = 100;

/// What HAProxy hears on, and what the backends serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ports {
    /// nginx's port (and HAProxy's HTTP port).
    pub(super) http: u16,
    /// iperf3's port (and HAProxy's TCP port).
    pub(super) iperf: u16,
}

/// Whether HAProxy is installed.
pub(super) fn haproxy_available() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Backend number `index`'s address (from 0).
fn backend_address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 86, 0, 11 + (index % MAX_BACKENDS) as u8)
}

/// The peers' shape, up.
pub(super) struct ProxyShape {
    // Servers come first: they stop before their namespaces go.
    haproxy: Option<Daemon>,
    _web: Vec<Daemon>,
    _shape: Shape,
    /// The middle namespace (bridge and HAProxy).
    pub(super) middle_ns: String,
    /// The client's namespace.
    pub(super) client_ns: String,
    /// The backends' namespaces.
    pub(super) backend_ns: Vec<String>,
    /// HAProxy's address.
    pub(super) proxy: Ipv4Addr,
    /// The backends' addresses.
    pub(super) backends: Vec<Ipv4Addr>,
}

impl ProxyShape {
    /// Every namespace of the shape.
    pub(super) fn namespaces(&self) -> Vec<String> {
        let mut all = vec![self.middle_ns.clone(), self.client_ns.clone()];
        all.extend(self.backend_ns.iter().cloned());
        all
    }

    /// HAProxy's process id, while it runs.
    pub(super) fn haproxy_pid(&self) -> Option<u32> {
        self.haproxy.as_ref().map(Daemon::pid)
    }
}

/// HAProxy's configuration: TCP mode, HTTP round robin over `backends` and
/// iperf3 by source address, both on `proxy`.
pub(super) fn haproxy_config(proxy: Ipv4Addr, backends: &[Ipv4Addr], ports: Ports) -> String {
    let servers = |port: u16| -> String {
        backends
            .iter()
            .enumerate()
            .map(|(i, address)| format!("  server b{} {address}:{port}\n", i + 1))
            .collect()
    };
    format!(
        "global
  maxconn 8192
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend http
  bind {proxy}:{http}
  default_backend web
backend web
  balance roundrobin
{web}frontend iperf3
  bind {proxy}:{iperf}
  default_backend iperf3
backend iperf3
  balance source
{iperf3}",
        http = ports.http,
        iperf = ports.iperf,
        web = servers(ports.http),
        iperf3 = servers(ports.iperf),
    )
}

/// Builds the shape with `count` backends in namespaces `<prefix>-…`, its
/// files under `scratch`, and starts nginx on every backend and, if
/// `with_haproxy`, HAProxy in the middle; returns once all listen.
pub(super) fn build(
    prefix: &str,
    count: usize,
    ports: Ports,
    scratch: &Scratch,
    with_haproxy: bool,
) -> Result<ProxyShape> {
    if count == 0 || count > MAX_BACKENDS {
        bail!("the proxy shape takes 1 to {MAX_BACKENDS} backends, not {count}");
    }
    let mut shape = Shape::new(PROXY.into(), None);
    let middle = shape.namespace(format!("{prefix}-proxy"))?;
    let client_ns = shape.namespace(format!("{prefix}-client"))?;
    veth(&client_ns, "eth0", Some(&middle), "c0", None)?;
    let mut backend_ns = Vec::new();
    for index in 0..count {
        let namespace = shape.namespace(format!("{prefix}-web{}", index + 1))?;
        veth(
            &namespace,
            "eth0",
            Some(&middle),
            &format!("b{index}"),
            None,
        )?;
        backend_ns.push(namespace);
    }
    let mut ports_of_bridge = vec!["c0".to_string()];
    ports_of_bridge.extend((0..count).map(|i| format!("b{i}")));
    sdn_vswitch::netns::run_in(Some(&middle), || {
        let names: Vec<&str> = ports_of_bridge.iter().map(String::as_str).collect();
        bridge_of(BRIDGE, &names)?;
        let mut nl = Netlink::open()?;
        nl.set_up(netlink::index_of("lo")?)?;
        nl.add_address(netlink::index_of(BRIDGE)?, PROXY.into(), PREFIX_LEN)
    })
    .with_context(|| format!("set up the bridge in {middle}"))?;
    host(&client_ns, CLIENT.into(), PREFIX_LEN)?;
    let backends: Vec<Ipv4Addr> = (0..count).map(backend_address).collect();
    for (namespace, address) in backend_ns.iter().zip(&backends) {
        host(namespace, (*address).into(), PREFIX_LEN)?;
    }

    let mut web = Vec::new();
    for (index, namespace) in backend_ns.iter().enumerate() {
        let dir = scratch.subdir(&format!("peer-web{}", index + 1))?;
        web.push(web::start_nginx(namespace, index, ports.http, &dir)?);
    }
    let haproxy = if with_haproxy {
        let dir = scratch.subdir("haproxy")?;
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(PROXY, &backends, ports))?;
        let config = config.display().to_string();
        let mut haproxy = Daemon::start(
            &format!("HAProxy on {middle}"),
            &middle,
            "haproxy",
            &["-f", &config, "-db"],
            &dir.join("haproxy.log"),
        )?;
        for port in [ports.http, ports.iperf] {
            haproxy.wait_listening(&middle, port, Duration::from_secs(10))?;
        }
        Some(haproxy)
    } else {
        None
    };
    Ok(ProxyShape {
        haproxy,
        _web: web,
        _shape: shape,
        middle_ns: middle,
        client_ns,
        backend_ns,
        proxy: PROXY,
        backends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_balances_http_in_turn_and_keeps_iperf3_on_one_backend() {
        let backends = [backend_address(0), backend_address(1)];
        let config = haproxy_config(
            PROXY,
            &backends,
            Ports {
                http: 80,
                iperf: 5201,
            },
        );
        assert!(config.contains("defaults\n  mode tcp\n"));
        assert!(config.contains(
            "frontend http\n  bind 10.86.0.1:80\n  default_backend web\nbackend web\n  balance roundrobin\n  server b1 10.86.0.11:80\n  server b2 10.86.0.12:80\n"
        ));
        assert!(config.contains(
            "bind 10.86.0.1:5201\n  default_backend iperf3\nbackend iperf3\n  balance source\n  server b1 10.86.0.11:5201\n  server b2 10.86.0.12:5201\n"
        ));
        // HTTP mode would parse and rewrite requests: the peer is a TCP proxy.
        assert!(!config.contains("mode http"));
    }
}
