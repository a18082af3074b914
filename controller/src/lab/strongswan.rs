//! strongSwan on the on-premises sites' routers. For a site that
//! connections name, `sdn up` writes a configuration from them into a
//! directory of the lab's run directory that only root may enter
//! (strongswan.conf, swanctl.conf, and the keys in secrets.conf, mode
//! 0600), starts charon in the site's namespace with that directory as its
//! `/run` (charon's pid file and vici socket are fixed paths there, and
//! other charons may run on the machine), and loads the connections with
//! `swanctl --load-all`.
//!
//! Which end starts IKE follows the connection's `initiator`: when the
//! site is to (`peer` or `both`) its child SA has `start_action = start`
//! and `dpd_action = restart`; when only the gateway is (`gateway`) charon
//! just answers: no start action, not even `trap` (which would make the
//! site start IKE on its LAN's first packet to the gateway's network), and
//! `dpd_action = clear`, leaving it to the gateway to come back.

use super::private;
use super::process::{self, Launch, ProcessRecord};
use crate::topology::Topology;
use crate::topology::psk::{MAX_PSK_FILE, read_psk};
use crate::topology::vpn::{
    Connection, DEFAULT_DPD_RETRIES, Initiator, OnpremSite, Remote, SiteIpsec,
};
use anyhow::{Context, Result, anyhow, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The IKE daemon.
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// What to install when strongSwan is missing.
pub const INSTALL: &str = "apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins";

/// The lab process role of a site's charon.
pub const ROLE: &str = "ipsec";

/// charon's plugins: the ciphers, Curve25519, and ESP in userspace on a TUN
/// device (kernel-libipsec), since the lab's kernel has no ESP.
const PLUGINS: &str = "random nonce aes sha1 sha2 hmac gcm chapoly curve25519 openssl kdf kernel-libipsec kernel-netlink socket-default vici";

/// strongswan.conf as charon sees it (its `/run` is the site directory).
const CONF_INSIDE: &str = "/run/strongswan.conf";

/// The vici socket as charon sees it.
const VICI_INSIDE: &str = "/run/charon.vici";

/// How long charon may take to open its vici socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Share of a lifetime after which an SA is rekeyed; the rest is the
/// margin for the rekey to finish before the SA expires at its lifetime.
const REKEY_PERCENT: u64 = 90;

/// The configuration directory of site `site` in run directory `lab_dir`.
pub fn site_dir(lab_dir: &Path, site: &str) -> PathBuf {
    lab_dir.join(format!("strongswan-{site}"))
}

/// The vici socket of the charon whose configuration directory is `dir`.
pub fn vici_socket(dir: &Path) -> PathBuf {
    dir.join("charon.vici")
}

/// The lab process name of site `site`'s charon.
pub fn process_name(site: &str) -> String {
    format!("charon-{site}")
}

/// The connections whose far end is site `site`, in file order.
pub fn connections_to<'t>(
    topology: &'t Topology,
    site: &'t str,
) -> impl Iterator<Item = &'t Connection> + 't {
    topology
        .vpn
        .connections
        .iter()
        .filter(move |c| matches!(&c.remote, Remote::Site(s) if s == site))
}

/// The sites that run charon: strongSwan sites that connections name.
pub fn charon_sites(topology: &Topology) -> Vec<&OnpremSite> {
    topology
        .vpn
        .onprem_sites
        .iter()
        .filter(|s| s.ipsec == SiteIpsec::StrongSwan)
        .filter(|s| connections_to(topology, &s.name).next().is_some())
        .collect()
}

/// `swanctl`'s path; an error saying what to install if charon or swanctl
/// is missing.
pub fn require_installed() -> Result<PathBuf> {
    if !Path::new(CHARON).is_file() {
        bail!("the lab's on-premises sites run strongSwan, but {CHARON} is missing: {INSTALL}");
    }
    let mut dirs = vec![PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("swanctl"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("the lab's on-premises sites run strongSwan, but swanctl is missing: {INSTALL}")
        })
}

/// Whether the site starts IKE for `connection`.
fn site_initiates(connection: &Connection) -> bool {
    matches!(connection.initiator, Initiator::Peer | Initiator::Both)
}

/// When an SA of `lifetime` is rekeyed, in whole seconds (at least one).
fn rekey_secs(lifetime: Duration) -> u64 {
    (lifetime.as_secs() * REKEY_PERCENT / 100).max(1)
}

/// strongswan.conf of site `site`: charon's plugins, its log on stderr
/// (the lab's log file), its vici socket, and how often it retransmits: a
/// request unanswered after the largest `dpd_retries` of the site's
/// connections' transmissions (the first and the retransmits) gives up, so
/// that a liveness check declares the peer dead as the topology says.
pub fn strongswan_conf(topology: &Topology, site: &OnpremSite) -> String {
    let retries = connections_to(topology, &site.name)
        .map(|c| c.dpd_retries)
        .max()
        .unwrap_or(DEFAULT_DPD_RETRIES);
    format!(
        "# charon of on-premises site {site} (lab {lab}), written by `sdn up`.
charon {{
  load = {PLUGINS}
  filelog {{
    stderr {{
      default = 1
      ike_name = yes
      time_format = %F %T
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{VICI_INSIDE}
    }}
  }}
  retransmit_tries = {tries}
}}
",
        site = site.name,
        lab = topology.name,
        tries = retries.saturating_sub(1),
    )
}

/// The strongSwan proposal of an IKE cipher with the policy's PRF and DH
/// group: `aes256gcm16` → `aes256gcm16-prfsha256-x25519`.
fn ike_proposals(connection: &Connection) -> String {
    let policy = &connection.policy;
    let proposals: Vec<String> = policy
        .ike
        .iter()
        .map(|aead| {
            format!(
                "{}-prf{}-{}",
                aead.name(),
                policy.prf.name(),
                policy.dh.name()
            )
        })
        .collect();
    proposals.join(", ")
}

/// ESP proposals: the ciphers' own names (no DH group: no PFS on rekeys).
fn esp_proposals(connection: &Connection) -> String {
    let names: Vec<&str> = connection.policy.esp.iter().map(|a| a.name()).collect();
    names.join(", ")
}

/// swanctl.conf of site `site`: one IKE connection with one child SA per
/// connection to the site, named as the connection. It holds no key: it
/// includes secrets.conf.
pub fn swanctl_conf(topology: &Topology, site: &OnpremSite) -> String {
    let mut text = format!(
        "# The IPsec connections of on-premises site {} (lab {}), written by\n\
         # `sdn up` from the topology. The pre-shared keys are in secrets.conf.\n\
         connections {{\n",
        site.name, topology.name
    );
    for c in connections_to(topology, &site.name) {
        let Some(gateway) = topology.routing.vpn_gateway(&c.gateway) else {
            continue;
        };
        let lan = site.lan;
        let ike_rekey = rekey_secs(c.ike_lifetime);
        let child_rekey = rekey_secs(c.child_lifetime);
        let (start, dpd_action) = if site_initiates(c) {
            ("        start_action = start\n", "restart")
        } else {
            ("", "clear")
        };
        let initiator = match c.initiator {
            Initiator::Gateway => format!("{} starts IKE; charon answers", c.gateway),
            Initiator::Peer => format!("charon starts IKE; {} answers", c.gateway),
            Initiator::Both => format!("charon and {} both start IKE", c.gateway),
        };
        let _ = write!(
            text,
            "  {name} {{
    version = 2
    local_addrs = {site_ip}
    remote_addrs = {gateway_ip}
    # ESP in UDP always (RFC 3948): the gateway's ESP port is a UDP socket.
    encap = yes
    proposals = {proposals}
    # The IKE SA's lifetime is {ike_life}s: rekeyed before it, gone at it.
    rekey_time = {ike_rekey}s
    over_time = {ike_over}s
    dpd_delay = {dpd}s
    local {{
      auth = psk
      id = {site_ip}
    }}
    remote {{
      auth = psk
      id = {gateway_ip}
    }}
    children {{
      {name} {{
        local_ts = {lan}
        remote_ts = {remote_ts}
        esp_proposals = {esp}
        rekey_time = {child_rekey}s
        life_time = {child_life}s
        dpd_action = {dpd_action}
        # initiator: {initiator}.
{start}      }}
    }}
  }}
",
            name = c.name,
            site_ip = site.public_ip,
            gateway_ip = gateway.public_ip,
            proposals = ike_proposals(c),
            ike_life = c.ike_lifetime.as_secs(),
            ike_over = c.ike_lifetime.as_secs().saturating_sub(ike_rekey).max(1),
            dpd = c.dpd_interval.as_secs(),
            remote_ts = c.local_prefix,
            esp = esp_proposals(c),
            child_life = c.child_lifetime.as_secs(),
        );
    }
    text.push_str("}\ninclude secrets.conf\n");
    text
}

/// secrets.conf of site `site`: each connection's key, read from its
/// `psk_file`, for the pair of public addresses. The key is written in hex
/// (`0x…`, which swanctl reads as the bytes), so that no character of it
/// needs quoting and a key that itself starts with `0x` stays text.
///
/// # Errors
///
/// A key file that `read_psk` refuses.
pub fn secrets_conf(topology: &Topology, site: &OnpremSite) -> Result<Zeroizing<String>> {
    // Room for every key in hex from the start: a reallocation would leave
    // a copy of what was written so far in freed memory.
    let connections = connections_to(topology, &site.name).count();
    let room = 256 + connections * (256 + 2 * MAX_PSK_FILE as usize);
    let mut text = Zeroizing::new(String::with_capacity(room));
    let _ = writeln!(
        text,
        "# The pre-shared keys of site {}'s connections, from their psk_file.\nsecrets {{",
        site.name
    );
    for c in connections_to(topology, &site.name) {
        let Some(gateway) = topology.routing.vpn_gateway(&c.gateway) else {
            continue;
        };
        let key = read_psk(&c.psk_file)
            .with_context(|| format!("read the key of connection {}", c.name))?;
        let _ = write!(
            text,
            "  ike-{name} {{\n    id-1 = {site_ip}\n    id-2 = {gateway_ip}\n    secret = 0x",
            name = c.name,
            site_ip = site.public_ip,
            gateway_ip = gateway.public_ip,
        );
        for byte in key.iter() {
            let _ = write!(text, "{byte:02x}");
        }
        text.push_str("\n  }\n");
    }
    text.push_str("}\n");
    Ok(text)
}

/// Writes site `site`'s configuration into its directory of run directory
/// `lab_dir` (made 0700; secrets.conf 0600).
pub fn write_config(topology: &Topology, site: &OnpremSite, lab_dir: &Path) -> Result<()> {
    let dir = site_dir(lab_dir, &site.name);
    private::create_dir(&dir)?;
    private::write_file(
        &dir.join("strongswan.conf"),
        strongswan_conf(topology, site).as_bytes(),
    )?;
    private::write_file(
        &dir.join("swanctl.conf"),
        swanctl_conf(topology, site).as_bytes(),
    )?;
    let secrets = secrets_conf(topology, site)?;
    private::write_file(&dir.join("secrets.conf"), secrets.as_bytes())
}

/// Starts site `site`'s charon in its namespace, its log in run directory
/// `lab_dir`. Record it before `load`ing it, so that a failure stops it.
pub fn start(topology: &Topology, site: &OnpremSite, lab_dir: &Path) -> Result<ProcessRecord> {
    let dir = site_dir(lab_dir, &site.name);
    let launch = Launch {
        netns: Some(topology.namespace_of(&site.name)),
        private_run: Some(dir),
        env: vec![("STRONGSWAN_CONF".into(), CONF_INSIDE.into())],
    };
    let name = process_name(&site.name);
    let log = lab_dir.join(format!("{name}.log"));
    process::spawn_launched(ROLE, &name, &[CHARON.into()], &launch, &log)
        .with_context(|| format!("start charon for site {}", site.name))
}

/// Before a stopped charon is started again: its pid file and vici socket
/// may be left over (a pid file naming a live process, reused, would keep
/// it from starting).
pub fn clear_leftovers(record: &ProcessRecord) {
    if let Some(dir) = &record.launch.private_run {
        for file in ["charon.pid", "charon.vici"] {
            let _ = std::fs::remove_file(dir.join(file));
        }
    }
}

/// Waits for a charon started by `start` to open its vici socket, then
/// loads its connections and keys with `swanctl --load-all`.
pub fn load(record: &ProcessRecord) -> Result<()> {
    let dir = record
        .launch
        .private_run
        .as_deref()
        .ok_or_else(|| anyhow!("{} has no configuration directory", record.name))?;
    let vici = vici_socket(dir);
    let deadline = Instant::now() + START_TIMEOUT;
    while !vici.exists() {
        if !record.is_alive() {
            bail!(
                "{} exited; last lines of {}:\n{}",
                record.name,
                record.log.display(),
                process::log_tail(&record.log, 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not open {} within {START_TIMEOUT:?}; last lines of {}:\n{}",
                record.name,
                vici.display(),
                record.log.display(),
                process::log_tail(&record.log, 15)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let swanctl = require_installed()?;
    let out = Command::new(&swanctl)
        // Credentials come from this directory, not /etc/swanctl.
        .env("SWANCTL_DIR", dir)
        .args(["--load-all", "--noprompt", "--uri"])
        .arg(format!("unix://{}", vici.display()))
        .arg("--file")
        .arg(dir.join("swanctl.conf"))
        .output()
        .with_context(|| format!("run {}", swanctl.display()))?;
    if !out.status.success() {
        bail!(
            "swanctl --load-all for {} failed:\n{}{}",
            record.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{KEY, VPN, VpnFixture};
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn branch(topology: &Topology) -> &OnpremSite {
        topology
            .vpn
            .site("branch")
            .expect("vpn.yaml has site branch")
    }

    #[test]
    fn the_branch_site_answers_hub_gw() {
        let fixture = VpnFixture::new(VPN);
        let topology = fixture.topology();
        let site = branch(&topology);
        let text = swanctl_conf(&topology, site);
        for line in [
            "  hub-to-branch {",
            "    version = 2",
            "    local_addrs = 198.51.100.90",
            "    remote_addrs = 203.0.113.90",
            "    encap = yes",
            "    proposals = aes256gcm16-prfsha256-x25519, aes128gcm16-prfsha256-x25519",
            "    rekey_time = 25920s",
            "    over_time = 2880s",
            "    dpd_delay = 10s",
            "      auth = psk",
            "      id = 198.51.100.90",
            "      id = 203.0.113.90",
            "      hub-to-branch {",
            "        local_ts = 192.168.50.0/24",
            "        remote_ts = 10.90.0.0/16",
            "        esp_proposals = aes256gcm16",
            "        rekey_time = 3240s",
            "        life_time = 3600s",
            "        dpd_action = clear",
            "include secrets.conf",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("start_action"),
            "the gateway initiates:\n{text}"
        );
        assert!(
            !text.contains("east-to-west"),
            "not a connection to the site"
        );
        assert!(!text.contains(KEY), "no key:\n{text}");
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("secret")),
            "no secret:\n{text}"
        );
        let hex: String = KEY.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex));

        let secrets = secrets_conf(&topology, site).unwrap();
        assert_eq!(
            secrets.lines().skip(1).collect::<Vec<_>>(),
            [
                "secrets {",
                "  ike-hub-to-branch {",
                "    id-1 = 198.51.100.90",
                "    id-2 = 203.0.113.90",
                &format!("    secret = 0x{hex}"),
                "  }",
                "}",
            ]
        );
        let conf = strongswan_conf(&topology, site);
        assert!(conf.contains(&format!("  load = {PLUGINS}\n")), "{conf}");
        assert!(
            conf.contains("      socket = unix:///run/charon.vici\n"),
            "{conf}"
        );
        assert!(conf.contains("  retransmit_tries = 2\n"), "{conf}");
    }

    #[test]
    fn a_site_that_initiates_starts_and_restarts() {
        for initiator in ["peer", "both"] {
            let text = VPN.replacen(
                "    initiator: gateway            # hub-gw starts IKE; strongSwan answers\n",
                &format!("    initiator: {initiator}\n    ipsec_policy:\n      esp: [chacha20poly1305, aes128gcm16]\n"),
                1,
            ).replacen(
                "    ipsec_policy:                 # default: ike [aes256gcm16], prf sha256, dh x25519, esp [aes256gcm16]\n      ike: [aes256gcm16, aes128gcm16]\n      esp: [aes256gcm16]\n",
                "",
                1,
            );
            let fixture = VpnFixture::new(&text);
            let topology = fixture.topology();
            let conf = swanctl_conf(&topology, branch(&topology));
            assert!(
                conf.contains("        start_action = start\n"),
                "{initiator}:\n{conf}"
            );
            assert!(conf.contains("        dpd_action = restart\n"), "{conf}");
            assert!(
                conf.contains("    proposals = aes256gcm16-prfsha256-x25519\n"),
                "{conf}"
            );
            assert!(
                conf.contains("        esp_proposals = chacha20poly1305, aes128gcm16\n"),
                "{conf}"
            );
        }
    }

    #[test]
    fn the_configuration_directory_is_root_only() {
        let fixture = VpnFixture::new(VPN);
        let topology = fixture.topology();
        let run = fixture.scratch("run");
        write_config(&topology, branch(&topology), &run).unwrap();
        let dir = site_dir(&run, "branch");
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        for file in ["strongswan.conf", "swanctl.conf", "secrets.conf"] {
            let mode = std::fs::metadata(dir.join(file)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        assert_eq!(
            charon_sites(&topology)
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["branch"]
        );
    }
}
