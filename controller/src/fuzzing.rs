//! Bodies of the fuzz targets for the controller's parsers of file input:
//! each takes arbitrary bytes and must never panic. `fuzz/` runs them under
//! libFuzzer; the unit tests run them over seeds and mutations.

use std::path::Path;

/// A topology file: parsed and validated.
pub fn topology(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::topology::parse(text, Path::new("fuzz.yaml"));
    }
}

/// A pcap file.
pub fn pcap(data: &[u8]) {
    let _ = crate::pcap::read_all(data);
}

/// A switch message off the wire, as the controller's session takes it:
/// packet-ins into the L2 application, flow dumps into a re-sync, flow-removed
/// matches into the reconciler.
pub fn switch_message(data: &[u8]) {
    use prost::Message;
    use sdn_proto::southbound as pb;
    use sdn_vswitch::flow::{FlowStats, Match};
    let Ok(message) = pb::SwitchMessage::decode(data) else {
        return;
    };
    let mut reconciler = crate::reconcile::Reconciler::new();
    let mut l2 = crate::l2::L2Switch::new(std::time::Duration::from_secs(300), 16);
    l2.want_base(&mut reconciler);
    match message.body {
        Some(pb::switch_message::Body::PacketIn(packet_in)) => {
            let ids = l2.on_packet_in(packet_in.in_port, &packet_in.data, &mut reconciler);
            let _ = reconciler.sync_ids(&ids);
        }
        Some(pb::switch_message::Body::FlowStatsReply(reply)) => {
            let installed: Vec<_> = reply
                .flows
                .iter()
                .filter_map(|f| FlowStats::try_from(f).ok())
                .map(|s| s.spec)
                .collect();
            l2.adopt(&installed, &mut reconciler);
            reconciler.set_installed(installed);
            let _ = reconciler.sync_all();
        }
        Some(pb::switch_message::Body::FlowRemoved(removed)) => {
            let _ = removed.r#match.as_ref().map(Match::try_from);
        }
        _ => {}
    }
}

/// Seed topologies: the shipped examples.
pub fn seed_topologies() -> Vec<&'static str> {
    vec![
        include_str!("../../topologies/demo.yaml"),
        include_str!("../../topologies/bench-2hosts.yaml"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_survive_seeds_and_mutations() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b" \n:-[]{},#&*!|>'\"0123456789abcdefhnpswxyz/.";
        for seed in seed_topologies() {
            for _ in 0..300 {
                let mut data = seed.as_bytes().to_vec();
                for _ in 0..(next() % 6 + 1) {
                    let at = (next() as usize) % data.len().max(1);
                    match next() % 3 {
                        0 if at < data.len() => {
                            data[at] = alphabet[(next() as usize) % alphabet.len()]
                        }
                        1 => data.truncate(at),
                        _ => data.insert(
                            at.min(data.len()),
                            alphabet[(next() as usize) % alphabet.len()],
                        ),
                    }
                }
                topology(&data);
                pcap(&data);
                switch_message(&data);
            }
        }
        // Alias bombs and deep nesting are refused, not expanded.
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n";
        topology(bomb.as_bytes());
        topology("[".repeat(100_000).as_bytes());
    }
}
