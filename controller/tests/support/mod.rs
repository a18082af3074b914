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
  - {{ name: h1, interfaces: [{{ name: eth0, subnet: s1, address: 10.0.0.11/24 }}] }}
  - {{ name: h2, interfaces: [{{ name: eth0, subnet: s1, address: 10.0.0.12/24 }}] }}
  - {{ name: h3, interfaces: [{{ name: eth0, subnet: s1, address: 10.0.0.13/24 }}] }}
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

#[allow(unused_imports)]
pub use sdn_controller::traffic::pattern;

/// Sends `data` over TCP from `client_ns` to `server`, bound in `server_ns`;
/// returns what the server received.
pub fn tcp_transfer(server_ns: &str, client_ns: &str, server: SocketAddr, data: &[u8]) -> Vec<u8> {
    let (_, received) =
        sdn_controller::traffic::tcp_transfer(server_ns, client_ns, server, data.to_vec())
            .expect("TCP transfer");
    received
}

/// Sends one UDP datagram (broadcast allowed) from inside `ns`.
pub fn udp_send(ns: &str, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
    let ns = ns.to_string();
    let payload = payload.to_vec();
    std::thread::spawn(move || {
        sdn_vswitch::netns::enter(&ns).expect("enter namespace");
        let socket = UdpSocket::bind(from).expect("bind");
        socket.set_broadcast(true).expect("allow broadcast");
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

/// A topology file of the repository with its lab renamed.
pub fn repository_topology(file: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../topologies")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read topology");
    let original = text
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .expect("a name line")
        .to_string();
    text.replacen(
        &format!("name: {original}\n"),
        &format!("name: {name}\n"),
        1,
    )
}

/// Sends raw Ethernet frames out of `device` in namespace `ns`.
pub fn raw_send(ns: &str, device: &str, frames: &[Vec<u8>]) {
    let (ns, device, frames) = (ns.to_string(), device.to_string(), frames.to_vec());
    std::thread::spawn(move || {
        sdn_vswitch::netns::enter(&ns).expect("enter namespace");
        let fd = packet_socket(&device);
        for frame in &frames {
            // SAFETY: sending a live buffer on a socket we own.
            let sent = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            assert_eq!(sent, frame.len() as isize, "send a raw frame on {device}");
        }
    })
    .join()
    .expect("raw send thread");
}

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An AF_PACKET socket bound to `device` of the calling thread's namespace.
fn packet_socket(device: &str) -> OwnedFd {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(all)) };
    assert!(
        raw >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = std::ffi::CString::new(device).expect("device name");
    // SAFETY: NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index != 0, "no device {device}");
    // SAFETY: sockaddr_ll is plain data.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = index as i32;
    // SAFETY: a valid sockaddr_ll of the size passed.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        ret,
        0,
        "bind to {device}: {}",
        std::io::Error::last_os_error()
    );
    fd
}

/// Records every frame crossing a device (both directions) until stopped,
/// then writes them to a pcap file. For devices that carry no VLAN tags (the
/// kernel takes tags out of frames a plain packet socket reads).
pub struct Sniffer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Vec<u8>>>>,
}

impl Sniffer {
    /// Starts recording on `device` in `ns`; returns once the socket is bound.
    pub fn start(ns: &str, device: &str) -> Sniffer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ns, device, flag) = (ns.to_string(), device.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            sdn_vswitch::netns::enter(&ns).expect("enter namespace");
            let fd = packet_socket(&device);
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            // SAFETY: a valid timeval of the size passed.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            let _ = ready_tx.send(());
            let mut frames = Vec::new();
            let mut buffer = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                // SAFETY: receiving into a live buffer of the length passed.
                let n = unsafe {
                    libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0)
                };
                if n > 0 {
                    frames.push(buffer[..n as usize].to_vec());
                }
            }
            frames
        });
        ready_rx.recv().expect("sniffer started");
        Sniffer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops, writes the frames to `file` as pcap, and returns them as read
    /// back from that file.
    pub fn stop(mut self, file: &std::path::Path) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        let frames = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("sniffer thread");
        let mut writer = sdn_controller::pcap::PcapWriter::new(
            std::fs::File::create(file).expect("create pcap"),
            65_535,
        )
        .expect("pcap header");
        for frame in &frames {
            writer
                .write_frame(0, frame.len() as u32, frame)
                .expect("write frame");
        }
        writer.flush().expect("flush pcap");
        let bytes = std::fs::read(file).expect("read pcap");
        let (_, read) = sdn_controller::pcap::read_all(&bytes).expect("valid pcap");
        read.into_iter().map(|f| f.data).collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running `sdn capture` of a switch port.
pub struct PortCapture {
    child: std::process::Child,
    /// Its standard error, kept open (and read at the end) so that it can
    /// report without a broken pipe.
    stderr: std::io::BufReader<std::process::ChildStderr>,
    pub file: PathBuf,
}

impl Lab {
    /// Starts `sdn capture SWITCH PORT` for `seconds`; returns once it captures.
    pub fn capture(&self, switch: &str, port: &str, seconds: u32) -> PortCapture {
        use std::io::BufRead;
        let file = self.dir.join(format!("{switch}-{port}.pcap"));
        let mut child = Command::new(sdn_binary())
            .args([
                "capture",
                switch,
                port,
                "-w",
                file.to_str().expect("utf-8"),
                "--duration",
                &seconds.to_string(),
                "--lab",
                &self.name,
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start capture");
        let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr
            .read_line(&mut line)
            .expect("capture says it started");
        assert!(line.contains("capturing on"), "{line}");
        PortCapture {
            child,
            stderr,
            file,
        }
    }
}

impl PortCapture {
    /// Waits for the capture to end; returns the frames of its pcap file.
    pub fn frames(mut self) -> Vec<Vec<u8>> {
        use std::io::Read;
        let mut said = String::new();
        let _ = self.stderr.read_to_string(&mut said);
        let status = self.child.wait().expect("capture ends");
        assert!(status.success(), "capture failed: {said}");
        let bytes = std::fs::read(&self.file).expect("pcap written");
        let (linktype, frames) = sdn_controller::pcap::read_all(&bytes).expect("valid pcap");
        assert_eq!(linktype, sdn_controller::pcap::LINKTYPE_ETHERNET);
        frames.into_iter().map(|f| f.data).collect()
    }
}

/// Whether `frame` (Ethernet, maybe 802.1Q-tagged) carries `needle` somewhere.
pub fn carries(frame: &[u8], needle: &[u8]) -> bool {
    frame.windows(needle.len()).any(|w| w == needle)
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

pub fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("address"), port)
}

/// Runs `work` on a thread inside namespace `ns` (sockets it makes stay there).
pub fn in_ns<T: Send + 'static>(ns: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        sdn_vswitch::netns::enter(&ns).expect("enter namespace");
        work()
    })
    .join()
    .expect("namespace thread")
}

/// An open TCP connection between two hosts: both ends.
pub struct Conn {
    pub client: TcpStream,
    pub server: TcpStream,
}

impl Conn {
    /// Whether `data` sent by the client reaches the server and comes back.
    pub fn echoes(&mut self, data: &[u8]) -> bool {
        let timeout = Some(Duration::from_millis(1500));
        self.server.set_read_timeout(timeout).expect("timeout");
        self.client.set_read_timeout(timeout).expect("timeout");
        let mut got = vec![0u8; data.len()];
        self.client.write_all(data).is_ok()
            && self.server.read_exact(&mut got).is_ok()
            && self.server.write_all(&got).is_ok()
            && self.client.read_exact(&mut got).is_ok()
            && got == data
    }
}

/// Opens a TCP connection from `client` to `server:port`, or `None` if the
/// handshake does not complete within a second and a half.
pub fn connect(lab: &Lab, client: &str, server: &str, address: SocketAddr) -> Option<Conn> {
    connect_to(lab, client, server, address, address)
}

/// Opens a TCP connection from `client` to `dial`, with the server
/// listening on `listen` (another address when NAT is in between).
pub fn connect_to(
    lab: &Lab,
    client: &str,
    server: &str,
    listen: SocketAddr,
    dial: SocketAddr,
) -> Option<Conn> {
    let listener: TcpListener = in_ns(&lab.ns(server), move || {
        let l = TcpListener::bind(listen).expect("listen");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let stream = in_ns(&lab.ns(client), move || {
        TcpStream::connect_timeout(&dial, Duration::from_millis(1500))
    })
    .ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((server, _)) => {
                server.set_nonblocking(false).expect("blocking");
                return Some(Conn {
                    client: stream,
                    server,
                });
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("connected but the server saw nothing: {e}"),
        }
    }
}

/// A hub network (app1 10.90.1.11 on sw1) whose VPN gateway hub-gw
/// (203.0.113.90) has the connection hub-to-branch to the strongSwan site
/// branch (198.51.100.90, LAN 192.168.50.0/24 with branch1 on .10), its key
/// in `branch.psk` next to the file; `connection` holds more lines of the
/// connection (indented four spaces), or nothing.
pub fn hub_and_branch(name: &str, connection: &str) -> String {
    format!(
        "name: {name}
networks:
  - name: hub
    cidr: 10.90.0.0/16
    subnets:
      - {{ name: app, cidr: 10.90.1.0/24 }}
switches:
  - name: sw1
    ports: [{{ name: p1 }}]
hosts:
  - {{ name: app1, interfaces: [{{ name: eth0, subnet: hub/app, address: 10.90.1.11/24 }}] }}
links:
  - [app1:eth0, sw1:p1]
vpn_gateways:
  - {{ name: hub-gw, network: hub, public_ip: 203.0.113.90 }}
onprem_sites:
  - name: branch
    public_ip: 198.51.100.90
    lan: 192.168.50.0/24
    ipsec: strongswan
    hosts:
      - {{ name: branch1, address: 192.168.50.10 }}
connections:
  - name: hub-to-branch
    gateway: hub-gw
    site: branch
    psk_file: branch.psk
{connection}"
    )
}
