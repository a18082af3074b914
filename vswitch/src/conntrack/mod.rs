//! Connection tracking, sans-IO: IPv4 packets, a zone and a clock in, the
//! packet's connection state (`ct_state` bits) out. Connections live in one
//! table keyed by zone and the tuple of either direction; TCP follows a state
//! machine that refuses segments that do not fit; UDP, ICMP echo and other
//! protocols are pseudo-connections that count as established once a reply
//! was seen. An ICMP error quoting a tracked connection is related to it.
//! Only `commit` adds a connection; the table has a maximum size, and a new
//! connection that finds it full is refused (counted) while tracked ones keep
//! flowing. Idle connections expire after a timeout per state.

pub mod packet;
mod query;
pub mod tcp;

pub use query::{ConntrackQuery, ConntrackReport};

use packet::{Kind, Probe, Tuple, probe};
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::time::{Duration, Instant};
use tcp::{TcpState, TcpTrack, is_opening_syn};

/// Bits of `ct_state`, as Open vSwitch names them.
pub mod state {
    /// The first packet(s) of a connection not yet answered.
    pub const NEW: u8 = 0x01;
    /// A packet of a connection that has seen traffic both ways.
    pub const EST: u8 = 0x02;
    /// Related to a tracked connection (an ICMP error about it).
    pub const REL: u8 = 0x04;
    /// Going in the reply direction.
    pub const RPL: u8 = 0x08;
    /// Does not fit its connection's state, or cannot be tracked.
    pub const INV: u8 = 0x10;
    /// Went through connection tracking.
    pub const TRK: u8 = 0x20;

    /// `+trk+new-est…` style text of the set bits.
    pub fn text(bits: u8) -> String {
        let names = [
            (NEW, "new"),
            (EST, "est"),
            (REL, "rel"),
            (RPL, "rpl"),
            (INV, "inv"),
            (TRK, "trk"),
        ];
        names
            .iter()
            .filter(|(bit, _)| bits & bit != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// How long an idle connection stays, per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP during the handshake.
    pub tcp_opening: Duration,
    /// TCP established.
    pub tcp_established: Duration,
    /// TCP closing (FIN_WAIT, CLOSE_WAIT, LAST_ACK).
    pub tcp_closing: Duration,
    /// TCP TIME_WAIT.
    pub tcp_time_wait: Duration,
    /// TCP after a RST.
    pub tcp_closed: Duration,
    /// UDP and other protocols before a reply.
    pub unreplied: Duration,
    /// UDP and other protocols after a reply.
    pub replied: Duration,
    /// ICMP echo.
    pub icmp: Duration,
}

impl Default for Timeouts {
    /// Linux's defaults, with the established timeout of Open vSwitch's
    /// userspace tracker (a day rather than five).
    fn default() -> Self {
        Timeouts {
            tcp_opening: Duration::from_secs(60),
            tcp_established: Duration::from_secs(24 * 3600),
            tcp_closing: Duration::from_secs(120),
            tcp_time_wait: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            unreplied: Duration::from_secs(30),
            replied: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
        }
    }
}

/// Default maximum number of tracked connections.
pub const DEFAULT_CAPACITY: usize = 262_144;

/// Interval between sweeps for expired connections.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Counters of the tracker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Connections committed.
    pub committed: u64,
    /// Connections that expired.
    pub expired: u64,
    /// Packets marked invalid.
    pub invalid: u64,
    /// New connections refused because the table was full.
    pub full_drops: u64,
}

/// Protocol state of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProtoState {
    Tcp(TcpTrack),
    /// UDP, ICMP echo and anything else: whether a reply was seen.
    Pseudo {
        replied: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    /// The tuple of the first packet.
    orig: Tuple,
    proto: ProtoState,
    created: Instant,
    expires: Instant,
    packets: [u64; 2],
}

impl Conn {
    fn replied(&self) -> bool {
        match self.proto {
            ProtoState::Tcp(t) => t.state != TcpState::SynSent,
            ProtoState::Pseudo { replied } => replied,
        }
    }

    fn timeout(&self, timeouts: &Timeouts) -> Duration {
        match self.proto {
            ProtoState::Tcp(t) => match t.state {
                TcpState::SynSent | TcpState::SynRecv => timeouts.tcp_opening,
                TcpState::Established => timeouts.tcp_established,
                TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck => timeouts.tcp_closing,
                TcpState::TimeWait => timeouts.tcp_time_wait,
                TcpState::Closed => timeouts.tcp_closed,
            },
            ProtoState::Pseudo { .. } if self.orig.proto == packet::PROTO_ICMP => timeouts.icmp,
            ProtoState::Pseudo { replied: true } => timeouts.replied,
            ProtoState::Pseudo { replied: false } => timeouts.unreplied,
        }
    }
}

/// The key both directions of a connection share: the zone and the tuple
/// with its lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    zone: u16,
    tuple: Tuple,
}

impl ConnKey {
    /// The key of a probed packet. An ICMP echo is keyed as its request
    /// travels (as Linux keys it with the message type), so that a request
    /// from the responder's side is a connection of its own, not a reply.
    fn of_probe(zone: u16, p: &Probe) -> ConnKey {
        match p.kind {
            Kind::Echo { request: true } => ConnKey {
                zone,
                tuple: p.tuple,
            },
            Kind::Echo { request: false } => ConnKey {
                zone,
                tuple: p.tuple.reversed(),
            },
            _ => ConnKey::of(zone, p.tuple),
        }
    }

    /// The key of a connection whose first packet had `tuple`.
    fn of_orig(zone: u16, tuple: Tuple) -> ConnKey {
        if tuple.proto == packet::PROTO_ICMP {
            ConnKey { zone, tuple }
        } else {
            ConnKey::of(zone, tuple)
        }
    }

    fn of(zone: u16, tuple: Tuple) -> ConnKey {
        let tuple = if (tuple.src, tuple.sport) <= (tuple.dst, tuple.dport) {
            tuple
        } else {
            tuple.reversed()
        };
        ConnKey { zone, tuple }
    }
}

/// The connection under `key` in `conns` unless it expired (then it is
/// removed and counted). One hash lookup either way; borrows only the table,
/// so that the tracker's other fields stay usable beside the connection.
fn live<'c>(
    conns: &'c mut FxHashMap<ConnKey, Conn>,
    counters: &mut Counters,
    key: ConnKey,
    now: Instant,
) -> Option<&'c mut Conn> {
    match conns.entry(key) {
        MapEntry::Occupied(entry) if entry.get().expires <= now => {
            entry.remove();
            counters.expired += 1;
            None
        }
        MapEntry::Occupied(entry) => Some(entry.into_mut()),
        MapEntry::Vacant(_) => None,
    }
}

/// A tracked connection, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Zone.
    pub zone: u16,
    /// The tuple of its first packet.
    pub orig: Tuple,
    /// State name (`ESTABLISHED`, `UNREPLIED`, `REPLIED`…).
    pub state: &'static str,
    /// Time since it was committed.
    pub age: Duration,
    /// Time left before it expires if idle.
    pub expires_in: Duration,
    /// Packets seen from the originator and from the responder.
    pub packets: [u64; 2],
}

/// The connection tracker of one switch.
#[derive(Debug)]
pub struct Conntrack {
    conns: FxHashMap<ConnKey, Conn>,
    capacity: usize,
    timeouts: Timeouts,
    counters: Counters,
    next_sweep: Option<Instant>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new(DEFAULT_CAPACITY, Timeouts::default())
    }
}

impl Conntrack {
    /// A tracker holding at most `capacity` connections.
    pub fn new(capacity: usize, timeouts: Timeouts) -> Conntrack {
        Conntrack {
            conns: FxHashMap::default(),
            capacity,
            timeouts,
            counters: Counters::default(),
            next_sweep: None,
        }
    }

    /// Changes the maximum number of connections (tracked ones above it stay).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Maximum number of connections.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Connections tracked now (some may have expired but not been swept).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Tracks the IPv4 packet `l3` in `zone`; with `commit`, a valid new
    /// connection is added. Returns the packet's `ct_state` bits (always
    /// with `TRK`).
    pub fn track(&mut self, l3: &[u8], zone: u16, commit: bool, now: Instant) -> u8 {
        let bits = match probe(l3) {
            Ok(p) => self.track_probe(&p, zone, commit, now),
            Err(_) => state::INV,
        };
        if bits & state::INV != 0 {
            self.counters.invalid += 1;
        }
        bits | state::TRK
    }

    /// Commits a packet that an earlier pass already tracked in `zone` with
    /// result `earlier`: a new connection not yet tracked is added; anything
    /// else is left as that pass left it (the packet is not counted or fed
    /// to the state machine twice).
    pub fn commit_tracked(&mut self, l3: &[u8], zone: u16, earlier: u8, now: Instant) -> u8 {
        if earlier & state::NEW == 0 {
            return earlier;
        }
        let Ok(p) = probe(l3) else {
            return earlier;
        };
        if self.live(ConnKey::of_probe(zone, &p), now).is_some() {
            return earlier;
        }
        self.track(l3, zone, true, now)
    }

    fn track_probe(&mut self, p: &Probe, zone: u16, commit: bool, now: Instant) -> u8 {
        if let Kind::IcmpError { inner } = p.kind {
            return match self.live(ConnKey::of_orig(zone, inner), now) {
                // The error travels against the quoted packet.
                Some(conn) if conn.orig == inner => state::REL | state::RPL,
                Some(_) => state::REL,
                None => state::INV,
            };
        }
        let key = ConnKey::of_probe(zone, p);
        if let Some(conn) = live(&mut self.conns, &mut self.counters, key, now) {
            let orig = conn.orig == p.tuple;
            let reopen = match (&mut conn.proto, p.kind) {
                (ProtoState::Tcp(t), Kind::Tcp { flags, ack, .. }) => {
                    if orig
                        && is_opening_syn(flags)
                        && matches!(t.state, TcpState::TimeWait | TcpState::Closed)
                    {
                        true
                    } else if !t.update(orig, flags, ack) {
                        return state::INV;
                    } else {
                        false
                    }
                }
                (ProtoState::Pseudo { replied }, _) => {
                    *replied |= !orig;
                    false
                }
                (ProtoState::Tcp(_), _) => return state::INV,
            };
            if !reopen {
                conn.packets[usize::from(!orig)] += 1;
                conn.expires = now + conn.timeout(&self.timeouts);
                let mut bits = if conn.replied() {
                    state::EST
                } else {
                    state::NEW
                };
                if !orig {
                    bits |= state::RPL;
                }
                return bits;
            }
            self.conns.remove(&key);
        }
        let proto = match p.kind {
            Kind::Tcp { flags, seq, .. } if is_opening_syn(flags) => {
                ProtoState::Tcp(TcpTrack::open(seq))
            }
            Kind::Echo { request: true } | Kind::Udp | Kind::Other => {
                ProtoState::Pseudo { replied: false }
            }
            _ => return state::INV,
        };
        if commit {
            if self.conns.len() >= self.capacity {
                self.sweep_now(now);
                if self.conns.len() >= self.capacity {
                    self.counters.full_drops += 1;
                    return state::INV;
                }
            }
            let mut conn = Conn {
                orig: p.tuple,
                proto,
                created: now,
                expires: now,
                packets: [1, 0],
            };
            conn.expires = now + conn.timeout(&self.timeouts);
            self.conns.insert(key, conn);
            self.counters.committed += 1;
        }
        state::NEW
    }

    /// The connection under `key` unless it expired (then it is removed).
    fn live(&mut self, key: ConnKey, now: Instant) -> Option<&mut Conn> {
        live(&mut self.conns, &mut self.counters, key, now)
    }

    /// Removes expired connections, at most once per second.
    pub fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        self.sweep_now(now);
    }

    fn sweep_now(&mut self, now: Instant) {
        let before = self.conns.len();
        self.conns.retain(|_, conn| conn.expires > now);
        self.counters.expired += (before - self.conns.len()) as u64;
    }

    /// Tracked connections, in `zone` or all.
    pub fn list(&self, zone: Option<u16>, now: Instant) -> Vec<ConnInfo> {
        let mut out: Vec<ConnInfo> = self
            .conns
            .iter()
            .filter(|(key, conn)| zone.is_none_or(|z| z == key.zone) && conn.expires > now)
            .map(|(key, conn)| ConnInfo {
                zone: key.zone,
                orig: conn.orig,
                state: match conn.proto {
                    ProtoState::Tcp(t) => t.state.name(),
                    ProtoState::Pseudo { replied: true } => "REPLIED",
                    ProtoState::Pseudo { replied: false } => "UNREPLIED",
                },
                age: now.saturating_duration_since(conn.created),
                expires_in: conn.expires.saturating_duration_since(now),
                packets: conn.packets,
            })
            .collect();
        out.sort_by_key(|c| (c.zone, c.orig));
        out
    }

    /// Forgets the connection whose first packet had `orig` in `zone`;
    /// returns whether it was tracked.
    pub fn remove(&mut self, zone: u16, orig: Tuple) -> bool {
        self.conns.remove(&ConnKey::of_orig(zone, orig)).is_some()
    }

    /// Forgets every connection in `zone` (or all); returns how many.
    pub fn flush(&mut self, zone: Option<u16>) -> usize {
        let before = self.conns.len();
        self.conns
            .retain(|key, _| zone.is_some_and(|z| z != key.zone));
        before - self.conns.len()
    }
}

#[cfg(test)]
mod tests;
