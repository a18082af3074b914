//! Flow logs: one JSON line per denied connection attempt (retransmissions
//! of the same attempt within `DEDUP_WINDOW` count once), at most `rate`
//! lines per second; what the limit holds back is counted and reported in
//! the next line written.

use super::rules::{Direction, RuleRef};
use rustc_hash::FxHashMap;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Packets of one attempt within this window are logged once.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(30);

/// Most attempts remembered for deduplication.
const MAX_REMEMBERED: usize = 16_384;

/// A denied packet, as the log describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// Switch.
    pub switch: String,
    /// Port it arrived on.
    pub in_port: String,
    /// Direction of the rule table that denied it, if known.
    pub direction: Option<Direction>,
    /// The rule, if a rule (or an ACG default deny) denied it.
    pub rule: Option<RuleRef>,
    /// Why: `rule`, `default-deny`, `invalid` (out of state) or
    /// `spoofed-source`.
    pub reason: &'static str,
    /// IP protocol.
    pub proto: u8,
    /// Source.
    pub src: Ipv4Addr,
    /// Source port (ICMP: type).
    pub sport: u16,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Destination port (ICMP: code).
    pub dport: u16,
}

type AttemptKey = (String, u8, Ipv4Addr, u16, Ipv4Addr, u16);

/// The flow log of a lab.
#[derive(Debug)]
pub struct FlowLog {
    path: PathBuf,
    file: Option<File>,
    rate: u32,
    tokens: f64,
    refilled: Option<Instant>,
    recent: FxHashMap<AttemptKey, Instant>,
    /// Attempts not written because of the rate limit, since the last line.
    held_back: u64,
}

impl FlowLog {
    /// A log appending to `path`, at most `rate` lines per second.
    pub fn new(path: &Path, rate: u32) -> FlowLog {
        FlowLog {
            path: path.to_path_buf(),
            file: None,
            rate: rate.max(1),
            tokens: f64::from(rate.max(1)),
            refilled: None,
            recent: FxHashMap::default(),
            held_back: 0,
        }
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line for `denied`, or `None` if it repeats a recent attempt or the
    /// rate limit holds it back.
    pub fn admit(&mut self, denied: &Denied, now: Instant, wall: SystemTime) -> Option<String> {
        let key = (
            denied.switch.clone(),
            denied.proto,
            denied.src,
            denied.sport,
            denied.dst,
            denied.dport,
        );
        if self
            .recent
            .get(&key)
            .is_some_and(|&seen| now.duration_since(seen) < DEDUP_WINDOW)
        {
            return None;
        }
        if self.recent.len() >= MAX_REMEMBERED {
            self.recent
                .retain(|_, seen| now.duration_since(*seen) < DEDUP_WINDOW);
            if self.recent.len() >= MAX_REMEMBERED {
                self.recent.clear();
            }
        }
        self.recent.insert(key, now);
        let rate = f64::from(self.rate);
        if let Some(last) = self.refilled {
            self.tokens = (self.tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
        }
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            self.held_back += 1;
            return None;
        }
        self.tokens -= 1.0;
        let held_back = std::mem::take(&mut self.held_back);
        let time_ms = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let proto = super::rules::proto_name(denied.proto);
        let line = json!({
            "time_ms": time_ms,
            "switch": denied.switch,
            "in_port": denied.in_port,
            "direction": denied.direction.map(Direction::name),
            "action": "deny",
            "reason": denied.reason,
            "group": denied.rule.as_ref().map(|r| r.group.clone()),
            "rule": denied.rule.as_ref().map(|r| r.rule.clone()),
            "priority": denied.rule.as_ref().filter(|r| r.priority > 0).map(|r| r.priority),
            "proto": proto,
            "src": denied.src.to_string(),
            "sport": denied.sport,
            "dst": denied.dst.to_string(),
            "dport": denied.dport,
            "held_back_before": held_back,
        });
        Some(line.to_string())
    }

    /// Logs `denied` if admitted; returns whether a line was written.
    pub fn record(&mut self, denied: &Denied) -> bool {
        let Some(line) = self.admit(denied, Instant::now(), SystemTime::now()) else {
            return false;
        };
        if self.file.is_none() {
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        match &mut self.file {
            Some(file) => writeln!(file, "{line}").is_ok(),
            None => false,
        }
    }
}

/// Describes a packet the firewall sent up for logging: the rule its
/// cookie names, the direction its table enforces, its addresses and ports.
pub fn describe(
    switch: &str,
    compiled: &super::compile::Compiled,
    packet_in: &sdn_proto::southbound::PacketIn,
    in_port: &str,
) -> Option<Denied> {
    use super::compile::*;
    let key = sdn_vswitch::flow::FlowKey::extract(&packet_in.data, packet_in.in_port)?.key;
    let (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst)) = (key.ip_src()?, key.ip_dst()?)
    else {
        return None;
    };
    if key.eth_type() != 0x0800 {
        return None;
    }
    let direction = match u8::try_from(packet_in.table_id).ok()? {
        TABLE_OUT_NIC | TABLE_OUT_SUBNET => Some(Direction::Outbound),
        TABLE_IN_SUBNET | TABLE_IN_NIC => Some(Direction::Inbound),
        _ => None,
    };
    let reason = match packet_in.cookie & COOKIE_KIND_MASK {
        COOKIE_RULE => "rule",
        COOKIE_DEFAULT_DENY => "default-deny",
        COOKIE_INVALID => "invalid",
        COOKIE_SPOOFED => "spoofed-source",
        _ => return None,
    };
    Some(Denied {
        switch: switch.to_string(),
        in_port: in_port.to_string(),
        direction,
        rule: compiled.rule_of(packet_in.cookie).cloned(),
        reason,
        proto: key.ip_proto(),
        src,
        sport: key.tp_src(),
        dst,
        dport: key.tp_dst(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(sport: u16) -> Denied {
        Denied {
            switch: "sw1".into(),
            in_port: "p1".into(),
            direction: Some(Direction::Inbound),
            rule: Some(RuleRef {
                group: "web".into(),
                rule: "deny-ssh".into(),
                direction: Direction::Inbound,
                priority: 100,
            }),
            reason: "rule",
            proto: 6,
            src: Ipv4Addr::new(10, 0, 0, 1),
            sport,
            dst: Ipv4Addr::new(10, 0, 0, 2),
            dport: 22,
        }
    }

    #[test]
    fn one_line_per_attempt_within_the_rate() {
        let mut log = FlowLog::new(Path::new("/nonexistent"), 2);
        let t = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let line = log.admit(&denied(1), t, wall).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["rule"], "deny-ssh");
        assert_eq!(v["priority"], 100);
        assert_eq!(v["dport"], 22);
        assert_eq!(v["time_ms"], 1_000_000);
        // A retransmission of the same attempt is not logged again.
        assert!(log.admit(&denied(1), t, wall).is_none());
        assert!(log.admit(&denied(2), t, wall).is_some());
        // Over the rate: held back and counted in the next line.
        assert!(log.admit(&denied(3), t, wall).is_none());
        let later = t + Duration::from_secs(1);
        let line = log.admit(&denied(4), later, wall).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["held_back_before"], 1);
        // After the window the same attempt is logged again.
        assert!(log.admit(&denied(1), t + DEDUP_WINDOW * 2, wall).is_some());
    }
}
