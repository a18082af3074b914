//! `sdn vpn status`: per VPN connection its IKE SA (state, SPIs, when it
//! came up, rekeys), its child SAs and what crossed them, and the drops of
//! the gateway's ESP port, read from the status each gateway's switch
//! writes every second in the lab's run directory. `sdn vpn sa`: the child
//! SAs installed, and with `--export-keys` their keys for Wireshark, which
//! the gateways write only when a request file in the run directory asks.

use anyhow::{Context, Result, bail};
use sdn_vswitch::vpn_status::{GatewayStatus, STATUS_PREFIX, keys_path, keys_request_path};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use zeroize::Zeroizing;

/// How long `sdn vpn sa --export-keys` waits for every gateway to answer
/// (each looks for a request once a second).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often it looks for their answers.
const EXPORT_POLL: Duration = Duration::from_millis(50);

/// Every gateway status file in `dir`, by gateway name.
pub(crate) fn read_statuses(dir: &Path) -> Result<Vec<GatewayStatus>> {
    let mut statuses = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(statuses),
        Err(err) => return Err(err).with_context(|| format!("read {}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(STATUS_PREFIX) && name.ends_with(".json")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("read {}", entry.path().display()))?;
        let status: GatewayStatus = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a gateway status", entry.path().display()))?;
        statuses.push(status);
    }
    statuses.sort_by(|a, b| a.gateway.cmp(&b.gateway));
    Ok(statuses)
}

fn age(updated: u64, at: u64) -> String {
    match at.checked_sub(updated) {
        Some(s) if s <= 3 => String::new(),
        Some(s) => format!(" (status {s}s old: is the switch running?)"),
        None => String::new(),
    }
}

fn since(at: Option<u64>, now: u64) -> String {
    at.map_or_else(|| "-".into(), |t| format!("{}s ago", now.saturating_sub(t)))
}

pub(super) fn status(lab: Option<&str>, as_json: bool) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let statuses = read_statuses(&crate::lab::record::run_dir(&lab.name))?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "gateways": statuses }))?
        );
        return Ok(());
    }
    if statuses.is_empty() {
        println!("lab {} has no running VPN gateway", lab.name);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for g in &statuses {
        println!(
            "gateway {} {}{}: ESP drops {} (unknown SPI {}, replayed {}, authentication {}, malformed {}, no SA {})",
            g.gateway,
            g.public_ip,
            age(g.updated, now),
            g.port.dropped,
            g.port.unknown_spi,
            g.port.replayed,
            g.port.auth_failed,
            g.port.malformed,
            g.port.no_sa
        );
        for c in &g.connections {
            let spis = c
                .ike_spis
                .as_ref()
                .map_or_else(|| "-".into(), |(i, r)| format!("{i}/{r}"));
            println!(
                "  connection {} → {}: {}{} IKE SA {} up {} rekeys child {} IKE {}{}",
                c.name,
                c.peer,
                c.state,
                if c.nat_t { " (UDP 4500)" } else { "" },
                spis,
                since(c.established_at, now),
                c.child_rekeys,
                c.ike_rekeys,
                c.last_down
                    .as_ref()
                    .map_or(String::new(), |d| format!(", last down: {d}"))
            );
            println!(
                "    {} out: {} packets {} bytes; in: {} packets {} bytes; retransmissions {}, liveness checks {}, peer dead {}",
                c.algorithms.as_deref().unwrap_or("-"),
                c.packets_out,
                c.bytes_out,
                c.packets_in,
                c.bytes_in,
                c.retransmissions,
                c.liveness_checks,
                c.peer_dead
            );
            for sa in &c.child_sas {
                println!(
                    "    child SA {} {}{}: {} packets {} bytes, replayed {}, authentication failed {}",
                    sa.direction,
                    sa.spi,
                    if sa.current { "" } else { " (draining)" },
                    sa.packets,
                    sa.bytes,
                    sa.replayed,
                    sa.auth_failed
                );
            }
        }
    }
    Ok(())
}

/// Said on standard error whenever keys are exported.
const KEYS_WARNING: &str = "sdn: warning: these are the keys of the lab's ESP traffic: anyone who holds them can decrypt it. Keep them private and delete them when done.";

/// The first line of exported keys: a comment, which Wireshark skips.
fn keys_header(lab: &str) -> String {
    format!(
        "# Wireshark ESP SAs (esp_sa) of lab {lab}, from `sdn vpn sa --export-keys`: these keys decrypt its VPN traffic.\n"
    )
}

pub(super) fn sa(lab: Option<&str>, export_keys: bool, output: Option<&Path>) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let dir = crate::lab::record::run_dir(&lab.name);
    let statuses = read_statuses(&dir)?;
    if statuses.is_empty() {
        if export_keys {
            bail!(
                "lab {} has no running VPN gateway: no keys to export",
                lab.name
            );
        }
        println!("lab {} has no running VPN gateway", lab.name);
        return Ok(());
    }
    if !export_keys {
        for line in sa_lines(&statuses) {
            println!("{line}");
        }
        return Ok(());
    }
    eprintln!("{KEYS_WARNING}");
    let gateways: Vec<&str> = statuses.iter().map(|g| g.gateway.as_str()).collect();
    let keys = export_keys_of(&dir, &gateways, EXPORT_TIMEOUT)?;
    let header = keys_header(&lab.name);
    let mut text = Zeroizing::new(Vec::with_capacity(header.len() + keys.len()));
    text.extend_from_slice(header.as_bytes());
    text.extend_from_slice(&keys);
    match output {
        Some(path) => crate::lab::private::write_file(path, &text)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.flush())
                .context("write the keys to standard output")?;
        }
    }
    Ok(())
}

/// One line per child SA direction of the gateways' status: no keys.
fn sa_lines(statuses: &[GatewayStatus]) -> Vec<String> {
    let mut lines = Vec::new();
    for g in statuses {
        for c in &g.connections {
            if c.child_sas.is_empty() {
                lines.push(format!(
                    "{} {}: no child SA ({})",
                    g.gateway, c.name, c.state
                ));
            }
            for sa in &c.child_sas {
                let (from, to) = if sa.direction == "in" {
                    (c.peer, g.public_ip)
                } else {
                    (g.public_ip, c.peer)
                };
                lines.push(format!(
                    "{} {}: {:<3} SPI 0x{} {} → {}{}: {} packets {} bytes",
                    g.gateway,
                    c.name,
                    sa.direction,
                    sa.spi,
                    from,
                    to,
                    if sa.direction == "out" && !sa.current {
                        " (draining)"
                    } else {
                        ""
                    },
                    sa.packets,
                    sa.bytes
                ));
            }
        }
    }
    lines
}

/// Removes the key request and the gateways' key files when dropped, so
/// that no key stays on disk whatever happens in between.
struct KeyFiles {
    request: PathBuf,
    answers: Vec<PathBuf>,
}

impl KeyFiles {
    fn remove(&self) {
        for path in std::iter::once(&self.request).chain(&self.answers) {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        self.remove();
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Asks the gateways of run directory `dir` for their keys and waits up to
/// `timeout` for each of `gateways` to answer with a key file at least as
/// new as the request; returns their lines, in the order of `gateways`.
/// The request and the key files are gone when it returns.
///
/// # Errors
/// A gateway that did not answer in time (its switch is not running), or
/// a file that cannot be written or read.
fn export_keys_of(dir: &Path, gateways: &[&str], timeout: Duration) -> Result<Zeroizing<Vec<u8>>> {
    let files = KeyFiles {
        request: keys_request_path(dir),
        answers: gateways.iter().map(|g| keys_path(dir, g)).collect(),
    };
    // Answers to an earlier request must not pass for this one's.
    files.remove();
    crate::lab::private::write_file(&files.request, b"")?;
    let asked = modified(&files.request)
        .with_context(|| format!("read the time of {}", files.request.display()))?;
    let deadline = Instant::now() + timeout;
    let mut answers: Vec<Option<Zeroizing<Vec<u8>>>> = gateways.iter().map(|_| None).collect();
    loop {
        for (answer, path) in answers.iter_mut().zip(&files.answers) {
            if answer.is_none() && modified(path).is_some_and(|at| at >= asked) {
                let bytes =
                    std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
                *answer = Some(Zeroizing::new(bytes));
            }
        }
        if answers.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() >= deadline {
            let missing: Vec<&str> = gateways
                .iter()
                .zip(&answers)
                .filter(|(_, a)| a.is_none())
                .map(|(g, _)| *g)
                .collect();
            bail!(
                "gateway {} did not answer within {timeout:?}: is its switch running? (see `sdn vpn status`)",
                missing.join(", ")
            );
        }
        std::thread::sleep(EXPORT_POLL);
    }
    drop(files);
    let answers: Vec<Zeroizing<Vec<u8>>> = answers.into_iter().flatten().collect();
    let mut keys = Zeroizing::new(Vec::with_capacity(answers.iter().map(|a| a.len()).sum()));
    for answer in &answers {
        keys.extend_from_slice(answer);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdn_vswitch::vpn_status::{ConnectionStatus, PortStatus, status_path};

    #[test]
    fn the_status_files_of_a_run_directory_read_back_by_gateway() {
        let dir = std::env::temp_dir().join(format!("sdn-vpn-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = |name: &str| GatewayStatus {
            gateway: name.into(),
            public_ip: "203.0.113.90".parse().unwrap(),
            updated: 1,
            port: PortStatus {
                unknown_spi: 1,
                replayed: 2,
                auth_failed: 3,
                malformed: 0,
                no_sa: 0,
                dropped: 6,
            },
            connections: vec![ConnectionStatus {
                name: "c".into(),
                peer: "198.51.100.90".parse().unwrap(),
                state: "established".into(),
                ike_spis: Some(("01".into(), "02".into())),
                algorithms: Some("Aes256Gcm16".into()),
                nat_t: true,
                established_at: Some(1),
                last_down: None,
                child_rekeys: 3,
                ike_rekeys: 1,
                retransmissions: 0,
                liveness_checks: 0,
                peer_dead: 0,
                packets_out: 10,
                bytes_out: 840,
                packets_in: 9,
                bytes_in: 756,
                child_sas: Vec::new(),
            }],
        };
        for name in ["west-gw", "east-gw"] {
            let text = serde_json::to_string(&status(name)).unwrap();
            std::fs::write(status_path(&dir, name), text).unwrap();
        }
        std::fs::write(dir.join("lab.json"), "{}").unwrap();
        let read = read_statuses(&dir).unwrap();
        let names: Vec<&str> = read.iter().map(|g| g.gateway.as_str()).collect();
        assert_eq!(names, ["east-gw", "west-gw"]);
        assert_eq!(read[0].connections[0].child_rekeys, 3);
        assert_eq!(read[0].port.replayed, 2);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            read_statuses(&dir).unwrap().is_empty(),
            "no directory, no gateways"
        );
    }

    /// A gateway's tick: answers a request in `dir` with `line` once.
    fn answer_once(dir: PathBuf, gateway: &'static str, line: &'static str) {
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !keys_request_path(&dir).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(30));
            let path = keys_path(&dir, gateway);
            std::fs::write(path.with_extension("tmp"), line).unwrap();
            std::fs::rename(path.with_extension("tmp"), path).unwrap();
        });
    }

    #[test]
    fn exported_keys_are_every_gateways_answer_and_leave_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("sdn-vpn-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // An answer to an earlier request, left over: not this one's.
        std::fs::write(keys_path(&dir, "east-gw"), "stale\n").unwrap();
        answer_once(dir.clone(), "hub-gw", "hub line\n");
        answer_once(dir.clone(), "east-gw", "east line\n");
        let keys = export_keys_of(&dir, &["hub-gw", "east-gw"], Duration::from_secs(5)).unwrap();
        assert_eq!(std::str::from_utf8(&keys).unwrap(), "hub line\neast line\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");

        // A gateway that never answers is named; nothing is left either.
        answer_once(dir.clone(), "hub-gw", "hub line\n");
        let err = export_keys_of(&dir, &["hub-gw", "west-gw"], Duration::from_millis(600))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway west-gw did not answer"), "{err}");
        std::thread::sleep(Duration::from_millis(100));
        let _ = std::fs::remove_file(keys_path(&dir, "hub-gw"));
        assert!(
            !keys_request_path(&dir).exists(),
            "the request is withdrawn"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_sa_listing_names_each_direction_without_keys() {
        let status: GatewayStatus = serde_json::from_value(serde_json::json!({
            "gateway": "hub-gw", "public_ip": "203.0.113.90", "updated": 1,
            "port": { "unknown_spi": 0, "replayed": 0, "auth_failed": 0, "malformed": 0, "no_sa": 0, "dropped": 0 },
            "connections": [{
                "name": "hub-to-branch", "peer": "198.51.100.90", "state": "established",
                "ike_spis": null, "algorithms": null, "nat_t": true, "established_at": null,
                "last_down": null, "child_rekeys": 0, "ike_rekeys": 0, "retransmissions": 0,
                "liveness_checks": 0, "peer_dead": 0, "packets_out": 0, "bytes_out": 0,
                "packets_in": 0, "bytes_in": 0,
                "child_sas": [
                    { "spi": "c0000001", "direction": "in", "current": false, "packets": 3, "bytes": 252, "replayed": 0, "auth_failed": 0 },
                    { "spi": "d0000001", "direction": "out", "current": true, "packets": 4, "bytes": 336, "replayed": 0, "auth_failed": 0 }
                ]
            }]
        }))
        .unwrap();
        assert_eq!(
            sa_lines(&[status]),
            [
                "hub-gw hub-to-branch: in  SPI 0xc0000001 198.51.100.90 → 203.0.113.90: 3 packets 252 bytes",
                "hub-gw hub-to-branch: out SPI 0xd0000001 203.0.113.90 → 198.51.100.90: 4 packets 336 bytes",
            ]
        );
        assert!(
            keys_header("lab").starts_with('#'),
            "a comment to Wireshark"
        );
    }
}
