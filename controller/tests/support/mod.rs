//! Shared helpers of the namespace tests: a lab with a unique name whose guard
//! removes it (processes, namespaces, run directory) even when a test panics,
//! and traffic helpers that run inside the lab's namespaces.
#![allow(dead_code)]

use sdn_controller::lab::record::LabRecord;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `sdn` binary under test.
pub fn sdn_binary() -> &'static str {
    env!("CARGO_BIN_EXE_sdn")
}

/// Whether the test can run; prints why not.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: namespace tests need root (CI runs them as root)");
    }
    root
}

/// A lab name no other test or run uses.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}{}{}",
        tag,
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The demo shape (three hosts on one switch) under another name.
pub fn three_hosts(name: &str, fail_mode: &str) -> String {
    format!(
        "name: {name}
networks:
  - name: net
    cidr: 10.0.0.0/16
    subnets:
      - {{ name: s1, cidr: 10.0.0.0/24 }}
switches:
  - name: sw1
    fail_mode: {fail_mode}
    ports: [{{ name: p1 }}, {{ name: p2 }}, {{ name: p3 }}]
hosts:
  - {{ name: h1, interfaces: [{{ name: eth0, subnet: s1, address: 10.0.0.1/24 }}] }}
  - {{ name: h2, interfaces: [{{ name: eth0, subnet: s1, address: 10.0.0.2/24 }}] }}
  - {{ name: h3, interfaces: [{{ name: eth0, subnet: s1, address: 10.0.0.3/24 }}] }}
links:
  - [h1:eth0, sw1:p1]
  - [h2:eth0, sw1:p2]
  - [h3:eth0, sw1:p3]
"
    )
}

/// A lab under test. Dropping it tears everything down.
pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    pub file: PathBuf,
}

impl Lab {
    /// Writes the topology to a temporary file (nothing is created yet).
    pub fn new(name: &str, topology: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("sdn-test-{name}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("topology.yaml");
        std::fs::write(&file, topology).expect("write topology");
        Lab {
            name: name.to_string(),
            dir,
            file,
        }
    }

    /// Runs `sdn` with `args`.
    pub fn sdn(&self, args: &[&str]) -> Output {
        Command::new(sdn_binary())
            .args(args)
            .output()
            .expect("run sdn")
    }

    /// `sdn up`, asserting success.
    pub fn up(&self) -> Output {
        let out = self.sdn(&["up", self.file.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "sdn up failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// The namespace of a node.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }

    /// The lab's record.
    pub fn record(&self) -> LabRecord {
        LabRecord::load(&self.name)
            .expect("read record")
            .expect("lab has a record")
    }

    /// Runs a command inside a node's namespace.
    pub fn exec(&self, node: &str, command: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(command)
            .output()
            .expect("run ip netns exec")
    }

    /// Pings from a node, asserting every reply comes back.
    pub fn ping(&self, node: &str, address: &str) {
        let out = self.exec(node, &["ping", "-c", "3", "-i", "0.2", "-W", "2", address]);
        assert!(
            out.status.success(),
            "ping {address} from {node} failed:\n{}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stdout).contains(" 0% packet loss"),
            "{}",
            text(&out.stdout)
        );
    }

    /// Namespaces whose names start with this lab's prefix.
    pub fn namespaces_left(&self) -> Vec<String> {
        sdn_controller::lab::netns::list_with_prefix(&format!("{}-", self.name))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.sdn(&["down", "--lab", &self.name]);
        // Whatever `down` could not do (or a test left half-made).
        if let Ok(Some(record)) = LabRecord::load(&self.name) {
            sdn_controller::lab::teardown(&record);
        }
        for namespace in self.namespaces_left() {
            sdn_controller::lab::process::kill_namespace_members(&namespace);
            let _ = sdn_controller::lab::netns::delete(&namespace);
        }
        let _ = std::fs::remove_dir_all(sdn_controller::lab::record::run_dir(&self.name));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lossy UTF-8 of command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub use sdn_controller::traffic::pattern;

/// Sends `data` over TCP from `client_ns` to `server`, bound in `server_ns`;
/// returns what the server received.
pub fn tcp_transfer(server_ns: &str, client_ns: &str, server: SocketAddr, data: &[u8]) -> Vec<u8> {
    let (_, received) =
        sdn_controller::traffic::tcp_transfer(server_ns, client_ns, server, data.to_vec())
            .expect("TCP transfer");
    received
}

/// Sends one UDP datagram from inside `ns`.
pub fn udp_send(ns: &str, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
    let ns = ns.to_string();
    let payload = payload.to_vec();
    std::thread::spawn(move || {
        sdn_vswitch::netns::enter(&ns).expect("enter namespace");
        let socket = UdpSocket::bind(from).expect("bind");
        socket.send_to(&payload, to).expect("send");
    })
    .join()
    .expect("udp thread");
}

/// Waits until `check` holds, or panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
