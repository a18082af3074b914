//! NAT for tracked connections, in tuples: the reply tuple a new connection
//! gets for a source or destination translation (with a port, or ICMP echo
//! identifier, that no other connection answers to), and the rewrite a
//! packet or an ICMP error needs. `translate` applies rewrites to bytes.

use super::packet::{PROTO_TCP, PROTO_UDP, Tuple};
use crate::flow::action::Nat;
use std::net::Ipv4Addr;

/// Ports tried when a translation asks for none and the connection's own is taken.
const FALLBACK_PORTS: (u16, u16) = (1024, 65535);

/// A rewrite of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Give the packet this tuple (addresses; ports, or the ICMP echo
    /// identifier in both port fields).
    Packet {
        /// The tuple it leaves with.
        to: Tuple,
    },
    /// An ICMP error about a NATed connection: its own addresses, and the
    /// tuple the packet it quotes had before that packet was translated.
    Error {
        /// Source of the error.
        outer_src: Ipv4Addr,
        /// Destination of the error.
        outer_dst: Ipv4Addr,
        /// The quoted packet's tuple.
        inner: Tuple,
    },
}

/// The reply tuple of a connection whose first packet had `orig` (an ICMP
/// echo request if `echo`), translated by `spec`, choosing a port (echo:
/// identifier) for which `taken` is false. `None` when every candidate is
/// taken. `Nat::Existing` leaves the connection untranslated.
pub fn allocate(
    orig: Tuple,
    echo: bool,
    spec: Nat,
    mut taken: impl FnMut(Tuple) -> bool,
) -> Option<Tuple> {
    let ported = matches!(orig.proto, PROTO_TCP | PROTO_UDP);
    let plain = orig.reversed();
    match spec {
        // A balanced connection arrives here with its backend's DNAT.
        Nat::Existing | Nat::Balance { .. } => Some(plain),
        Nat::Dst { addr, port } => {
            // Replies come from the new destination (and port) to the client.
            let mut reply = Tuple { src: addr, ..plain };
            if let Some(port) = port
                && matches!(orig.proto, PROTO_TCP | PROTO_UDP)
            {
                reply.sport = port;
            }
            (!taken(reply)).then_some(reply)
        }
        Nat::Src { addr, ports } => {
            // Replies go to the new source: its port is the one to choose.
            let with_port = |port: u16| {
                let mut reply = Tuple { dst: addr, ..plain };
                if echo {
                    // Echo: the identifier is both "ports".
                    reply.sport = port;
                    reply.dport = port;
                } else if ported {
                    reply.dport = port;
                }
                reply
            };
            let own = orig.sport;
            if !ported && !echo {
                let reply = with_port(own);
                return (!taken(reply)).then_some(reply);
            }
            let range = ports.unwrap_or((own, own));
            if let Some(reply) = search(range, own, orig, &with_port, &mut taken) {
                return Some(reply);
            }
            match ports {
                None => search(FALLBACK_PORTS, own, orig, &with_port, &mut taken),
                Some(_) => None,
            }
        }
    }
}

/// The first free candidate in `lo..=hi`: the connection's own port if it
/// lies inside, else from a position spread by the tuple, then onwards.
fn search(
    (lo, hi): (u16, u16),
    own: u16,
    orig: Tuple,
    with_port: &impl Fn(u16) -> Tuple,
    taken: &mut impl FnMut(Tuple) -> bool,
) -> Option<Tuple> {
    if lo > hi {
        return None;
    }
    let size = u32::from(hi - lo) + 1;
    let start = if (lo..=hi).contains(&own) {
        u32::from(own - lo)
    } else {
        spread(orig) % size
    };
    (0..size)
        .map(|i| with_port(lo + ((start + i) % size) as u16))
        .find(|reply| !taken(*reply))
}

/// A number from the tuple, so that different connections start their
/// search in different places of a port range.
fn spread(t: Tuple) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in t
        .src
        .octets()
        .into_iter()
        .chain(t.dst.octets())
        .chain(t.sport.to_be_bytes())
        .chain(t.dport.to_be_bytes())
        .chain([t.proto])
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// The rewrite of an ICMP error whose own addresses are `outer`, about a
/// connection along which the error goes the way that packets `arrives`
/// with and `leaves` with; `quoted_arrives` is the tuple the quoted packet
/// had before it was translated. An outer address is rewritten where that
/// direction's translation changes it (as Linux does).
pub fn error_translation(
    outer: Tuple,
    arrives: Tuple,
    leaves: Tuple,
    quoted_arrives: Tuple,
) -> Translation {
    Translation::Error {
        outer_src: if arrives.src != leaves.src {
            leaves.src
        } else {
            outer.src
        },
        outer_dst: if arrives.dst != leaves.dst {
            leaves.dst
        } else {
            outer.dst
        },
        inner: quoted_arrives,
    }
}
