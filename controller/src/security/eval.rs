//! The reference evaluator: the verdict on one packet read straight from the
//! rules, with no flows involved. It is what the compiled tables are tested
//! against, and what decides which live connections a rule change cuts.

use super::rules::{Access, Direction, Layer, Packet, PortPolicy, Protocol, Rule, proto};

/// Whether `rule` matches `packet`.
pub fn rule_matches(rule: &Rule, packet: &Packet) -> bool {
    let proto_ok = match rule.protocol {
        Protocol::Any => true,
        Protocol::Tcp => packet.proto == proto::TCP,
        Protocol::Udp => packet.proto == proto::UDP,
        Protocol::Icmp => packet.proto == proto::ICMP,
        Protocol::Esp => packet.proto == proto::ESP,
        Protocol::Ah => packet.proto == proto::AH,
    };
    if !proto_ok || !rule.src.contains(packet.src) || !rule.dst.contains(packet.dst) {
        return false;
    }
    if !rule.restricts_ports() {
        return true;
    }
    matches!(packet.proto, proto::TCP | proto::UDP)
        && rule.src_ports.iter().any(|r| r.contains(packet.sport))
        && rule.dst_ports.iter().any(|r| r.contains(packet.dport))
}

/// The rule of `layer` that decides `packet`, if any, and its verdict.
pub fn decide<'l>(
    layer: &'l Layer,
    direction: Direction,
    packet: &Packet,
) -> (bool, Option<&'l Rule>) {
    match layer {
        Layer::Nsg { .. } => match layer.rules(direction).find(|r| rule_matches(r, packet)) {
            Some(rule) => (rule.access == Access::Allow, Some(rule)),
            None => (false, None),
        },
        Layer::Acg { outbound_open, .. } => {
            if direction == Direction::Outbound && *outbound_open {
                return (true, None);
            }
            match layer.rules(direction).find(|r| rule_matches(r, packet)) {
                Some(rule) => (true, Some(rule)),
                None => (false, None),
            }
        }
    }
}

/// Whether `policy` lets the first packet of a connection through in
/// `direction`.
pub fn allows(policy: &PortPolicy, direction: Direction, packet: &Packet) -> bool {
    policy
        .layers(direction)
        .into_iter()
        .flatten()
        .all(|layer| decide(layer, direction, packet).0)
}
