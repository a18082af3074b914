//! IKE_SA_INIT and IKE_AUTH against a real IKEv2 peer: strongSwan's
//! charon, as a responder in a namespace of its own, answers this crate's
//! requests; the answers read as an agreed IKE SA (AES-256-GCM-16,
//! PRF-HMAC-SHA256, Curve25519) and a first child SA whose AUTH verifies
//! under the pre-shared key, and charon logs both as established. A wrong
//! key establishes nothing. Needs root and charon (`apt-get install strongswan-charon
//! strongswan-swanctl`); skips, saying why, without them. The namespaces are
//! named after the process and removed by the guard, also on failure.

mod lab;

use lab::{CHARON, Lab, OURS, PSK, Reap, THEIRS, echo_request, is_root, socket_in};
use sdn_vpn::esp::{Cipher, HEADROOM, InboundSa, OutboundSa};
use sdn_vpn::ike::auth::{AuthParams, auth_request, read_auth_response};
use sdn_vpn::ike::dh::KeyPair;
use sdn_vpn::ike::sa_init::{NONCE_LEN, read_response, request};
use std::net::{SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn strongswan_establishes_our_ike_and_child_sa_and_carries_esp() {
    if !is_root() || !Path::new(CHARON).exists() {
        eprintln!(
            "skipped: needs root and {CHARON} (apt-get install strongswan-charon strongswan-swanctl)"
        );
        return;
    }
    let mut lab = Lab::new();
    lab.start_charon();
    let local: SocketAddrV4 = format!("{OURS}:500").parse().unwrap();
    let remote: SocketAddrV4 = format!("{THEIRS}:500").parse().unwrap();
    let socket = socket_in(&lab.ours, local);
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let pair = KeyPair::generate().unwrap();
    let nonce: Vec<u8> = (0..NONCE_LEN as u8).collect();
    let ciphers = [Cipher::Aes256Gcm16, Cipher::Aes128Gcm16];
    let sent = request(
        0x5d00_0000_0000_0001,
        &pair,
        &nonce,
        &ciphers,
        None,
        local,
        remote,
    );
    let mut buffer = [0u8; 4096];
    let answer = send_until(&socket, remote, &sent.bytes, |_| true);
    let answer = answer.unwrap_or_else(|| panic!("no answer from charon: {}", lab.log()));
    let agreed = read_response(&sent, &answer, &pair, &ciphers, remote, local)
        .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    assert_eq!(agreed.cipher, Cipher::Aes256Gcm16);
    assert_ne!(agreed.spi_r, 0);
    // With kernel-libipsec charon fakes a NAT (a wrong NATD_S_IP hash) so
    // that ESP travels in UDP 4500; our NAT detection sees it.
    assert!(lab.log().contains("faking NAT situation"), "{}", lab.log());
    assert!(agreed.nat, "the faked NAT is detected");
    assert!(
        !lab.log().contains("remote host is behind NAT"),
        "our own NAT detection hashes are what charon computes"
    );
    assert_eq!(agreed.keys.sk_ei.len(), 36);

    // IKE_AUTH, on port 4500 behind the non-ESP marker (a NAT was seen).
    let float_local: SocketAddrV4 = format!("{OURS}:4500").parse().unwrap();
    let float_remote: SocketAddrV4 = format!("{THEIRS}:4500").parse().unwrap();
    let floated = socket_in(&lab.ours, float_local);
    floated
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let params = AuthParams {
        id: OURS.parse().unwrap(),
        peer_id: THEIRS.parse().unwrap(),
        psk: PSK.as_bytes(),
        local: ("10.81.0.0".parse().unwrap(), 24),
        remote: ("10.82.0.0".parse().unwrap(), 24),
        ciphers: &ciphers,
        spi: 0xc1d0_0001,
    };
    let auth = auth_request(&agreed, &sent.bytes, &params).unwrap();
    let marked = [&[0u8; 4][..], &auth.bytes].concat();
    let answered = send_until(&floated, float_remote, &marked, |_| true);
    let answered = answered.unwrap_or_else(|| panic!("no IKE_AUTH answer: {}", lab.log()));
    assert_eq!(&answered[..4], &[0; 4], "the non-ESP marker");
    let child = read_auth_response(&agreed, &answer, &auth, &answered[4..], &params)
        .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    assert_eq!(child.cipher, Cipher::Aes256Gcm16);
    assert_ne!(child.peer_spi, 0);
    assert_eq!(child.keys_i_to_r.len(), 36);
    assert_eq!(child.ts_local[0].start.to_string(), "10.81.0.0");
    assert_eq!(child.ts_remote[0].end.to_string(), "10.82.0.255");
    let log = lab.log();
    assert!(log.contains("IKE_SA lab[1] established"), "{log}");
    assert!(log.contains("CHILD_SA net{1} established"), "{log}");

    // ESP in UDP through the child SA: a ping from our site to charon's
    // site address, sealed here, opened by charon's libipsec; its kernel's
    // answer comes back sealed by charon and opens here.
    let mut outbound =
        OutboundSa::new(child.cipher, child.peer_spi, &child.keys_i_to_r).expect("keys");
    let mut inbound =
        InboundSa::new(child.cipher, child.our_spi, &child.keys_r_to_i).expect("keys");
    // The underlay, captured meanwhile: only IKE and ESP in UDP, and the
    // ping's payload never in clear.
    let capture_file = lab.dir.join("underlay.pcap");
    let capture = Command::new("ip")
        .args([
            "netns", "exec", &lab.ours, "tcpdump", "-i", "ul0", "-U", "-n", "-w",
        ])
        .arg(&capture_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump runs (apt-get install tcpdump)");
    std::thread::sleep(Duration::from_millis(800));
    let ping_packet = echo_request(
        "10.81.0.2".parse().unwrap(),
        "10.82.0.1".parse().unwrap(),
        b"through-the-tunnel",
    );
    let mut reply = None;
    for _ in 0..10 {
        let mut packet = vec![0u8; HEADROOM];
        packet.extend_from_slice(&ping_packet);
        outbound.seal(&mut packet, 4).expect("seal");
        floated.send_to(&packet, float_remote).expect("send ESP");
        if let Ok((n, _)) = floated.recv_from(&mut buffer) {
            let mut esp = buffer[..n].to_vec();
            if let Ok(opened) = inbound.open(&mut esp) {
                reply = Some(esp[opened.inner].to_vec());
                break;
            }
        }
    }
    let reply = reply.unwrap_or_else(|| panic!("no ESP answer: {}", lab.log()));
    assert_eq!(&reply[12..16], &[10, 82, 0, 1], "from charon's site");
    assert_eq!(&reply[16..20], &[10, 81, 0, 2], "to ours");
    assert_eq!(reply[20], 0, "an echo reply");
    assert!(reply.ends_with(b"through-the-tunnel"));
    assert_eq!(inbound.stats.auth_failed, 0);
    {
        let mut tcpdump = capture;
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling a child process we started.
        unsafe { libc::kill(tcpdump.id() as i32, libc::SIGINT) };
        let _ = tcpdump.wait();
        let pcap = std::fs::read(&capture_file).unwrap_or_default();
        assert!(pcap.len() > 24, "tcpdump captured the underlay");
        assert!(
            !pcap.windows(18).any(|w| w == b"through-the-tunnel"),
            "the payload never crosses the underlay in clear"
        );
        let ports = udp_ports(&pcap);
        assert!(!ports.is_empty());
        assert!(
            ports
                .iter()
                .all(|&(s, d)| matches!(s, 500 | 4500) && matches!(d, 500 | 4500)),
            "{ports:?}"
        );
        assert!(ports.contains(&(4500, 4500)), "ESP in UDP 4500");
    }

    // A liveness check is answered; a Delete of the child SA is answered
    // with charon's own, and charon closes it.
    let mut ike = sdn_vpn::ike::protected::Protected::new(&agreed, true).unwrap();
    let exchange_with = |ike: &sdn_vpn::ike::protected::Protected, message: Vec<u8>| {
        let marked = [&[0u8; 4][..], &message].concat();
        let mut own = [0u8; 4096];
        for _ in 0..10 {
            floated.send_to(&marked, float_remote).expect("send");
            if let Ok((n, _)) = floated.recv_from(&mut own)
                && own[..4] == [0; 4]
                && let Ok(opened) = ike.open(&own[4..n])
            {
                return opened;
            }
        }
        panic!("no answer: {}", lab.log());
    };
    let ping = ike.liveness(2).unwrap();
    let alive = exchange_with(&ike, ping);
    assert!(alive.header.is_response() && alive.payloads.is_empty());

    // The child SA is rekeyed (CREATE_CHILD_SA): the new SA carries a ping.
    let rekey = sdn_vpn::ike::rekey::rekey_request(
        &mut ike,
        3,
        child.our_spi,
        0xc1d0_0011,
        &ciphers,
        &[0x55; NONCE_LEN],
        params.local,
        params.remote,
    )
    .unwrap();
    let answered_rekey = exchange_raw(&floated, float_remote, &rekey.bytes)
        .unwrap_or_else(|| panic!("no rekey answer: {}", lab.log()));
    let new_child = sdn_vpn::ike::rekey::read_rekey_response(
        &ike,
        &agreed.keys.sk_d,
        &rekey,
        &answered_rekey,
        &ciphers,
    )
    .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    assert_ne!(new_child.peer_spi, child.peer_spi);
    // Make before break: charon takes the new SA inbound at once and keeps
    // answering on the old one until the old is deleted.
    let mut new_out =
        OutboundSa::new(new_child.cipher, new_child.peer_spi, &new_child.keys_i_to_r).unwrap();
    let mut new_in =
        InboundSa::new(new_child.cipher, new_child.our_spi, &new_child.keys_r_to_i).unwrap();
    let ping_through = |out: &mut OutboundSa, ins: &mut [&mut InboundSa]| {
        let mut own = [0u8; 4096];
        for _ in 0..10 {
            let mut packet = vec![0u8; HEADROOM];
            packet.extend_from_slice(&ping_packet);
            out.seal(&mut packet, 4).unwrap();
            floated.send_to(&packet, float_remote).expect("send ESP");
            if let Ok((n, _)) = floated.recv_from(&mut own) {
                for sa in ins.iter_mut() {
                    let mut esp = own[..n].to_vec();
                    if let Ok(opened) = sa.open(&mut esp) {
                        return Some((sa.spi(), esp[opened.inner].to_vec()));
                    }
                }
            }
        }
        None
    };
    let (_, rekeyed_reply) = ping_through(&mut new_out, &mut [&mut new_in, &mut inbound])
        .unwrap_or_else(|| panic!("no answer to the new SA's ping: {}", lab.log()));
    assert!(rekeyed_reply.ends_with(b"through-the-tunnel"));
    let delete = ike.delete_child(4, child.our_spi).unwrap();
    let deleted = exchange_with(&ike, delete);
    // (The old SA, make before break.) Now charon answers on the new one.
    let (spi, _) = ping_through(&mut new_out, &mut [&mut new_in, &mut inbound])
        .unwrap_or_else(|| panic!("no answer after the old SA's delete: {}", lab.log()));
    assert_eq!(spi, new_child.our_spi);
    let body = &deleted.bytes[deleted.payloads[0].body.clone()];
    assert_eq!(
        sdn_vpn::ike::protected::deleted_esp_spis(body),
        [child.peer_spi],
        "charon deletes its side"
    );
    assert!(
        lab.log().contains("closing CHILD_SA net{1}"),
        "{}",
        lab.log()
    );

    // The IKE SA itself is rekeyed; the new one answers a liveness check,
    // the old one is deleted.
    let rekey_pair = KeyPair::generate().unwrap();
    let ike_rekey = sdn_vpn::ike::rekey::ike_rekey_request(
        &mut ike,
        5,
        0x5d00_0000_0000_0011,
        &ciphers,
        &[0x66; NONCE_LEN],
        &rekey_pair,
    )
    .unwrap();
    let answer = exchange_raw(&floated, float_remote, &ike_rekey.bytes)
        .unwrap_or_else(|| panic!("no IKE rekey answer: {}", lab.log()));
    let renewed = sdn_vpn::ike::rekey::read_ike_rekey_response(
        &ike,
        &agreed,
        &ike_rekey,
        &answer,
        &rekey_pair,
        &ciphers,
    )
    .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    assert_ne!(renewed.keys.sk_d, agreed.keys.sk_d);
    let delete_old = ike.delete_ike(6).unwrap();
    let _ = exchange_raw(&floated, float_remote, &delete_old);
    let mut new_ike = sdn_vpn::ike::protected::Protected::new(&renewed, true).unwrap();
    let ping = new_ike.liveness(0).unwrap();
    let alive = exchange_raw(&floated, float_remote, &ping)
        .and_then(|a| new_ike.open(&a).ok())
        .unwrap_or_else(|| panic!("the new IKE SA does not answer: {}", lab.log()));
    assert!(alive.header.is_response());
    assert!(lab.log().contains("rekeyed"), "{}", lab.log());
}

/// Sends `datagram` to `to` until an answer that `accept` takes comes back
/// (ten tries, each waiting the socket's read timeout).
fn send_until(
    socket: &UdpSocket,
    to: SocketAddrV4,
    datagram: &[u8],
    accept: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut buffer = [0u8; 4096];
    for _ in 0..10 {
        socket.send_to(datagram, to).ok()?;
        if let Ok((n, _)) = socket.recv_from(&mut buffer)
            && accept(&buffer[..n])
        {
            return Some(buffer[..n].to_vec());
        }
    }
    None
}

/// Sends `message` behind the non-ESP marker until an IKE answer comes.
fn exchange_raw(socket: &UdpSocket, to: SocketAddrV4, message: &[u8]) -> Option<Vec<u8>> {
    let marked = [&[0u8; 4][..], message].concat();
    let answer = send_until(socket, to, &marked, |a| a.len() > 4 && a[..4] == [0; 4])?;
    Some(answer[4..].to_vec())
}

#[test]
fn a_wrong_pre_shared_key_establishes_nothing() {
    if !is_root() || !Path::new(CHARON).exists() {
        eprintln!("skipped: needs root and {CHARON}");
        return;
    }
    let mut lab = Lab::new();
    lab.start_charon();
    let local: SocketAddrV4 = format!("{OURS}:500").parse().unwrap();
    let remote: SocketAddrV4 = format!("{THEIRS}:500").parse().unwrap();
    let socket = socket_in(&lab.ours, local);
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let pair = KeyPair::generate().unwrap();
    let ciphers = [Cipher::Aes256Gcm16];
    let sent = request(
        0x5d00_0000_0000_0002,
        &pair,
        &[7; NONCE_LEN],
        &ciphers,
        None,
        local,
        remote,
    );
    let answer = send_until(&socket, remote, &sent.bytes, |_| true);
    let answer = answer.expect("an IKE_SA_INIT answer");
    let agreed = read_response(&sent, &answer, &pair, &ciphers, remote, local).unwrap();
    let floated = socket_in(&lab.ours, format!("{OURS}:4500").parse().unwrap());
    floated
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let params = AuthParams {
        id: OURS.parse().unwrap(),
        peer_id: THEIRS.parse().unwrap(),
        psk: b"not the lab's key",
        local: ("10.81.0.0".parse().unwrap(), 24),
        remote: ("10.82.0.0".parse().unwrap(), 24),
        ciphers: &ciphers,
        spi: 0xc1d0_0002,
    };
    let auth = auth_request(&agreed, &sent.bytes, &params).unwrap();
    let marked = [&[0u8; 4][..], &auth.bytes].concat();
    let float_remote: SocketAddrV4 = format!("{THEIRS}:4500").parse().unwrap();
    let answered = send_until(&floated, float_remote, &marked, |_| true);
    if let Some(a) = answered {
        // charon answers AUTHENTICATION_FAILED (24).
        let refused = read_auth_response(&agreed, &answer, &auth, &a[4..], &params);
        assert!(refused.is_err(), "{refused:?}");
    }
    let log = lab.log();
    assert!(!log.contains("CHILD_SA net{1} established"), "{log}");
    assert!(
        log.contains("MAC mismatched") && log.contains("N(AUTH_FAILED)"),
        "charon says why: {log}"
    );
}

/// The first datagram on `socket` within `wait`.
fn receive(socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddrV4)> {
    let deadline = Instant::now() + wait;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok((n, std::net::SocketAddr::V4(from))) = socket.recv_from(&mut buffer) {
            return Some((buffer[..n].to_vec(), from));
        }
    }
    None
}

#[test]
fn strongswan_initiates_and_we_answer_and_carry_its_ping() {
    use sdn_vpn::ike::auth::respond_auth;
    use sdn_vpn::ike::sa_init::respond;
    if !is_root() || !Path::new(CHARON).exists() {
        eprintln!("skipped: needs root and {CHARON}");
        return;
    }
    let mut lab = Lab::new();
    lab.start_charon();
    let local: SocketAddrV4 = format!("{OURS}:500").parse().unwrap();
    let float_local: SocketAddrV4 = format!("{OURS}:4500").parse().unwrap();
    let socket = socket_in(&lab.ours, local);
    let floated = socket_in(&lab.ours, float_local);
    for s in [&socket, &floated] {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    let vici = format!("unix://{}", lab.dir.join("run/charon.vici").display());
    let initiate = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.theirs,
            "swanctl",
            "--initiate",
            "--child",
            "net",
            "--timeout",
            "10",
            "--uri",
            &vici,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swanctl --initiate");
    let _reaped = Reap(initiate);
    // Under load we answer with a cookie first; charon comes back with it.
    let jar = sdn_vpn::ike::cookie::CookieJar::new().unwrap();
    let (first, from) = receive(&socket, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no IKE_SA_INIT: {}", lab.log()));
    let sdn_vpn::ike::cookie::Verdict::Demand(cookie) = jar.check(&first, from) else {
        panic!("a first request carries no cookie");
    };
    let header = sdn_vpn::ike::message::Message::parse(&first)
        .unwrap()
        .header;
    let demand =
        sdn_vpn::ike::sa_init::refusal(&header, sdn_vpn::ike::sa_init::notify::COOKIE, &cookie);
    socket.send_to(&demand, from).expect("send");
    let (init_request, from) = receive(&socket, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no IKE_SA_INIT with the cookie: {}", lab.log()));
    assert_eq!(
        jar.check(&init_request, from),
        sdn_vpn::ike::cookie::Verdict::Valid,
        "{}",
        lab.log()
    );
    let pair = KeyPair::generate().unwrap();
    let ciphers = [Cipher::Aes256Gcm16, Cipher::Aes128Gcm16];
    let (init_answer, agreed) = respond(
        &init_request,
        0x5d00_0000_0000_00a1,
        &pair,
        &[9; NONCE_LEN],
        &ciphers,
        from,
        local,
    )
    .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    socket.send_to(&init_answer, from).expect("send");
    // A responder answers a retransmitted request again with its answer
    // (charon may have dropped the first while still busy with its own).
    let peer = from;
    let deadline = Instant::now() + Duration::from_secs(8);
    let (auth_request, from) = loop {
        assert!(Instant::now() < deadline, "no IKE_AUTH: {}", lab.log());
        if let Some(got) = receive(&floated, Duration::from_millis(200)) {
            break got;
        }
        if let Some((again, _)) = receive(&socket, Duration::from_millis(10))
            && again == init_request
        {
            socket.send_to(&init_answer, peer).expect("send");
        }
    };
    assert_eq!(&auth_request[..4], &[0; 4], "the non-ESP marker");
    let params = AuthParams {
        id: OURS.parse().unwrap(),
        peer_id: THEIRS.parse().unwrap(),
        psk: PSK.as_bytes(),
        local: ("10.81.0.0".parse().unwrap(), 24),
        remote: ("10.82.0.0".parse().unwrap(), 24),
        ciphers: &ciphers,
        spi: 0xc1d0_00a1,
    };
    let (answer, child) = respond_auth(
        &agreed,
        &init_request,
        &init_answer,
        &auth_request[4..],
        &params,
    )
    .unwrap_or_else(|e| panic!("{e}: {}", lab.log()));
    floated
        .send_to(&[&[0u8; 4][..], &answer].concat(), from)
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.log().contains("CHILD_SA net{1} established") {
        assert!(Instant::now() < deadline, "{}", lab.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // charon's kernel pings our site through the child SA; we answer.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.theirs,
            "ping",
            "-c",
            "1",
            "-W",
            "3",
            "-I",
            "10.82.0.1",
            "10.81.0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping runs");
    let mut inbound = InboundSa::new(child.cipher, child.our_spi, &child.keys_i_to_r).unwrap();
    let mut outbound = OutboundSa::new(child.cipher, child.peer_spi, &child.keys_r_to_i).unwrap();
    let (mut esp, from) = receive(&floated, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no ESP from charon: {}", lab.log()));
    let opened = inbound.open(&mut esp).expect("charon's ESP opens");
    let request = esp[opened.inner].to_vec();
    assert_eq!(request[20], 8, "an echo request");
    assert_eq!(&request[12..16], &[10, 82, 0, 1]);
    let mut reply = request.clone();
    reply[12..16].copy_from_slice(&request[16..20]);
    reply[16..20].copy_from_slice(&request[12..16]);
    reply[20] = 0;
    // The echo reply's checksum: type 8 to 0 adds 0x0800 back.
    let sum = u16::from_be_bytes([reply[22], reply[23]]);
    let (fixed, carry) = sum.overflowing_add(0x0800);
    reply[22..24].copy_from_slice(&(fixed + u16::from(carry)).to_be_bytes());
    let mut packet = vec![0u8; HEADROOM];
    packet.extend_from_slice(&reply);
    outbound.seal(&mut packet, 4).unwrap();
    floated.send_to(&packet, from).expect("send ESP");
    let status = Reap(ping).wait();
    assert!(
        status,
        "charon's ping is answered through the tunnel: {}",
        lab.log()
    );
}

/// The UDP (source, destination) ports of the IPv4 frames of a pcap file
/// (Ethernet link type); other frames are skipped.
fn udp_ports(pcap: &[u8]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(record) = pcap.get(at..at + 16) {
        let len = u32::from_le_bytes([record[8], record[9], record[10], record[11]]) as usize;
        let Some(frame) = pcap.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
            continue;
        }
        let l4 = 14 + usize::from(frame[14] & 0x0f) * 4;
        if let Some(udp) = frame.get(l4..l4 + 4) {
            out.push((
                u16::from_be_bytes([udp[0], udp[1]]),
                u16::from_be_bytes([udp[2], udp[3]]),
            ));
        }
    }
    out
}
