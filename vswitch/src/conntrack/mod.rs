//! Connection tracking, sans-IO: IPv4 packets, a zone and a clock in, the
//! packet's connection state (`ct_state` bits) and any address translation
//! out. Each connection has the tuple of its first packet (original) and the
//! tuple its replies travel with; both index it, so a packet finds its
//! connection and direction in one lookup. Without NAT the reply tuple is the
//! original reversed; with NAT it holds the translated addresses and ports,
//! chosen so that no two connections share one. TCP follows a state machine
//! that refuses segments that do not fit; UDP, ICMP echo and other protocols
//! are pseudo-connections that count as established once a reply was seen.
//! An ICMP error quoting a tracked connection is related to it. Only
//! `commit` adds a connection; the table has a maximum size, and a new
//! connection that finds it full is refused (counted) while tracked ones keep
//! flowing. Idle connections expire after a timeout per state.

pub mod balance;
pub mod nat;
pub mod packet;
mod query;
pub mod tcp;
pub mod translate;

pub use balance::{LbMark, LiveCounts, Pick, Picked, Traffic};
pub use nat::Translation;
pub use query::{ConntrackQuery, ConntrackReport};

use crate::flow::action::Nat;
use packet::{Kind, Probe, Tuple, probe};
use rustc_hash::FxHashMap;
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
    /// New NATed connections refused because no port (or address) was free.
    pub nat_exhausted: u64,
    /// New balanced connections refused because no backend took them.
    pub lb_no_backend: u64,
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

/// Which way a packet goes along its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dir {
    Orig,
    Reply,
}

/// What an index entry tells apart besides the tuple: ICMP echo requests
/// and replies with the same addresses and identifier are different
/// directions (as Linux keys them by message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Echo {
    No,
    Request,
    Reply,
}

impl Echo {
    fn of(request: Option<bool>) -> Echo {
        match request {
            None => Echo::No,
            Some(true) => Echo::Request,
            Some(false) => Echo::Reply,
        }
    }

    fn flipped(self) -> Echo {
        match self {
            Echo::No => Echo::No,
            Echo::Request => Echo::Reply,
            Echo::Reply => Echo::Request,
        }
    }
}

/// One direction of a connection as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DirKey {
    zone: u16,
    tuple: Tuple,
    echo: Echo,
}

impl DirKey {
    fn of_probe(zone: u16, p: &Probe) -> DirKey {
        let echo = match p.kind {
            Kind::Echo { request } => Echo::of(Some(request)),
            _ => Echo::No,
        };
        DirKey {
            zone,
            tuple: p.tuple,
            echo,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    zone: u16,
    /// The tuple of the first packet.
    orig: Tuple,
    /// The tuple replies travel with.
    reply: Tuple,
    /// Whether the first packet was an echo request.
    echo: bool,
    proto: ProtoState,
    created: Instant,
    expires: Instant,
    packets: [u64; 2],
    /// Bytes of the IP datagrams each way.
    bytes: [u64; 2],
    /// The backend a balanced connection went to.
    lb: Option<LbMark>,
    /// Whether it still counts among its backend's live connections.
    lb_live: bool,
    /// Its idle timeout, if its load-balancing rule sets one.
    idle: Option<Duration>,
}

impl Conn {
    fn replied(&self) -> bool {
        match self.proto {
            ProtoState::Tcp(t) => t.state != TcpState::SynSent,
            ProtoState::Pseudo { replied } => replied,
        }
    }

    fn is_natted(&self) -> bool {
        self.reply != self.orig.reversed()
    }

    fn key(&self, dir: Dir) -> DirKey {
        let echo = if self.echo { Echo::Request } else { Echo::No };
        match dir {
            Dir::Orig => DirKey {
                zone: self.zone,
                tuple: self.orig,
                echo,
            },
            Dir::Reply => DirKey {
                zone: self.zone,
                tuple: self.reply,
                echo: echo.flipped(),
            },
        }
    }

    /// The tuple a packet going `dir` arrives with, and the one it leaves with.
    fn arrives_leaves(&self, dir: Dir) -> (Tuple, Tuple) {
        match dir {
            Dir::Orig => (self.orig, self.reply.reversed()),
            Dir::Reply => (self.reply, self.orig.reversed()),
        }
    }

    fn timeout(&self, timeouts: &Timeouts) -> Duration {
        if let Some(idle) = self.idle {
            match self.proto {
                ProtoState::Tcp(t) if t.state == TcpState::Established => return idle,
                ProtoState::Pseudo { .. } if self.orig.proto != packet::PROTO_ICMP => return idle,
                _ => {}
            }
        }
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

/// A tracked connection, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Zone.
    pub zone: u16,
    /// The tuple of its first packet.
    pub orig: Tuple,
    /// The tuple its replies travel with (the original reversed unless NATed).
    pub reply: Tuple,
    /// An ICMP echo exchange (its tuples carry the identifier as both
    /// ports); other ICMP between the same hosts is tracked apart from it.
    pub echo: bool,
    /// State name (`ESTABLISHED`, `UNREPLIED`, `REPLIED`…).
    pub state: &'static str,
    /// Time since it was committed.
    pub age: Duration,
    /// Time left before it expires if idle.
    pub expires_in: Duration,
    /// Packets seen from the originator and from the responder.
    pub packets: [u64; 2],
    /// The group and backend a balanced connection went to.
    pub backend: Option<LbMark>,
}

/// What tracking decided about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `ct_state` bits (always with `TRK`).
    pub bits: u8,
    /// The rewrite the packet needs, when it belongs to a NATed connection
    /// and the action asked for NAT.
    pub translation: Option<Translation>,
}

/// The connection tracker of one switch.
#[derive(Debug)]
pub struct Conntrack {
    slots: Vec<Option<Conn>>,
    free: Vec<u32>,
    index: FxHashMap<DirKey, (u32, Dir)>,
    capacity: usize,
    timeouts: Timeouts,
    counters: Counters,
    next_sweep: Option<Instant>,
    live_balanced: LiveCounts,
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
            slots: Vec::new(),
            free: Vec::new(),
            index: FxHashMap::default(),
            capacity,
            timeouts,
            counters: Counters::default(),
            next_sweep: None,
            live_balanced: LiveCounts::default(),
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
        self.slots.len() - self.free.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Tracks the IPv4 packet `l3` in `zone`; with `commit`, a valid new
    /// connection is added. Returns the packet's `ct_state` bits (always
    /// with `TRK`).
    pub fn track(&mut self, l3: &[u8], zone: u16, commit: bool, now: Instant) -> u8 {
        self.track_nat(l3, zone, commit, None, now).bits
    }

    /// Tracks `l3` as `track` does, and with `nat` translates: a new
    /// connection committed with `Nat::Src` or `Nat::Dst` gets that
    /// translation (a free port is allocated so that no two connections
    /// share a reply tuple; none free refuses the connection, counted), and
    /// every packet of a NATed connection, and every ICMP error about one,
    /// gets the rewrite its direction needs (`Nat::Existing` sets up nothing).
    pub fn track_nat(
        &mut self,
        l3: &[u8],
        zone: u16,
        commit: bool,
        nat: Option<Nat>,
        now: Instant,
    ) -> Verdict {
        self.track_picking(l3, zone, commit, nat, None, now)
    }

    /// Tracks `l3` for load-balancing group `group`: a new connection that
    /// is committed is DNATed to the backend `pick` chooses (and counted
    /// under it; refused and counted when it chooses none), and every packet
    /// of a balanced connection, both ways, and every ICMP error about one,
    /// gets its rewrite as with `track_nat`.
    pub fn track_balanced(
        &mut self,
        l3: &[u8],
        zone: u16,
        commit: bool,
        group: u32,
        pick: Pick<'_>,
        now: Instant,
    ) -> Verdict {
        self.track_picking(
            l3,
            zone,
            commit,
            Some(Nat::Balance { group }),
            Some(pick),
            now,
        )
    }

    /// Live balanced connections per backend.
    pub fn live_balanced(&self) -> &LiveCounts {
        &self.live_balanced
    }

    /// Packets and bytes per backend of every balanced connection, live or
    /// ended. Walks the table: for listings, not for packets.
    pub fn balanced_traffic(&self) -> rustc_hash::FxHashMap<LbMark, Traffic> {
        let mut out = self.live_balanced.ended().clone();
        for conn in self.slots.iter().flatten() {
            if let Some(mark) = conn.lb {
                out.entry(mark).or_default().add(Traffic {
                    packets: conn.packets[0] + conn.packets[1],
                    bytes: conn.bytes[0] + conn.bytes[1],
                });
            }
        }
        out
    }

    fn track_picking(
        &mut self,
        l3: &[u8],
        zone: u16,
        commit: bool,
        nat: Option<Nat>,
        pick: Option<Pick<'_>>,
        now: Instant,
    ) -> Verdict {
        let mut verdict = match probe(l3) {
            Ok(p) => self.track_probe(&p, l3.len() as u64, zone, commit, nat, pick, now),
            Err(_) => Verdict {
                bits: state::INV,
                translation: None,
            },
        };
        if verdict.bits & state::INV != 0 {
            self.counters.invalid += 1;
        }
        verdict.bits |= state::TRK;
        verdict
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
        if self.live(DirKey::of_probe(zone, &p), now).is_some() {
            return earlier;
        }
        self.track(l3, zone, true, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn track_probe(
        &mut self,
        p: &Probe,
        len: u64,
        zone: u16,
        commit: bool,
        nat: Option<Nat>,
        pick: Option<Pick<'_>>,
        now: Instant,
    ) -> Verdict {
        let refuse = Verdict {
            bits: state::INV,
            translation: None,
        };
        if let Kind::IcmpError { inner, inner_echo } = p.kind {
            // The error travels against the quoted packet: it finds the
            // connection under the quoted tuple reversed.
            let key = DirKey {
                zone,
                tuple: inner.reversed(),
                echo: Echo::of(inner_echo).flipped(),
            };
            let Some((id, dir)) = self.live(key, now) else {
                return refuse;
            };
            let Some(conn) = self.conn(id) else {
                return refuse;
            };
            let bits = match dir {
                Dir::Orig => state::REL,
                Dir::Reply => state::REL | state::RPL,
            };
            let translation = (nat.is_some() && conn.is_natted()).then(|| {
                let (arrives, leaves) = conn.arrives_leaves(dir);
                let (quoted_arrives, _) = conn.arrives_leaves(opposite(dir));
                nat::error_translation(p.tuple, arrives, leaves, quoted_arrives)
            });
            return Verdict { bits, translation };
        }
        let key = DirKey::of_probe(zone, p);
        if let Some((id, dir)) = self.live(key, now) {
            let Some(conn) = self.slots.get_mut(id as usize).and_then(Option::as_mut) else {
                return refuse;
            };
            let orig = dir == Dir::Orig;
            let reopen = match (&mut conn.proto, p.kind) {
                (ProtoState::Tcp(t), Kind::Tcp { flags, ack, .. }) => {
                    if orig
                        && is_opening_syn(flags)
                        && matches!(t.state, TcpState::TimeWait | TcpState::Closed)
                    {
                        true
                    } else if !t.update(orig, flags, ack) {
                        return refuse;
                    } else {
                        false
                    }
                }
                (ProtoState::Pseudo { replied }, _) => {
                    *replied |= !orig;
                    false
                }
                (ProtoState::Tcp(_), _) => return refuse,
            };
            if !reopen {
                conn.packets[usize::from(!orig)] += 1;
                conn.bytes[usize::from(!orig)] += len;
                let closed = matches!(conn.proto, ProtoState::Tcp(t) if matches!(t.state, TcpState::TimeWait | TcpState::Closed));
                if closed
                    && conn.lb_live
                    && let Some(mark) = conn.lb
                {
                    conn.lb_live = false;
                    self.live_balanced.closed(mark);
                }
                conn.expires = now + conn.timeout(&self.timeouts);
                let mut bits = if conn.replied() {
                    state::EST
                } else {
                    state::NEW
                };
                if !orig {
                    bits |= state::RPL;
                }
                let translation = (nat.is_some() && conn.is_natted()).then(|| {
                    let (_, leaves) = conn.arrives_leaves(dir);
                    Translation::Packet { to: leaves }
                });
                return Verdict { bits, translation };
            }
            self.remove_id(id);
        }
        let (proto, echo) = match p.kind {
            Kind::Tcp { flags, seq, .. } if is_opening_syn(flags) => {
                (ProtoState::Tcp(TcpTrack::open(seq)), false)
            }
            Kind::Echo { request: true } => (ProtoState::Pseudo { replied: false }, true),
            Kind::Udp | Kind::Other => (ProtoState::Pseudo { replied: false }, false),
            _ => return refuse,
        };
        let new = Verdict {
            bits: state::NEW,
            translation: None,
        };
        if !commit {
            return new;
        }
        if self.len() >= self.capacity {
            self.sweep_now(now);
            if self.len() >= self.capacity {
                self.counters.full_drops += 1;
                return refuse;
            }
        }
        let mut conn = Conn {
            zone,
            orig: p.tuple,
            reply: p.tuple.reversed(),
            echo,
            proto,
            created: now,
            expires: now,
            packets: [1, 0],
            bytes: [len, 0],
            lb: None,
            lb_live: false,
            idle: None,
        };
        conn.expires = now + conn.timeout(&self.timeouts);
        let mut spec = nat.filter(|n| !matches!(n, Nat::Existing | Nat::Balance { .. }));
        if let (Some(Nat::Balance { .. }), Some(pick)) = (nat, pick) {
            match pick(p.tuple, &self.live_balanced) {
                Some(picked) => {
                    spec = Some(picked.nat);
                    conn.lb = Some(picked.mark);
                    conn.lb_live = true;
                    conn.idle = picked.idle;
                    conn.expires = now + conn.timeout(&self.timeouts);
                }
                None => {
                    self.counters.lb_no_backend += 1;
                    return refuse;
                }
            }
        }
        let reply = match spec {
            Some(spec) => {
                let taken = |reply: Tuple, tracker: &mut Conntrack| {
                    let key = Conn { reply, ..conn }.key(Dir::Reply);
                    tracker.held(key, now)
                };
                match nat::allocate(p.tuple, echo, spec, |r| taken(r, self)) {
                    Some(reply) => reply,
                    None => {
                        self.counters.nat_exhausted += 1;
                        return refuse;
                    }
                }
            }
            None => conn.reply,
        };
        conn.reply = reply;
        if self.held(conn.key(Dir::Reply), now) {
            // Another connection already answers to this reply tuple.
            self.counters.nat_exhausted += 1;
            return refuse;
        }
        let translation = conn.is_natted().then(|| Translation::Packet {
            to: conn.reply.reversed(),
        });
        self.insert(conn);
        self.counters.committed += 1;
        Verdict {
            bits: state::NEW,
            translation,
        }
    }

    fn conn(&self, id: u32) -> Option<&Conn> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    fn insert(&mut self, conn: Conn) {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(conn.key(Dir::Orig), (id, Dir::Orig));
        self.index.insert(conn.key(Dir::Reply), (id, Dir::Reply));
        if let (Some(mark), true) = (conn.lb, conn.lb_live) {
            self.live_balanced.opened(mark);
        }
        self.slots[id as usize] = Some(conn);
    }

    fn remove_id(&mut self, id: u32) -> Option<Conn> {
        let conn = self.slots.get_mut(id as usize)?.take()?;
        if let Some(mark) = conn.lb {
            if conn.lb_live {
                self.live_balanced.closed(mark);
            }
            let traffic = Traffic {
                packets: conn.packets[0] + conn.packets[1],
                bytes: conn.bytes[0] + conn.bytes[1],
            };
            self.live_balanced.retire(mark, traffic);
        }
        for dir in [Dir::Orig, Dir::Reply] {
            let key = conn.key(dir);
            if self.index.get(&key).is_some_and(|&(at, _)| at == id) {
                self.index.remove(&key);
            }
        }
        self.free.push(id);
        Some(conn)
    }

    /// The connection and direction under `key` unless it expired (then it
    /// is removed and counted). One hash lookup.
    fn live(&mut self, key: DirKey, now: Instant) -> Option<(u32, Dir)> {
        let (id, dir) = *self.index.get(&key)?;
        match self.conn(id) {
            Some(conn) if conn.expires > now => Some((id, dir)),
            Some(_) => {
                self.remove_id(id);
                self.counters.expired += 1;
                None
            }
            None => {
                self.index.remove(&key);
                None
            }
        }
    }

    /// Whether a connection that is still open holds `key`. One that has
    /// closed (TCP in TIME_WAIT or CLOSED) gives it up to the new one and is
    /// removed, as a new SYN for a closed connection's own tuple reopens it:
    /// otherwise a client reusing its port towards another frontend or rule
    /// would meet a dead connection's reply tuple and be refused.
    fn held(&mut self, key: DirKey, now: Instant) -> bool {
        let Some((id, _)) = self.live(key, now) else {
            return false;
        };
        let closed = self.conn(id).is_some_and(|c| {
            matches!(c.proto, ProtoState::Tcp(t) if matches!(t.state, TcpState::TimeWait | TcpState::Closed))
        });
        if closed {
            self.remove_id(id);
            self.counters.expired += 1;
        }
        !closed
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
        let expired = self.ids_where(|c| c.expires <= now);
        self.counters.expired += expired.len() as u64;
        for id in expired {
            self.remove_id(id);
        }
    }

    fn ids_where(&self, keep: impl Fn(&Conn) -> bool) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(&keep))
            .map(|(id, _)| id as u32)
            .collect()
    }

    /// Tracked connections, in `zone` or all.
    pub fn list(&self, zone: Option<u16>, now: Instant) -> Vec<ConnInfo> {
        let mut out: Vec<ConnInfo> = self
            .slots
            .iter()
            .flatten()
            .filter(|conn| zone.is_none_or(|z| z == conn.zone) && conn.expires > now)
            .map(|conn| ConnInfo {
                zone: conn.zone,
                orig: conn.orig,
                reply: conn.reply,
                echo: conn.echo,
                state: match conn.proto {
                    ProtoState::Tcp(t) => t.state.name(),
                    ProtoState::Pseudo { replied: true } => "REPLIED",
                    ProtoState::Pseudo { replied: false } => "UNREPLIED",
                },
                age: now.saturating_duration_since(conn.created),
                expires_in: conn.expires.saturating_duration_since(now),
                packets: conn.packets,
                backend: conn.lb,
            })
            .collect();
        out.sort_by_key(|c| (c.zone, c.orig));
        out
    }

    /// Forgets the connection whose first packet had `orig` in `zone`;
    /// returns whether it was tracked.
    pub fn remove(&mut self, zone: u16, orig: Tuple) -> bool {
        for echo in [Echo::No, Echo::Request] {
            let key = DirKey {
                zone,
                tuple: orig,
                echo,
            };
            if let Some(&(id, Dir::Orig)) = self.index.get(&key) {
                return self.remove_id(id).is_some();
            }
        }
        false
    }

    /// Forgets every connection in `zone` (or all); returns how many.
    pub fn flush(&mut self, zone: Option<u16>) -> usize {
        let ids = self.ids_where(|c| zone.is_none_or(|z| z == c.zone));
        for &id in &ids {
            self.remove_id(id);
        }
        ids.len()
    }
}

fn opposite(dir: Dir) -> Dir {
    match dir {
        Dir::Orig => Dir::Reply,
        Dir::Reply => Dir::Orig,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod nat_tests;
