//! The strongSwan lab shared by the namespace tests: two network
//! namespaces joined by a veth (ours at 192.0.2.1, charon's at 192.0.2.2
//! with a site at 10.82.0.1/24), charon started (and restarted) there with
//! a pre-shared key, and a guard that removes the namespaces, charon and
//! every process in them when dropped, also after a panic.
#![allow(dead_code)] // each test binary uses its part

use std::net::{SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHARON: &str = "/usr/lib/ipsec/charon";
pub const OURS: &str = "192.0.2.1";
pub const THEIRS: &str = "192.0.2.2";
pub const PSK: &str = "a-shared-secret-for-the-lab-only";

/// Two namespaces joined by a veth, charon running in the second.
pub struct Lab {
    /// Our namespace.
    pub ours: String,
    /// charon's namespace.
    pub theirs: String,
    /// charon's configuration, run directory and log.
    pub dir: PathBuf,
    charon: Option<Child>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {args:?}");
}

impl Lab {
    pub fn new() -> Lab {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let lab = Lab {
            ours: format!("ssi{tag}a"),
            theirs: format!("ssi{tag}b"),
            dir: std::env::temp_dir().join(format!("ssi{tag}")),
            charon: None,
        };
        for ns in [&lab.ours, &lab.theirs] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link",
            "add",
            "ul0",
            "netns",
            &lab.ours,
            "type",
            "veth",
            "peer",
            "name",
            "ul0",
            "netns",
            &lab.theirs,
        ]);
        for (ns, address) in [(&lab.ours, OURS), (&lab.theirs, THEIRS)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "ul0",
            ]);
            ip(&["-n", ns, "link", "set", "ul0", "up"]);
        }
        // charon's site, whose address its tunnel routes from.
        ip(&[
            "link",
            "add",
            "site0",
            "netns",
            &lab.theirs,
            "type",
            "veth",
            "peer",
            "name",
            "site1",
            "netns",
            &lab.theirs,
        ]);
        ip(&[
            "-n",
            &lab.theirs,
            "addr",
            "add",
            "10.82.0.1/24",
            "dev",
            "site0",
        ]);
        ip(&["-n", &lab.theirs, "link", "set", "site0", "up"]);
        ip(&["-n", &lab.theirs, "link", "set", "site1", "up"]);
        lab
    }

    /// Starts charon as a responder for our address with a pre-shared key.
    pub fn start_charon(&mut self) {
        self.start_charon_with("", "");
    }

    /// Starts (or starts again) charon with `ike` added to the
    /// connection's settings and `child` to its child's (e.g. `rekey_time
    /// = 4s`).
    pub fn start_charon_with(&mut self, ike: &str, child: &str) {
        let run = self.dir.join("run");
        std::fs::create_dir_all(&run).expect("run dir");
        // What a killed charon left behind.
        let _ = std::fs::remove_file(run.join("charon.vici"));
        let _ = std::fs::remove_file(run.join("charon.pid"));
        let conf = self.dir.join("strongswan.conf");
        std::fs::write(
            &conf,
            format!(
                "charon {{\n  load = random nonce aes sha1 sha2 hmac gcm curve25519 openssl kdf kernel-libipsec kernel-netlink socket-default vici\n  filelog {{ stderr {{ default = 1 }} }}\n  plugins {{ vici {{ socket = unix://{}/charon.vici }} }}\n}}\n",
                run.display()
            ),
        )
        .expect("strongswan.conf");
        std::fs::write(
            self.dir.join("swanctl.conf"),
            format!(
                "connections {{\n  lab {{\n    version = 2\n    local_addrs = {THEIRS}\n    remote_addrs = {OURS}\n    proposals = aes256gcm16-prfsha256-x25519\n    {ike}\n    local {{ auth = psk\n id = {THEIRS} }}\n    remote {{ auth = psk\n id = {OURS} }}\n    children {{ net {{ local_ts = 10.82.0.0/24\n remote_ts = 10.81.0.0/24\n esp_proposals = aes256gcm16\n {child} }} }}\n  }}\n}}\nsecrets {{ ike-1 {{ id-1 = {OURS}\n id-2 = {THEIRS}\n secret = \"a-shared-secret-for-the-lab-only\" }} }}\n"
            ),
        )
        .expect("swanctl.conf");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("charon.log"))
            .expect("log");
        let script = format!(
            "mount --bind {} /run && STRONGSWAN_CONF={} exec {CHARON}",
            run.display(),
            conf.display()
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.theirs,
                "unshare",
                "-m",
                "sh",
                "-c",
                &script,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("charon starts");
        self.charon = Some(child);
        let vici = run.join("charon.vici");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !vici.exists() {
            assert!(
                Instant::now() < deadline,
                "charon's vici socket: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let loaded = Command::new("timeout")
            .args([
                "10",
                "ip",
                "netns",
                "exec",
                &self.theirs,
                "swanctl",
                "--load-all",
                "--uri",
                &self.vici(),
            ])
            .arg("--file")
            .arg(self.dir.join("swanctl.conf"))
            .output()
            .expect("swanctl runs");
        assert!(
            loaded.status.success(),
            "swanctl --load-all: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
    }

    /// Kills charon at once (SIGKILL: it says goodbye to no one).
    pub fn kill_charon(&mut self) {
        if let Some(mut c) = self.charon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// charon's control socket.
    pub fn vici(&self) -> String {
        format!("unix://{}", self.dir.join("run/charon.vici").display())
    }

    /// `swanctl` with `args` against charon (given 10 s); its standard
    /// output.
    pub fn swanctl(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .args(["10", "ip", "netns", "exec", &self.theirs, "swanctl"])
            .args(args)
            .args(["--uri", &self.vici()])
            .output()
            .expect("swanctl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What charon logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.charon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.ours, &self.theirs] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").arg(pid).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A UDP socket bound to `at` inside namespace `ns` (entered on a thread
/// of its own; the socket stays in it).
pub fn socket_in(ns: &str, at: SocketAddrV4) -> UdpSocket {
    let path = Path::new("/var/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let entered = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns");
        UdpSocket::bind(at).expect("bind")
    })
    .join()
    .expect("socket thread")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An IPv4 ICMP echo request from `src` to `dst` carrying `data`.
pub fn echo_request(src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, data: &[u8]) -> Vec<u8> {
    fn checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(data);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ip
}

/// A child process killed and reaped when dropped.
pub struct Reap(pub Child);

impl Reap {
    /// Waits for it; whether it succeeded.
    pub fn wait(mut self) -> bool {
        let ok = self.0.wait().is_ok_and(|s| s.success());
        std::mem::forget(self);
        ok
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
