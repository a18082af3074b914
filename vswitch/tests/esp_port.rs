//! The ESP port on real sockets: two namespaces joined by a veth pair, an
//! ESP port in each with static SAs (one keying material per direction,
//! SPIs crossed). A burst crosses intact; replayed, forged and unknown
//! packets are counted and not delivered; IKE goes both ways behind the
//! non-ESP marker; and a capture of the exchange read by tshark shows the
//! SPIs and sequence numbers sent, and never the inner payload in clear.
//! Needs root; skips with a message otherwise.

use sdn_vpn::esp::{Cipher, InboundSa, OutboundSa};
use sdn_vswitch::netns;
use sdn_vswitch::pipeline::TunnelTarget;
use sdn_vswitch::port::esp::{
    ESP_UDP_PORT, EspHandle, EspPort, NON_ESP_MARKER, inner_mtu, tunnel_mac,
};
use sdn_vswitch::port::{Port, RxBatch, TxFrame};
use sdn_vswitch::testutil::FrameBuilder;
use sdn_vswitch::wire::{EtherType, EthernetAddress, EthernetFrame};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const TUNNEL_AB: u32 = 11;
const TUNNEL_BA: u32 = 12;
const SPI_AB: u32 = 0xa000_0001;
const SPI_BA: u32 = 0xb000_0001;
const CIPHER: Cipher = Cipher::Aes256Gcm16;
const MARKER: &[u8] = b"ESP-PORT-CLEAR-TEXT-MARKER";
const BURST: usize = 1000;
const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0xaa, 0x01]);
const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0xbb, 0x01]);

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: ESP namespace tests need root (CI runs them as root)");
    }
    root
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces a and b joined by veth `e0` (192.168.201.1 and .2), and the
/// children started in them. Dropping it, even in a panic, ends the
/// children and deletes the namespaces (and with them the veth pair) and
/// the capture file.
struct Lab {
    prefix: String,
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

impl Lab {
    fn new() -> Lab {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let lab = Lab {
            prefix: format!(
                "esp{}x{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
            children: Vec::new(),
            files: Vec::new(),
        };
        for node in ["a", "b"] {
            ip(&["netns", "add", &lab.ns(node)]);
            ip(&["-n", &lab.ns(node), "link", "set", "lo", "up"]);
        }
        ip(&[
            "link",
            "add",
            "e0",
            "netns",
            &lab.ns("a"),
            "type",
            "veth",
            "peer",
            "name",
            "e0",
            "netns",
            &lab.ns("b"),
        ]);
        for (i, node) in ["a", "b"].iter().enumerate() {
            let address = format!("192.168.201.{}/24", i + 1);
            ip(&["-n", &lab.ns(node), "addr", "add", &address, "dev", "e0"]);
            ip(&["-n", &lab.ns(node), "link", "set", "e0", "up"]);
        }
        lab
    }

    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// Starts `tcpdump` on e0 in namespace `node`, writing UDP 4500 to a
    /// file; returns once it listens. The veth ends stop taking segmented
    /// UDP sends whole first: the ports send runs of equal datagrams in one
    /// (UDP GSO), which a veth would pass, and tcpdump see, as one packet;
    /// cut where they leave, the capture shows each datagram as it would be
    /// on a wire.
    fn capture(&mut self, node: &str) -> (usize, PathBuf) {
        for end in ["a", "b"] {
            let ns = self.ns(end);
            let off = [
                "netns",
                "exec",
                &ns,
                "ethtool",
                "-K",
                "e0",
                "tx-udp-segmentation",
                "off",
            ];
            ip(&off);
        }
        let file = std::env::temp_dir().join(format!("{}.pcap", self.prefix));
        self.files.push(file.clone());
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(node),
                "tcpdump",
                "-i",
                "e0",
                "-n",
                "-U",
            ])
            // Room for the burst (in KiB); packets reach the file within
            // tcpdump's one-second buffer timeout.
            .args(["-B", "16384"])
            .arg("-w")
            .arg(&file)
            .args(["udp", "port", "4500"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        let stderr = child.stderr.take().expect("tcpdump's stderr");
        self.children.push(child);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("tcpdump listens");
        (self.children.len() - 1, file)
    }

    /// Stops child `index` (by its pid) and waits for it.
    fn stop(&mut self, index: usize) {
        let child = &mut self.children[index];
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let _ = child.wait();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for node in ["a", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(node)])
                .status();
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn keymat(seed: u8) -> Vec<u8> {
    (0..CIPHER.keymat_len())
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn open(lab: &Lab, node: &str, local: Ipv4Addr, mac: EthernetAddress) -> (EspPort, EspHandle) {
    netns::run_in(Some(&lab.ns(node)), || EspPort::open(local, mac, 1500)).expect("open ESP port")
}

/// Receives on `port` until `want` frames came or nothing has for a while;
/// returns each frame with its tunnel metadata.
fn receive(
    port: &mut EspPort,
    batch: &mut RxBatch,
    want: usize,
) -> Vec<(Vec<u8>, sdn_vswitch::pipeline::TunnelMeta)> {
    let mut got = Vec::new();
    let mut idle_since = Instant::now();
    while got.len() < want && idle_since.elapsed() < Duration::from_secs(3) {
        let n = port.recv_batch(batch).expect("recv_batch");
        for i in 0..n {
            got.push((
                batch.frame(i).to_vec(),
                batch.tunnel(i).expect("tunnel metadata"),
            ));
        }
        port.release(batch);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        } else {
            idle_since = Instant::now();
        }
    }
    got
}

/// Drains what waits on `port` (for datagrams that deliver no frame).
fn settle(port: &mut EspPort, batch: &mut RxBatch) -> usize {
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut frames = 0;
    while Instant::now() < deadline {
        frames += port.recv_batch(batch).expect("recv_batch");
        port.release(batch);
        std::thread::sleep(Duration::from_millis(5));
    }
    frames
}

/// The UDP payloads (ESP packets, IKE messages) of a pcap file of Ethernet
/// frames.
fn pcap_payloads(file: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(file).expect("read capture");
    assert!(data.len() >= 24, "a pcap header");
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(frame) = data.get(at + 16..at + 16 + caplen) else {
            break;
        };
        at += 16 + caplen;
        // Ethernet (14), IPv4 without options (20), UDP (8).
        if frame.len() > 42 && frame[12..14] == [0x08, 0x00] && frame[14] == 0x45 {
            out.push(frame[42..].to_vec());
        }
    }
    out
}

fn seq_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[4..8].try_into().unwrap())
}

#[test]
fn esp_ports_carry_a_burst_and_refuse_what_is_not_theirs() {
    if !is_root() {
        return;
    }
    let capture_tools = has("tcpdump") && has("tshark") && has("ethtool");
    if !capture_tools {
        eprintln!("skipping the capture checks: tcpdump, tshark or ethtool is not installed");
    }
    let mut lab = Lab::new();
    let prefix = lab.prefix.clone();
    let capture = capture_tools.then(|| lab.capture("a"));

    let (addr_a, addr_b) = (
        Ipv4Addr::new(192, 168, 201, 1),
        Ipv4Addr::new(192, 168, 201, 2),
    );
    let (mut port_a, handle_a) = open(&lab, "a", addr_a, MAC_A);
    let (mut port_b, handle_b) = open(&lab, "b", addr_b, MAC_B);
    let info = port_a.info().clone();
    assert_eq!(info.mtu, inner_mtu(1500));
    assert_eq!(info.mtu, 1438);
    assert!(!info.offloads);
    assert_eq!((info.tunnel_local, info.hw_addr), (Some(addr_a), MAC_A));
    let err = netns::run_in(Some(&lab.ns("a")), || {
        EspPort::open(Ipv4Addr::new(10, 255, 255, 1), MAC_A, 1500)
    })
    .expect_err("an address outside the namespace");
    assert!(err.to_string().contains("4500"), "{err}");

    let (k_ab, k_ba) = (keymat(1), keymat(2));
    let peer_a = SocketAddrV4::new(addr_a, ESP_UDP_PORT);
    let peer_b = SocketAddrV4::new(addr_b, ESP_UDP_PORT);
    handle_a.install_outbound(
        TUNNEL_AB,
        peer_b,
        OutboundSa::new(CIPHER, SPI_AB, &k_ab).unwrap(),
    );
    handle_b.install_inbound(TUNNEL_BA, InboundSa::new(CIPHER, SPI_AB, &k_ab).unwrap());
    handle_b.install_outbound(
        TUNNEL_BA,
        peer_a,
        OutboundSa::new(CIPHER, SPI_BA, &k_ba).unwrap(),
    );
    handle_a.install_inbound(TUNNEL_AB, InboundSa::new(CIPHER, SPI_BA, &k_ba).unwrap());

    // A burst from a to b: inner IPv4 packets of every size class up to the MTU.
    let mtu = info.mtu as usize;
    let smallest = 28 + MARKER.len() + 4;
    let frames: Vec<Vec<u8>> = (0..BURST)
        .map(|i| {
            let inner = if i == BURST - 1 {
                mtu
            } else {
                smallest + (i * 37) % (mtu - smallest + 1)
            };
            let mut payload = MARKER.to_vec();
            payload.extend_from_slice(&(i as u32).to_be_bytes());
            payload.resize(inner - 28, (i % 251) as u8);
            FrameBuilder::udp4("10.1.0.1:4000", "10.2.0.1:5000", &payload).build()
        })
        .collect();
    let mut batch = RxBatch::default();
    let to_b = Some(TunnelTarget {
        vni: TUNNEL_AB,
        dst: addr_b,
    });
    let mut received = Vec::new();
    for chunk in frames.chunks(50) {
        let mut tx = chunk.iter().map(|f| TxFrame {
            data: f,
            tunnel: to_b,
        });
        assert_eq!(port_a.send_batch(&mut tx).unwrap(), chunk.len());
        received.extend(receive(&mut port_b, &mut batch, chunk.len()));
    }
    assert_eq!(received.len(), BURST, "every frame of the burst arrived");
    for (i, ((frame, tunnel), sent)) in received.iter().zip(&frames).enumerate() {
        assert_eq!(
            &frame[14..],
            &sent[14..],
            "frame {i}: identical inner IPv4 packet"
        );
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), MAC_B, "frame {i}");
        assert_eq!(eth.src_addr(), tunnel_mac(TUNNEL_BA), "frame {i}");
        assert_eq!(eth.ethertype(), EtherType::Ipv4);
        assert_eq!((tunnel.vni, tunnel.src), (TUNNEL_BA, addr_a), "frame {i}");
    }
    // And a few back, under the other SPI.
    let back = FrameBuilder::udp4("10.2.0.1:5000", "10.1.0.1:4000", MARKER).build();
    let mut tx = (0..5).map(|_| TxFrame {
        data: &back,
        tunnel: Some(TunnelTarget {
            vni: TUNNEL_BA,
            dst: addr_a,
        }),
    });
    assert_eq!(port_b.send_batch(&mut tx).unwrap(), 5);
    let returned = receive(&mut port_a, &mut batch, 5);
    assert_eq!(returned.len(), 5);
    assert!(
        returned
            .iter()
            .all(|(f, t)| f[14..] == back[14..] && t.vni == TUNNEL_AB)
    );

    // A plain UDP socket in namespace a plays the attacker and the IKE peer.
    let plain = netns::run_in(Some(&lab.ns("a")), || {
        let s = UdpSocket::bind(SocketAddrV4::new(addr_a, 0))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(s)
    })
    .expect("plain UDP socket");
    let plain_addr = match plain.local_addr().unwrap() {
        std::net::SocketAddr::V4(v4) => v4,
        other => panic!("{other}"),
    };
    // A sealed datagram as it crossed the wire: from the capture, or sealed
    // here with the same SA state (a's next sequence number, seen by b).
    let sealed = match &capture {
        Some((_, file)) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let esp: Vec<Vec<u8>> = pcap_payloads(file)
                    .into_iter()
                    .filter(|p| p.starts_with(&SPI_AB.to_be_bytes()))
                    .collect();
                if esp.len() >= BURST || Instant::now() > deadline {
                    let count = esp.len();
                    break esp
                        .into_iter()
                        .find(|p| seq_of(p) == 500)
                        .unwrap_or_else(|| panic!("seq 500 not among {count} captured"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        None => {
            let mut replay = OutboundSa::new(CIPHER, SPI_AB, &k_ab).unwrap();
            let mut packet = vec![0u8; sdn_vpn::esp::HEADROOM];
            packet.extend_from_slice(&frames[0][14..]);
            replay.seal(&mut packet, 4).unwrap();
            packet
        }
    };
    let before = handle_b.stats();
    plain.send_to(&sealed, peer_b).unwrap();
    assert_eq!(
        settle(&mut port_b, &mut batch),
        0,
        "a replay is not delivered"
    );
    let after = handle_b.stats();
    assert_eq!(after.port.replayed, before.port.replayed + 1);
    assert_eq!(
        after
            .sa(SPI_AB, sdn_vswitch::port::esp::SaDirection::Inbound)
            .unwrap()
            .replayed,
        1
    );

    // A flipped bit (in the sequence number, so the window lets it through
    // to the ICV check).
    let mut forged = sealed.clone();
    forged[4] ^= 0x40;
    plain.send_to(&forged, peer_b).unwrap();
    // An SPI b does not know.
    let mut stranger = sealed.clone();
    stranger[..4].copy_from_slice(&0x0bad_0badu32.to_be_bytes());
    plain.send_to(&stranger, peer_b).unwrap();
    // A NAT keepalive.
    plain.send_to(&[0xff], peer_b).unwrap();
    // An IKE message behind the marker.
    let mut ike = NON_ESP_MARKER.to_vec();
    let message: Vec<u8> = (0..64u8).collect();
    ike.extend_from_slice(&message);
    let mut ike_rx = handle_b.take_ike_receiver().expect("the IKE receiver");
    assert!(handle_b.take_ike_receiver().is_none(), "taken once");
    plain.send_to(&ike, peer_b).unwrap();
    assert_eq!(
        settle(&mut port_b, &mut batch),
        0,
        "none of them is a frame"
    );
    let stats = handle_b.stats();
    assert_eq!(stats.port.auth_failed, 1);
    assert_eq!(stats.port.unknown_spi, 1);
    assert_eq!(stats.port.keepalives, 1);
    assert_eq!(stats.port.ike_queued, 1);
    assert_eq!(stats.port.dropped(), 3, "replay, forgery, unknown SPI");
    assert_eq!(port_b.dropped(), 3);
    assert_eq!(
        ike_rx.try_recv().expect("an IKE message"),
        (plain_addr, message.clone())
    );
    let tunnel = stats.tunnel(TUNNEL_BA).unwrap();
    assert_eq!(tunnel.opened_packets, BURST as u64);
    assert!(tunnel.last_received.is_some());
    let sealed_stats = handle_a.stats();
    assert_eq!(
        sealed_stats.tunnel(TUNNEL_AB).unwrap().sealed_packets,
        BURST as u64
    );

    // IKE from b's port 4500, behind the marker.
    handle_b.send_ike(plain_addr, &message).unwrap();
    let mut answer = [0u8; 256];
    let (n, from) = plain.recv_from(&mut answer).expect("b's IKE message");
    assert_eq!(from, std::net::SocketAddr::V4(peer_b));
    assert_eq!(&answer[..4], &NON_ESP_MARKER);
    assert_eq!(&answer[4..n], &message[..]);

    if let Some((index, file)) = capture {
        // The burst, 5 back, replay, forgery, stranger, keepalive, 2 IKE.
        let all = BURST + 5 + 6;
        let deadline = Instant::now() + Duration::from_secs(5);
        while pcap_payloads(&file).len() < all && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        lab.stop(index);
        check_capture(&file);
    }
    drop(lab);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&prefix),
        "namespaces left behind"
    );
}

/// tshark reads the capture as ESP: a's SPI with sequence numbers 1..=BURST
/// in order (then the replayed 500 and the forged one), b's with 1..=5; and
/// the marker in every inner packet appears nowhere in the capture.
fn check_capture(file: &Path) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-Y",
            "esp",
            "-T",
            "fields",
            "-e",
            "esp.spi",
            "-e",
            "esp.sequence",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ab = Vec::new();
    let mut ba = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.split('\t');
        let (Some(spi), Some(seq)) = (fields.next(), fields.next()) else {
            continue;
        };
        let spi = u32::from_str_radix(spi.trim_start_matches("0x"), 16).expect("hex SPI");
        let seq: u32 = seq.parse().expect("decimal sequence number");
        match spi {
            SPI_AB => ab.push(seq),
            SPI_BA => ba.push(seq),
            _ => {}
        }
    }
    let burst: Vec<u32> = (1..=BURST as u32).collect();
    assert_eq!(
        &ab[..BURST.min(ab.len())],
        &burst[..],
        "a's sequence numbers"
    );
    assert_eq!(ab.get(BURST), Some(&500), "the replay");
    assert_eq!(ab.len(), BURST + 2, "the burst, the replay and the forgery");
    assert_eq!(ba, [1, 2, 3, 4, 5], "b's sequence numbers");
    let bytes = std::fs::read(file).unwrap();
    assert!(
        !bytes.windows(MARKER.len()).any(|w| w == MARKER),
        "the inner marker never appears in clear"
    );
}

/// The segments of a TSO super-frame leave port a in segmented sends and
/// arrive at port b merged into one super-frame again (with TSO metadata,
/// the payload intact); equal small datagrams of another protocol also
/// leave together but arrive one by one, in order.
#[test]
fn a_super_frames_segments_cross_together_and_arrive_merged() {
    if !is_root() {
        return;
    }
    use sdn_vswitch::gso::{Segments, segment};
    use sdn_vswitch::testutil::checksums_valid;
    use sdn_vswitch::wire::{GsoType, Ipv4Packet, TcpSegment, VnetRepr};

    let lab = Lab::new();
    let (addr_a, addr_b) = (
        Ipv4Addr::new(192, 168, 201, 1),
        Ipv4Addr::new(192, 168, 201, 2),
    );
    let (mut port_a, handle_a) = open(&lab, "a", addr_a, MAC_A);
    let (mut port_b, handle_b) = open(&lab, "b", addr_b, MAC_B);
    let k_ab = keymat(3);
    handle_a.install_outbound(
        TUNNEL_AB,
        SocketAddrV4::new(addr_b, ESP_UDP_PORT),
        OutboundSa::new(CIPHER, SPI_AB, &k_ab).unwrap(),
    );
    handle_b.install_inbound(TUNNEL_BA, InboundSa::new(CIPHER, SPI_AB, &k_ab).unwrap());
    let to_b = Some(TunnelTarget {
        vni: TUNNEL_AB,
        dst: addr_b,
    });

    let payload: Vec<u8> = (0..30_000).map(|i| (i * 13 + 5) as u8).collect();
    let frame = FrameBuilder::tcp4("10.1.0.1:40000", "10.2.0.1:5201", &payload).build();
    let mss = 1360;
    let vnet = VnetRepr {
        flags: 0,
        gso_type: GsoType::TcpV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
    };
    let mut segments = Segments::default();
    segment(&frame, &vnet, &mut segments).unwrap();
    let count = segments.len();
    assert_eq!(count, 30_000usize.div_ceil(usize::from(mss)));
    let mut tx = segments.iter().map(|data| TxFrame { data, tunnel: to_b });
    assert_eq!(port_a.send_batch(&mut tx).unwrap(), count);

    let mut batch = RxBatch::default();
    let mut merged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut payload_seen = 0;
    while payload_seen < payload.len() && Instant::now() < deadline {
        let n = port_b.recv_batch(&mut batch).expect("recv_batch");
        for i in 0..n {
            let frame = batch.frame(i).to_vec();
            payload_seen += frame.len() - 54;
            merged.push((batch.vnet(i), frame));
        }
        port_b.release(&mut batch);
        std::thread::sleep(Duration::from_millis(1));
    }
    // The kernel may hand the datagrams over in more than one receive;
    // each receive's run merges.
    assert!(
        merged.len() < count,
        "{count} segments arrived as {} frames",
        merged.len()
    );
    let mut rebuilt = Vec::new();
    for (vnet, frame) in &merged {
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpSegment::new_checked(ip.payload()).unwrap();
        if frame.len() - 54 > usize::from(mss) {
            assert_eq!(vnet.gso_type, GsoType::TcpV4);
            assert_eq!(vnet.gso_size, mss);
            let mut whole = frame.clone();
            sdn_vswitch::gso::complete_checksum(&mut whole, vnet).unwrap();
            assert!(
                checksums_valid(&whole),
                "the merged frame's checksum completes"
            );
        } else {
            assert!(checksums_valid(frame));
        }
        assert_eq!(tcp.seq_number() as usize, 1 + rebuilt.len(), "in order");
        rebuilt.extend_from_slice(tcp.payload());
    }
    assert_eq!(rebuilt, payload, "the payload intact");
    let opened = handle_b.stats().tunnel(TUNNEL_BA).unwrap().opened_packets;
    assert_eq!(opened, count as u64, "every segment was its own ESP packet");

    // 64-byte UDP datagrams: sent together, delivered one by one.
    let small: Vec<Vec<u8>> = (0..40u8)
        .map(|i| FrameBuilder::udp4("10.1.0.1:4000", "10.2.0.1:5000", &[i; 64]).build())
        .collect();
    let mut tx = small.iter().map(|data| TxFrame { data, tunnel: to_b });
    assert_eq!(port_a.send_batch(&mut tx).unwrap(), small.len());
    let got = receive(&mut port_b, &mut batch, small.len());
    assert_eq!(got.len(), small.len());
    for ((frame, _), sent) in got.iter().zip(&small) {
        assert_eq!(&frame[14..], &sent[14..]);
    }
}
