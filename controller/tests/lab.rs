//! Namespace tests: real labs brought up with the `sdn` binary, real traffic
//! between hosts, captures read back from pcap files, the controller killed and
//! restarted, and teardown that leaves nothing behind. They need root (CI is
//! root) and skip with a message otherwise.

mod support;

use sdn_controller::pcap;
use sdn_controller::topology;
use sdn_vswitch::wire::{EtherType, EthernetFrame, Ipv4Packet, UdpDatagram};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

fn status_json(lab: &Lab) -> Value {
    let out = lab.sdn(&["status", "--lab", &lab.name, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    value["labs"][0].clone()
}

fn flows_json(lab: &Lab) -> Vec<Value> {
    let out = lab.sdn(&["dump-flows", "sw1", "--lab", &lab.name, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let value: Value = serde_json::from_slice(&out.stdout).expect("dump-flows is JSON");
    value["flows"].as_array().expect("flows array").clone()
}

fn mac_of(lab: &Lab, host: &str) -> String {
    let topo = topology::load(&lab.file).expect("topology");
    topo.host(host).expect("host").interfaces[0].mac.to_string()
}

#[test]
fn demo_lab_forwards_and_comes_down_clean() {
    if !is_root() {
        return;
    }
    let name = unique_name("demo");
    let lab = Lab::new(&name, &three_hosts(&name, "secure"));
    let up = lab.up();
    assert!(
        text(&up.stdout).contains(&format!("lab {name} is up")),
        "{}",
        text(&up.stdout)
    );

    lab.ping("h1", "10.0.0.12");
    lab.ping("h2", "10.0.0.13");
    lab.ping("h3", "10.0.0.11");

    let data = pattern(10 * 1024 * 1024, 7);
    let got = tcp_transfer(
        &lab.ns("h2"),
        &lab.ns("h1"),
        "10.0.0.12:7001".parse().unwrap(),
        &data,
    );
    assert_eq!(got.len(), data.len());
    assert!(got == data, "10 MB over TCP h1→h2 arrived altered");
    let got = tcp_transfer(
        &lab.ns("h1"),
        &lab.ns("h3"),
        "10.0.0.11:7002".parse().unwrap(),
        &data[..1_000_000],
    );
    assert!(
        got == data[..1_000_000],
        "1 MB over TCP h3→h1 arrived altered"
    );

    let status = status_json(&lab);
    let switch = &status["switches"][0];
    assert_eq!(switch["running"], true);
    assert_eq!(switch["synced"], true);
    assert_eq!(status["controller"]["running"], true);
    assert_eq!(status["hosts"].as_array().unwrap().len(), 3);

    // Every host's MAC has a learned source entry and a destination entry.
    let flows = flows_json(&lab);
    for host in ["h1", "h2", "h3"] {
        let mac = mac_of(&lab, host);
        assert!(
            flows
                .iter()
                .any(|f| f["match"]["dl_src"] == mac.as_str() && f["table"] == 2),
            "no source entry for {host}"
        );
        let dst = flows
            .iter()
            .find(|f| f["match"]["dl_dst"] == mac.as_str() && f["table"] == 13)
            .expect("destination entry");
        assert!(
            dst["n_packets"].as_u64().unwrap() > 0,
            "the learned entry for {host} carried traffic"
        );
        assert_eq!(dst["idle_timeout"], 300);
    }
    let text_flows = lab.sdn(&["dump-flows", "sw1", "--lab", &name]);
    let listing = text(&text_flows.stdout);
    assert!(
        listing.contains("actions=CONTROLLER:128,goto_table:3"),
        "{listing}"
    );
    assert!(listing.contains("actions=FLOOD"), "{listing}");
    assert!(
        listing.contains("in_port=p1,dl_src="),
        "port names are shown: {listing}"
    );
    let ports = lab.sdn(&["dump-ports", "sw1", "--lab", &name]);
    assert!(
        text(&ports.stdout).contains("port   1 p1"),
        "{}",
        text(&ports.stdout)
    );

    // Up twice: a clear refusal.
    let again = lab.sdn(&["up", lab.file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("is already up"),
        "{}",
        text(&again.stderr)
    );

    let pids: Vec<u32> = lab.record().processes.iter().map(|p| p.pid).collect();
    let record = lab.record();
    let down = lab.sdn(&["down", lab.file.to_str().unwrap()]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        text(&down.stdout).contains("deleted 4 namespace(s)"),
        "{}",
        text(&down.stdout)
    );
    assert!(
        lab.namespaces_left().is_empty(),
        "namespaces left: {:?}",
        lab.namespaces_left()
    );
    assert!(
        record.processes.iter().all(|p| !p.is_alive()),
        "processes left: {pids:?}"
    );
    assert!(
        !sdn_controller::lab::record::run_dir(&name).exists(),
        "run directory left"
    );

    // Down with nothing up: a clear message, not an error.
    let twice = lab.sdn(&["down", lab.file.to_str().unwrap()]);
    assert!(twice.status.success());
    assert!(
        text(&twice.stdout).contains("is not up: nothing to remove"),
        "{}",
        text(&twice.stdout)
    );
}

#[test]
fn capture_writes_the_frames_that_crossed_the_port() {
    if !is_root() {
        return;
    }
    let name = unique_name("cap");
    let lab = Lab::new(&name, &three_hosts(&name, "secure"));
    lab.up();
    lab.ping("h1", "10.0.0.12");
    let file = lab.dir.join("p2.pcap");
    let mut capture = Command::new(sdn_binary())
        .args([
            "capture",
            "sw1",
            "p2",
            "-w",
            file.to_str().unwrap(),
            "--duration",
            "3",
            "--lab",
            &name,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start capture");
    let mut stderr = BufReader::new(capture.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr
        .read_line(&mut line)
        .expect("capture says it started");
    assert!(line.contains("capturing on sw1 port p2"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    let payload = b"sdn capture test payload 0123456789";
    udp_send(
        &lab.ns("h1"),
        "10.0.0.11:40000".parse().unwrap(),
        "10.0.0.12:9999".parse().unwrap(),
        payload,
    );
    lab.ping("h2", "10.0.0.11");
    let status = capture.wait().expect("capture ends");
    assert!(status.success());

    let bytes = std::fs::read(&file).expect("pcap written");
    let (linktype, frames) = pcap::read_all(&bytes).expect("a valid pcap file");
    assert_eq!(linktype, pcap::LINKTYPE_ETHERNET);
    let (h1, h2) = (mac_of(&lab, "h1"), mac_of(&lab, "h2"));
    let udp = frames
        .iter()
        .find_map(|f| {
            let eth = EthernetFrame::new_checked(&f.data[..]).ok()?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let udp = UdpDatagram::new_checked(ip.payload()).ok()?;
            (udp.dst_port() == 9999).then(|| {
                (
                    eth.src_addr(),
                    eth.dst_addr(),
                    eth.ethertype(),
                    ip.src_addr(),
                    udp.payload().to_vec(),
                )
            })
        })
        .expect("the UDP datagram sent to h2 is in the capture");
    assert_eq!(udp.0.to_string(), h1);
    assert_eq!(udp.1.to_string(), h2);
    assert_eq!(udp.2, EtherType::Ipv4);
    assert_eq!(udp.3.to_string(), "10.0.0.11");
    assert_eq!(udp.4, payload.to_vec());
    // Frames in the other direction crossed the port too (h2's echo requests).
    assert!(
        frames
            .iter()
            .any(|f| EthernetFrame::new_checked(&f.data[..])
                .is_ok_and(|e| e.src_addr().to_string() == h2)),
        "frames sent by h2 are captured"
    );
    if let Ok(out) = Command::new("tcpdump")
        .args(["-nr", file.to_str().unwrap()])
        .output()
    {
        assert!(
            out.status.success(),
            "tcpdump reads the file: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("10.0.0.11.40000 > 10.0.0.12.9999: UDP"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn controller_restart_keeps_secure_flows_and_resyncs() {
    if !is_root() {
        return;
    }
    let name = unique_name("restart");
    let lab = Lab::new(&name, &three_hosts(&name, "secure"));
    lab.up();
    lab.ping("h1", "10.0.0.12");
    let h1 = mac_of(&lab, "h1");
    let learned_before = flows_json(&lab)
        .into_iter()
        .find(|f| f["match"]["dl_dst"] == h1.as_str())
        .expect("h1 learned");

    let controller = lab
        .record()
        .process("controller")
        .expect("controller")
        .clone();
    // SAFETY: kill(2) on the lab's own controller process.
    unsafe { libc::kill(controller.pid as libc::pid_t, libc::SIGKILL) };
    wait_for("the controller to die", Duration::from_secs(5), || {
        !controller.is_alive()
    });
    assert_eq!(status_json(&lab)["controller"]["running"], false);

    // Secure mode: installed flows keep forwarding without the controller.
    lab.ping("h1", "10.0.0.12");
    let data = pattern(2 * 1024 * 1024, 3);
    let got = tcp_transfer(
        &lab.ns("h2"),
        &lab.ns("h1"),
        "10.0.0.12:7003".parse().unwrap(),
        &data,
    );
    assert!(
        got == data,
        "TCP during the controller outage arrived altered"
    );

    let refused = lab.sdn(&["up", lab.file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is partly up: controller"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        text(&refused.stderr).contains("--resume"),
        "{}",
        text(&refused.stderr)
    );
    let resumed = lab.sdn(&["up", "--resume", lab.file.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));

    let status = status_json(&lab);
    assert_eq!(status["controller"]["running"], true);
    assert_eq!(status["switches"][0]["synced"], true);
    assert_eq!(
        status["switches"][0]["connections"], 1,
        "a fresh controller counts the switch's connection to it"
    );
    // The restarted controller adopted what the switch had learned: the entry
    // was not reinstalled (it is older than the restart) and still forwards.
    let learned_after = flows_json(&lab)
        .into_iter()
        .find(|f| f["match"]["dl_dst"] == h1.as_str())
        .expect("h1 still learned after the restart");
    assert!(
        learned_after["duration_s"].as_f64().unwrap()
            > learned_before["duration_s"].as_f64().unwrap(),
        "the learned entry survived the restart: {learned_before} → {learned_after}"
    );
    assert_eq!(learned_after["cookie"], learned_before["cookie"]);
    lab.ping("h3", "10.0.0.11");
    let got = tcp_transfer(
        &lab.ns("h3"),
        &lab.ns("h2"),
        "10.0.0.13:7004".parse().unwrap(),
        &data,
    );
    assert!(got == data);
}

#[test]
fn standalone_switch_fails_open_and_comes_back() {
    if !is_root() {
        return;
    }
    let name = unique_name("alone");
    let lab = Lab::new(&name, &three_hosts(&name, "standalone"));
    lab.up();
    let record = lab.record();
    let controller = record.process("controller").expect("controller").clone();
    let switch_log = record.process("sw1").expect("switch").log.clone();
    controller.stop(Duration::from_secs(3));
    wait_for("the switch to fail open", Duration::from_secs(10), || {
        std::fs::read_to_string(&switch_log)
            .is_ok_and(|log| log.contains("failing open as a learning switch"))
    });
    lab.ping("h1", "10.0.0.13");
    lab.ping("h2", "10.0.0.11");
    let resumed = lab.sdn(&["up", "--resume", lab.file.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(status_json(&lab)["switches"][0]["synced"], true);
    lab.ping("h3", "10.0.0.12");
}

#[test]
fn a_crashed_switch_or_a_half_made_lab_is_still_removed() {
    if !is_root() {
        return;
    }
    let name = unique_name("crash");
    let lab = Lab::new(&name, &three_hosts(&name, "secure"));
    lab.up();
    let switch = lab.record().process("sw1").expect("switch").clone();
    // SAFETY: kill(2) on the lab's own switch process.
    unsafe { libc::kill(switch.pid as libc::pid_t, libc::SIGKILL) };
    wait_for("the switch to die", Duration::from_secs(5), || {
        !switch.is_alive()
    });
    assert_eq!(status_json(&lab)["switches"][0]["running"], false);
    let down = lab.sdn(&["down", "--lab", &name]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(lab.namespaces_left().is_empty());

    // `sdn up` killed after making namespaces: the record it wrote first is enough.
    let half = unique_name("half");
    let half_lab = Lab::new(&half, &three_hosts(&half, "secure"));
    let namespaces = vec![half_lab.ns("h1"), half_lab.ns("h2")];
    for n in &namespaces {
        sdn_controller::lab::netns::create(n).expect("create namespace");
    }
    sdn_controller::lab::record::LabRecord {
        name: half.clone(),
        topology: half_lab.file.clone(),
        topology_copy: half_lab.file.clone(),
        created_unix: 0,
        controller: String::new(),
        namespaces,
        processes: Vec::new(),
    }
    .save()
    .expect("write record");
    let down = half_lab.sdn(&["down", "--lab", &half]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(half_lab.namespaces_left().is_empty());

    // Namespaces without a record: refused unless forced.
    let orphan = unique_name("orphan");
    let orphan_lab = Lab::new(&orphan, &three_hosts(&orphan, "secure"));
    sdn_controller::lab::netns::create(&orphan_lab.ns("h1")).expect("create namespace");
    let up = orphan_lab.sdn(&["up", orphan_lab.file.to_str().unwrap()]);
    assert!(!up.status.success());
    assert!(
        text(&up.stderr).contains("already exists, but there is no record"),
        "{}",
        text(&up.stderr)
    );
    let plain = orphan_lab.sdn(&["down", orphan_lab.file.to_str().unwrap()]);
    assert!(!plain.status.success());
    assert!(
        text(&plain.stderr).contains("--force"),
        "{}",
        text(&plain.stderr)
    );
    let forced = orphan_lab.sdn(&["down", "--force", orphan_lab.file.to_str().unwrap()]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(orphan_lab.namespaces_left().is_empty());
}

#[test]
fn a_bad_topology_is_refused_before_anything_is_created() {
    if !is_root() {
        return;
    }
    let name = unique_name("bad");
    let bad = three_hosts(&name, "secure")
        .replace("address: 10.0.0.13/24", "address: 10.0.9.3/24")
        .replace("cidr: 10.0.0.0/16", "cidr: 10.0.0.0/33");
    let lab = Lab::new(&name, &bad);
    let out = lab.sdn(&["up", lab.file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("topology.yaml:4:"),
        "file and line: {stderr}"
    );
    assert!(
        stderr.contains("malformed CIDR \"10.0.0.0/33\""),
        "{stderr}"
    );
    assert!(lab.namespaces_left().is_empty(), "nothing was created");
    assert!(!sdn_controller::lab::record::run_dir(&name).exists());
}

#[test]
fn every_command_has_help() {
    for command in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["down", "--help"],
        vec!["status", "--help"],
        vec!["dump-flows", "--help"],
        vec!["dump-ports", "--help"],
        vec!["capture", "--help"],
        vec!["validate", "--help"],
        vec!["controller", "--help"],
        vec!["bench", "--help"],
        vec!["demo", "--help"],
    ] {
        let out = Command::new(sdn_binary())
            .args(&command)
            .output()
            .expect("run sdn");
        assert!(out.status.success(), "sdn {command:?}");
        assert!(
            text(&out.stdout).contains("Usage: sdn"),
            "sdn {command:?}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn a_port_without_offloads_gets_segmented_frames() {
    if !is_root() {
        return;
    }
    let name = unique_name("nooff");
    let topology = three_hosts(&name, "secure").replace(
        "ports: [{ name: p1 }, { name: p2 }, { name: p3 }]",
        "ports: [{ name: p1 }, { name: p2, offloads: false }, { name: p3 }]",
    );
    let lab = Lab::new(&name, &topology);
    lab.up();
    lab.ping("h1", "10.0.0.12");
    // h1 sends TSO super-frames; p2 cannot take them, so the switch segments them.
    let data = pattern(4 * 1024 * 1024, 11);
    let got = tcp_transfer(
        &lab.ns("h2"),
        &lab.ns("h1"),
        "10.0.0.12:7005".parse().unwrap(),
        &data,
    );
    assert!(
        got == data,
        "TCP h1→h2 through a port without offloads arrived altered"
    );
    let got = tcp_transfer(
        &lab.ns("h1"),
        &lab.ns("h2"),
        "10.0.0.11:7006".parse().unwrap(),
        &data,
    );
    assert!(got == data, "TCP h2→h1 arrived altered");
    let out = lab.sdn(&["dump-ports", "sw1", "--lab", &name, "--json"]);
    let ports: Value = serde_json::from_slice(&out.stdout).expect("dump-ports is JSON");
    assert!(
        ports["datapath"]["segmented_frames"].as_u64().unwrap() > 0,
        "super-frames were segmented in software: {ports}"
    );
    let status = status_json(&lab);
    let p2 = status["switches"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "p2")
        .cloned()
        .unwrap();
    assert_eq!(p2["offloads"], false);
}

#[test]
fn switches_reach_a_controller_over_tcp() {
    if !is_root() {
        return;
    }
    let name = unique_name("tcp");
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let topology = three_hosts(&name, "secure").replacen(
        &format!("name: {name}\n"),
        &format!("name: {name}\ncontroller:\n  listen: tcp:127.0.0.1:{port}\n"),
        1,
    );
    let lab = Lab::new(&name, &topology);
    lab.up();
    assert_eq!(lab.record().controller, format!("tcp:127.0.0.1:{port}"));
    let status = status_json(&lab);
    assert_eq!(status["controller"]["answering"], true);
    assert_eq!(status["switches"][0]["synced"], true);
    lab.ping("h1", "10.0.0.13");
    let flows = flows_json(&lab);
    assert!(
        flows
            .iter()
            .any(|f| f["match"]["dl_dst"] == mac_of(&lab, "h3").as_str()),
        "learned over TCP"
    );
}
