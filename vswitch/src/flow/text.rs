//! The `ovs-ofctl dump-flows`-style text of flow statistics.

use super::action::write_actions;
use super::{FlowStats, PortNo};
use std::fmt::Write;

/// One line per entry, e.g.
/// `cookie=0x1, duration=3.021s, table=0, n_packets=4, n_bytes=392, idle_timeout=300, idle_age=1, priority=100,in_port=p1,dl_src=02:00:00:00:00:01 actions=goto_table:1`.
pub fn format_flow(stats: &FlowStats, port_name: &dyn Fn(PortNo) -> Option<String>) -> String {
    let spec = &stats.spec;
    let mut line = String::new();
    let _ = write!(
        line,
        "cookie={:#x}, duration={:.3}s, table={}, n_packets={}, n_bytes={}, ",
        spec.cookie,
        stats.duration.as_secs_f64(),
        spec.table,
        stats.packets,
        stats.bytes
    );
    if !spec.idle_timeout.is_zero() {
        let _ = write!(line, "idle_timeout={}, ", spec.idle_timeout.as_secs());
    }
    if !spec.hard_timeout.is_zero() {
        let _ = write!(line, "hard_timeout={}, ", spec.hard_timeout.as_secs());
    }
    if spec.send_flow_removed {
        line.push_str("send_flow_rem ");
    }
    let _ = write!(
        line,
        "idle_age={}, priority={}",
        stats.idle_age.as_secs(),
        spec.priority
    );
    let mut matcher = String::new();
    let _ = spec.matcher.write_text(&mut matcher, port_name);
    if !matcher.is_empty() {
        line.push(',');
        line.push_str(&matcher);
    }
    line.push_str(" actions=");
    let _ = write_actions(&mut line, &spec.actions, port_name);
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Action, FlowSpec, MacMatch, Match};
    use crate::testutil::mac;
    use std::time::Duration;

    #[test]
    fn line_like_ovs_ofctl() {
        let stats = FlowStats {
            spec: FlowSpec::new(
                0,
                100,
                Match {
                    in_port: Some(1),
                    eth_src: Some(MacMatch::exact(mac(1))),
                    ..Match::default()
                },
                vec![Action::GotoTable(1)],
            )
            .with_cookie(0x1)
            .with_idle_timeout(Duration::from_secs(300)),
            duration: Duration::from_millis(3021),
            idle_age: Duration::from_millis(1500),
            packets: 4,
            bytes: 392,
        };
        let names = |p: PortNo| (p == 1).then(|| "p1".to_string());
        assert_eq!(
            format_flow(&stats, &names),
            "cookie=0x1, duration=3.021s, table=0, n_packets=4, n_bytes=392, idle_timeout=300, \
             send_flow_rem idle_age=1, priority=100,in_port=p1,dl_src=02:00:00:00:00:01 actions=goto_table:1"
        );
    }
}
