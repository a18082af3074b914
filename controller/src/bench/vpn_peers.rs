//! The peers of the VPN bench, in the shape of its lab: two gateway
//! namespaces joined by an underlay veth, a host behind each on a veth of
//! its own, each gateway forwarding its host's traffic into the tunnel.
//! - strongSwan: charon with kernel-libipsec (ESP in userspace on a TUN
//!   device, in UDP 4500), IKEv2 with a pre-shared key, AES-256-GCM-16,
//!   PRF-HMAC-SHA256 and Curve25519, as the peers' `strongswan.sh` sets it
//!   up; each charon in a mount namespace of its own with a private `/run`
//!   (its pid file and vici socket are fixed paths there).
//! - boringtun: userspace WireGuard (`boringtun-cli`, configured with `wg`)
//!   on a TUN device in each gateway namespace, as the peers'
//!   `boringtun.sh` runs it (there the hosts themselves hold the tunnel).
//!
//! Every peer removes itself when dropped: its daemons are stopped, then
//! the namespaces deleted.

use super::baseline::{Shape, host, veth};
use super::daemon::output_within;
use super::iperf::command_in;
use crate::lab::netlink::{self, Netlink};
use crate::lab::private;
use crate::lab::process::{self, Launch, ProcessRecord};
use crate::lab::strongswan;
use anyhow::{Context, Result, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// MTU of the underlay between the two gateways.
const UNDERLAY_MTU: u32 = 1500;

/// How long a peer's tunnel gets to carry a first ping.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// How long a daemon gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// charon's plugins, as the peers' script loads them.
const CHARON_PLUGINS: &str = "random nonce aesni aes sha1 sha2 hmac gcm chapoly curve25519 openssl kdf kernel-libipsec kernel-netlink socket-default vici updown";

/// WireGuard's UDP port at both ends.
const WIREGUARD_PORT: u16 = 51820;

/// MTU of the WireGuard devices (the peers' script's).
const WIREGUARD_MTU: u32 = 1420;

/// Where userspace WireGuard opens its control socket, `<name>.sock`.
const WIREGUARD_SOCKETS: &str = "/var/run/wireguard";

/// What to install for boringtun.
pub(super) const BORINGTUN_MISSING: &str = "not installed (cargo install boringtun-cli)";

/// What to install for `wg`.
pub(super) const WG_MISSING: &str =
    "not measured: boringtun needs wg to be configured (apt-get install wireguard-tools)";

/// The addresses of one peer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Addressing {
    /// Each gateway's underlay address, on a /24.
    underlay: [Ipv4Addr; 2],
    /// The /24 behind each gateway: the gateway is `.1`, its host `.2`.
    lans: [Ipv4Addr; 2],
}

const STRONGSWAN: Addressing = Addressing {
    underlay: [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)],
    lans: [Ipv4Addr::new(10, 81, 0, 0), Ipv4Addr::new(10, 82, 0, 0)],
};

const BORINGTUN: Addressing = Addressing {
    underlay: [Ipv4Addr::new(10, 84, 0, 1), Ipv4Addr::new(10, 84, 0, 2)],
    lans: [Ipv4Addr::new(10, 86, 0, 0), Ipv4Addr::new(10, 87, 0, 0)],
};

/// The tunnel addresses of the WireGuard devices, on a /24.
const WIREGUARD_ADDRESSES: [Ipv4Addr; 2] =
    [Ipv4Addr::new(10, 85, 0, 1), Ipv4Addr::new(10, 85, 0, 2)];

/// Address number `n` of the /24 at `lan`.
fn in_lan(lan: Ipv4Addr, n: u8) -> Ipv4Addr {
    let [a, b, c, _] = lan.octets();
    Ipv4Addr::new(a, b, c, n)
}

/// A peer's shape, its daemons and the files they leave.
pub(super) struct PeerShape {
    /// The hosts iperf3 runs between (removes the namespaces when dropped).
    pub(super) shape: Shape,
    /// The gateway namespaces.
    gateways: [String; 2],
    /// The processes that forward the path, stopped before the namespaces go.
    daemons: Vec<ProcessRecord>,
    /// Files outside the shape's directories its daemons make.
    leftovers: Vec<PathBuf>,
}

impl PeerShape {
    /// The processes that forward the path.
    pub(super) fn forwarders(&self) -> Vec<u32> {
        self.daemons.iter().map(|d| d.pid).collect()
    }

    /// Every namespace of the shape.
    pub(super) fn namespaces(&self) -> Vec<String> {
        let mut all = vec![self.shape.client_ns.clone(), self.shape.server_ns.clone()];
        all.extend(self.gateways.iter().cloned());
        all
    }
}

impl Drop for PeerShape {
    fn drop(&mut self) {
        for daemon in &self.daemons {
            daemon.stop(STOP_GRACE);
        }
        for file in &self.leftovers {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Two hosts behind two gateways: `<prefix>-<tag>h1` and `…h2` behind
/// `<prefix>-<tag>g1` and `…g2`, whose `ul` devices share the underlay and
/// whose `lan` devices face their hosts (MTU `host_mtu`). The gateways
/// forward; the hosts route everything through them.
fn gateway_shape(
    prefix: &str,
    tag: &str,
    addressing: Addressing,
    host_mtu: u32,
) -> Result<(Shape, [String; 2])> {
    let server = in_lan(addressing.lans[1], 2);
    let mut shape = Shape::new(IpAddr::V4(server), None);
    let (h1, h2) = shape.hosts(prefix, tag)?;
    let g1 = shape.namespace(format!("{prefix}-{tag}g1"))?;
    let g2 = shape.namespace(format!("{prefix}-{tag}g2"))?;
    veth(&g1, "ul", Some(&g2), "ul", Some(UNDERLAY_MTU))?;
    let sides = [(&h1, &g1), (&h2, &g2)];
    for (index, (host_ns, gateway_ns)) in sides.into_iter().enumerate() {
        veth(host_ns, "eth0", Some(gateway_ns), "lan", Some(host_mtu))?;
        let lan = addressing.lans[index];
        let underlay = addressing.underlay[index];
        sdn_vswitch::netns::run_in(Some(gateway_ns.as_str()), || {
            let mut nl = Netlink::open()?;
            nl.set_up(netlink::index_of("lo")?)?;
            let ul = netlink::index_of("ul")?;
            nl.add_address(ul, underlay.into(), 24)?;
            nl.set_up(ul)?;
            let lan_device = netlink::index_of("lan")?;
            nl.add_address(lan_device, in_lan(lan, 1).into(), 24)?;
            nl.set_up(lan_device)?;
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        })
        .with_context(|| format!("set up gateway namespace {gateway_ns}"))?;
        host(host_ns, in_lan(lan, 2).into(), 24)?;
        sdn_vswitch::netns::run_in(Some(host_ns.as_str()), || {
            let eth0 = netlink::index_of("eth0")?;
            Netlink::open()?.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(in_lan(lan, 1)), eth0, false)
        })
        .with_context(|| format!("route host namespace {host_ns} through its gateway"))?;
    }
    shape.client_ns = h1;
    shape.server_ns = h2;
    Ok((shape, [g1, g2]))
}

/// Waits until the client host of `shape` reaches its server host.
fn wait_for_tunnel(shape: &Shape, what: &str) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    let server = shape.server_addr.to_string();
    loop {
        let reached = command_in(&shape.client_ns, "ping")?
            .args(["-c", "1", "-W", "1", &server])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if reached {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} cannot reach {server} through {what} within {READY_LIMIT:?}",
                shape.client_ns
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// strongswan.conf of a bench charon (its `/run` is its directory).
fn strongswan_conf() -> String {
    format!(
        "# charon of the VPN bench's strongSwan peer.
charon {{
  load = {CHARON_PLUGINS}
  filelog {{
    stderr {{
      default = 1
    }}
  }}
  plugins {{
    vici {{
      socket = unix:///run/charon.vici
    }}
  }}
  install_routes = yes
  port = 500
  port_nat_t = 4500
}}
"
    )
}

/// swanctl.conf of one end: a connection `s2s` from `local` to `remote`
/// with one child SA `net` between the two LANs, and its key (`key`, hex).
fn swanctl_conf(
    local: Ipv4Addr,
    remote: Ipv4Addr,
    local_lan: Ipv4Addr,
    remote_lan: Ipv4Addr,
    key: &str,
) -> String {
    format!(
        "connections {{
  s2s {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    encap = yes
    proposals = aes256gcm16-prfsha256-x25519
    local {{
      auth = psk
      id = {local}
    }}
    remote {{
      auth = psk
      id = {remote}
    }}
    children {{
      net {{
        local_ts = {local_lan}/24
        remote_ts = {remote_lan}/24
        esp_proposals = aes256gcm16
        start_action = trap
      }}
    }}
  }}
}}
secrets {{
  ike-1 {{
    id-1 = {local}
    id-2 = {remote}
    secret = 0x{key}
  }}
}}
"
    )
}

/// Whether strongSwan's charon and swanctl are installed.
pub(super) fn strongswan_available() -> bool {
    strongswan::require_installed().is_ok()
}

/// Two charons with kernel-libipsec between two gateway namespaces, a
/// host behind each; their files in `dir`, which must not exist yet.
pub(super) fn strongswan(prefix: &str, host_mtu: u32, dir: &Path, key: &str) -> Result<PeerShape> {
    let swanctl = strongswan::require_installed()?;
    let (shape, gateways) = gateway_shape(prefix, "s", STRONGSWAN, host_mtu)?;
    let mut peer = PeerShape {
        shape,
        gateways,
        daemons: Vec::new(),
        leftovers: Vec::new(),
    };
    let [a, b] = STRONGSWAN.underlay;
    let [lan_a, lan_b] = STRONGSWAN.lans;
    let ends = [("a", a, b, lan_a, lan_b), ("b", b, a, lan_b, lan_a)];
    for (index, (side, local, remote, local_lan, remote_lan)) in ends.into_iter().enumerate() {
        let run = dir.join(format!("strongswan-{side}"));
        private::create_dir(&run)?;
        private::write_file(&run.join("strongswan.conf"), strongswan_conf().as_bytes())?;
        let conf = swanctl_conf(local, remote, local_lan, remote_lan, key);
        private::write_file(&run.join("swanctl.conf"), conf.as_bytes())?;
        let launch = Launch {
            netns: Some(peer.gateways[index].clone()),
            private_run: Some(run),
            env: vec![("STRONGSWAN_CONF".into(), "/run/strongswan.conf".into())],
        };
        let log = dir.join(format!("charon-{side}.log"));
        let charon = process::spawn_launched(
            "ipsec",
            &format!("charon-{side}"),
            &[strongswan::CHARON.into()],
            &launch,
            &log,
        )
        .with_context(|| format!("start charon {side}"))?;
        peer.daemons.push(charon.clone());
        strongswan::load(&charon)?;
    }
    // Establish the SA before the first packet needs it (the trap would
    // too, dropping what it holds meanwhile).
    let vici = strongswan::vici_socket(&dir.join("strongswan-a"));
    let mut initiate = Command::new(&swanctl);
    initiate
        .args(["--initiate", "--child", "net", "--timeout", "10", "--uri"])
        .arg(format!("unix://{}", vici.display()));
    let out = output_within(&mut initiate, "swanctl --initiate", Duration::from_secs(15))?;
    if !out.status.success() {
        bail!(
            "swanctl --initiate failed; see {}",
            dir.join("charon-a.log").display()
        );
    }
    wait_for_tunnel(&peer.shape, "strongSwan")?;
    Ok(peer)
}

/// The boringtun program: `boringtun-cli` on `PATH` or in cargo's
/// directory of the user (root, under sudo).
pub(super) fn boringtun_program() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.push(PathBuf::from("/root/.cargo/bin"));
    dirs.into_iter()
        .map(|d| d.join("boringtun-cli"))
        .find(|p| p.is_file())
}

/// Whether `wg` (wireguard-tools) is installed.
pub(super) fn wg_available() -> bool {
    Command::new("wg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `wg` with `args` (in `namespace`, or here), feeding it `input`;
/// its output.
fn wg(namespace: Option<&str>, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut command = match namespace {
        Some(ns) => command_in(ns, "wg")?,
        None => Command::new("wg"),
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run wg")?;
    if let (Some(mut stdin), Some(text)) = (child.stdin.take(), input) {
        stdin.write_all(text.as_bytes()).context("write to wg")?;
    }
    let out = child.wait_with_output().context("wait for wg")?;
    if !out.status.success() {
        bail!(
            "wg {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Waits for the control socket of a userspace WireGuard device.
fn wait_for_socket(socket: &Path, daemon: &ProcessRecord) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if !daemon.is_alive() {
            bail!(
                "{} exited: {}",
                daemon.name,
                process::log_tail(&daemon.log, 5)
            );
        }
        if Instant::now() >= deadline {
            bail!("{} opened no {}", daemon.name, socket.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// boringtun in two gateway namespaces, a host behind each; its keys and
/// logs in `dir`. The devices are named from `prefix`'s process: their
/// control sockets are in the machine's `/var/run/wireguard`.
pub(super) fn boringtun(prefix: &str, host_mtu: u32, dir: &Path) -> Result<PeerShape> {
    let program = boringtun_program().context(BORINGTUN_MISSING)?;
    let (shape, gateways) = gateway_shape(prefix, "w", BORINGTUN, host_mtu)?;
    let mut peer = PeerShape {
        shape,
        gateways,
        daemons: Vec::new(),
        leftovers: Vec::new(),
    };
    private::create_dir(dir)?;
    let id = std::process::id() % 10_000;
    let names = [format!("sdnwg{id}a"), format!("sdnwg{id}b")];
    let mut keys = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let private_key = wg(None, &["genkey"], None)?;
        let public_key = wg(None, &["pubkey"], Some(&format!("{private_key}\n")))?;
        let key_file = dir.join(format!("{name}.key"));
        private::write_file(&key_file, format!("{private_key}\n").as_bytes())?;
        keys.push((key_file, public_key));
        let socket = Path::new(WIREGUARD_SOCKETS).join(format!("{name}.sock"));
        peer.leftovers.push(socket.clone());
        let launch = Launch {
            netns: Some(peer.gateways[index].clone()),
            ..Launch::default()
        };
        let argv = [
            program.display().to_string(),
            "--foreground".into(),
            "--disable-drop-privileges".into(),
            name.clone(),
        ];
        let log = dir.join(format!("{name}.log"));
        let daemon = process::spawn_launched("wireguard", name, &argv, &launch, &log)
            .with_context(|| format!("start boringtun for {name}"))?;
        peer.daemons.push(daemon.clone());
        wait_for_socket(&socket, &daemon)?;
    }
    for index in 0..2 {
        let other = 1 - index;
        let namespace = peer.gateways[index].clone();
        let name = &names[index];
        let endpoint = format!("{}:{WIREGUARD_PORT}", BORINGTUN.underlay[other]);
        let allowed = format!(
            "{}/24,{}/32",
            BORINGTUN.lans[other], WIREGUARD_ADDRESSES[other]
        );
        let key_file = keys[index].0.display().to_string();
        wg(
            Some(&namespace),
            &[
                "set",
                name,
                "private-key",
                &key_file,
                "listen-port",
                &WIREGUARD_PORT.to_string(),
                "peer",
                &keys[other].1,
                "endpoint",
                &endpoint,
                "allowed-ips",
                &allowed,
            ],
            None,
        )
        .with_context(|| {
            format!(
                "configure {name}: {}",
                process::log_tail(&peer.daemons[index].log, 5)
            )
        })?;
        let remote_lan = BORINGTUN.lans[other];
        sdn_vswitch::netns::run_in(Some(namespace.as_str()), || {
            let mut nl = Netlink::open()?;
            let device = netlink::index_of(name)?;
            nl.set_mtu(device, WIREGUARD_MTU)?;
            nl.add_address(device, WIREGUARD_ADDRESSES[index].into(), 24)?;
            nl.set_up(device)?;
            nl.add_route(remote_lan, 24, None, device, false)
        })
        .with_context(|| format!("address and route {name} in {namespace}"))?;
    }
    wait_for_tunnel(&peer.shape, "boringtun")?;
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_names_itself_and_the_other_and_the_lans() {
        let text = swanctl_conf(
            STRONGSWAN.underlay[0],
            STRONGSWAN.underlay[1],
            STRONGSWAN.lans[0],
            STRONGSWAN.lans[1],
            "00ff",
        );
        for line in [
            "    local_addrs = 192.0.2.1",
            "    remote_addrs = 192.0.2.2",
            "    encap = yes",
            "    proposals = aes256gcm16-prfsha256-x25519",
            "        local_ts = 10.81.0.0/24",
            "        remote_ts = 10.82.0.0/24",
            "        esp_proposals = aes256gcm16",
            "    secret = 0x00ff",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(strongswan_conf().contains("kernel-libipsec"));
        assert!(strongswan_conf().contains("socket = unix:///run/charon.vici"));
    }

    #[test]
    fn hosts_and_gateways_take_their_lans_first_addresses() {
        assert_eq!(in_lan(BORINGTUN.lans[1], 2), Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(in_lan(STRONGSWAN.lans[0], 1), Ipv4Addr::new(10, 81, 0, 1));
        // The peers' ranges are apart from each other.
        let all = [STRONGSWAN.lans, BORINGTUN.lans].concat();
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| b != a));
        }
    }
}
