use super::packet::build::*;
use super::packet::{ACK, FIN, RST, SYN};
use super::state::*;
use super::*;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn track(ct: &mut Conntrack, p: &[u8], commit: bool, now: Instant) -> u8 {
    ct.track(p, 7, commit, now)
}

#[test]
fn tcp_connection_both_ways() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    let syn = tcp(A, 4000, B, 80, SYN, 100, 0);
    assert_eq!(track(&mut ct, &syn, false, t), TRK | NEW);
    assert!(ct.is_empty(), "only commit adds");
    assert_eq!(track(&mut ct, &syn, true, t), TRK | NEW);
    assert_eq!(ct.len(), 1);
    // A retransmitted SYN is still new.
    assert_eq!(track(&mut ct, &syn, true, t), TRK | NEW);
    let syn_ack = tcp(B, 80, A, 4000, SYN | ACK, 500, 101);
    assert_eq!(track(&mut ct, &syn_ack, false, t), TRK | EST | RPL);
    let ack = tcp(A, 4000, B, 80, ACK, 101, 501);
    assert_eq!(track(&mut ct, &ack, false, t), TRK | EST);
    let list = ct.list(None, t);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, "ESTABLISHED");
    assert_eq!(list[0].zone, 7);
    assert_eq!(list[0].packets, [3, 1]);
    // Another zone knows nothing of it.
    assert_eq!(ct.track(&ack, 8, false, t), TRK | INV);
    // Closing.
    assert_eq!(
        track(&mut ct, &tcp(A, 4000, B, 80, FIN | ACK, 101, 501), false, t),
        TRK | EST
    );
    assert_eq!(
        track(&mut ct, &tcp(B, 80, A, 4000, FIN | ACK, 501, 102), false, t),
        TRK | EST | RPL
    );
    assert_eq!(
        track(&mut ct, &tcp(A, 4000, B, 80, ACK, 102, 502), false, t),
        TRK | EST
    );
    assert_eq!(ct.list(None, t)[0].state, "TIME_WAIT");
    // A new SYN on the same ports opens a fresh connection.
    assert_eq!(
        track(&mut ct, &tcp(A, 4000, B, 80, SYN, 9000, 0), true, t),
        TRK | NEW
    );
    assert_eq!(ct.list(None, t)[0].state, "SYN_SENT");
}

#[test]
fn refuses_out_of_state_tcp() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    // A SYN-ACK nobody asked for, and data before any handshake.
    assert_eq!(
        track(&mut ct, &tcp(B, 80, A, 4000, SYN | ACK, 1, 1), true, t),
        TRK | INV
    );
    assert_eq!(
        track(&mut ct, &tcp(A, 4000, B, 80, ACK, 1, 1), true, t),
        TRK | INV
    );
    assert!(ct.is_empty());
    // Data from the originator before the SYN-ACK.
    track(&mut ct, &tcp(A, 4000, B, 80, SYN, 100, 0), true, t);
    assert_eq!(
        track(&mut ct, &tcp(A, 4000, B, 80, ACK, 101, 1), false, t),
        TRK | INV
    );
    // A SYN-ACK that acknowledges another SYN.
    assert_eq!(
        track(&mut ct, &tcp(B, 80, A, 4000, SYN | ACK, 1, 55), false, t),
        TRK | INV
    );
    assert_eq!(ct.counters().invalid, 4);
    // A RST from the responder closes it; later data is invalid.
    assert_eq!(
        track(&mut ct, &tcp(B, 80, A, 4000, RST | ACK, 0, 101), false, t),
        TRK | RPL | EST
    );
    assert_eq!(
        track(&mut ct, &tcp(A, 4000, B, 80, ACK, 101, 1), false, t),
        TRK | INV
    );
}

#[test]
fn udp_and_icmp_pseudo_connections() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    let q = udp(A, 5353, B, 53);
    assert_eq!(track(&mut ct, &q, true, t), TRK | NEW);
    assert_eq!(
        track(&mut ct, &q, true, t),
        TRK | NEW,
        "unreplied stays new"
    );
    assert_eq!(
        track(&mut ct, &udp(B, 53, A, 5353), false, t),
        TRK | EST | RPL
    );
    assert_eq!(track(&mut ct, &q, false, t), TRK | EST);
    // Echo: a reply without a request is invalid; with one it is a reply.
    assert_eq!(track(&mut ct, &echo(B, A, false, 9), false, t), TRK | INV);
    assert_eq!(track(&mut ct, &echo(A, B, true, 9), true, t), TRK | NEW);
    assert_eq!(
        track(&mut ct, &echo(B, A, false, 9), false, t),
        TRK | EST | RPL
    );
    assert_eq!(track(&mut ct, &echo(B, A, false, 10), false, t), TRK | INV);
    // A request from the other side with the same identifier is its own connection.
    assert_eq!(track(&mut ct, &echo(B, A, true, 9), false, t), TRK | NEW);
}

#[test]
fn icmp_errors_are_related() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    let q = udp(A, 5353, B, 53);
    let unreachable = icmp_error(B, A, 3, &q);
    assert_eq!(
        track(&mut ct, &unreachable, true, t),
        TRK | INV,
        "nothing to relate to"
    );
    track(&mut ct, &q, true, t);
    assert_eq!(track(&mut ct, &unreachable, false, t), TRK | REL | RPL);
    assert_eq!(ct.len(), 1, "errors never add connections");
}

#[test]
fn connections_expire_per_state() {
    let timeouts = Timeouts {
        unreplied: Duration::from_secs(5),
        replied: Duration::from_secs(50),
        ..Timeouts::default()
    };
    let mut ct = Conntrack::new(16, timeouts);
    let t = Instant::now();
    track(&mut ct, &udp(A, 1, B, 2), true, t);
    track(&mut ct, &udp(A, 3, B, 4), true, t);
    track(&mut ct, &udp(B, 4, A, 3), false, t);
    ct.sweep(t + Duration::from_secs(6));
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.list(None, t + Duration::from_secs(6))[0].orig.sport, 3);
    // A packet after expiry finds nothing.
    assert_eq!(
        track(
            &mut ct,
            &udp(B, 4, A, 3),
            false,
            t + Duration::from_secs(60)
        ),
        TRK | NEW
    );
    assert!(ct.is_empty());
    assert_eq!(ct.counters().expired, 2);
}

#[test]
fn a_full_table_refuses_new_but_keeps_tracked() {
    let mut ct = Conntrack::new(2, Timeouts::default());
    let t = Instant::now();
    track(&mut ct, &udp(A, 1, B, 2), true, t);
    track(&mut ct, &udp(A, 3, B, 4), true, t);
    assert_eq!(track(&mut ct, &udp(A, 5, B, 6), true, t), TRK | INV);
    assert_eq!(ct.counters().full_drops, 1);
    assert_eq!(track(&mut ct, &udp(B, 2, A, 1), false, t), TRK | EST | RPL);
    // Without commit a new packet is only looked at: still new.
    assert_eq!(track(&mut ct, &udp(A, 5, B, 6), false, t), TRK | NEW);
}

#[test]
fn remove_and_flush() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    let q = udp(A, 1, B, 2);
    ct.track(&q, 1, true, t);
    ct.track(&q, 2, true, t);
    ct.track(&udp(A, 5, B, 6), 2, true, t);
    let orig = packet::probe(&q).unwrap().tuple;
    assert!(ct.remove(1, orig.reversed()) || ct.remove(1, orig));
    assert_eq!(ct.list(Some(1), t).len(), 0);
    assert_eq!(ct.flush(Some(2)), 2);
    assert!(ct.is_empty());
}

#[test]
fn garbage_is_invalid() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    assert_eq!(track(&mut ct, &[], true, t), TRK | INV);
    assert_eq!(track(&mut ct, &[0x45; 19], true, t), TRK | INV);
    assert_eq!(state::text(TRK | EST | RPL), "est+rpl+trk");
}

#[test]
fn a_commit_after_a_lookup_counts_the_packet_once() {
    let mut ct = Conntrack::default();
    let t = Instant::now();
    let q = udp(A, 1, B, 2);
    for expected in [1, 2] {
        let earlier = ct.track(&q, 7, false, t);
        assert_eq!(ct.commit_tracked(&q, 7, earlier, t), TRK | NEW);
        assert_eq!(ct.list(None, t)[0].packets, [expected, 0]);
    }
    // Established, invalid and related packets are left as they were.
    assert_eq!(ct.commit_tracked(&q, 7, TRK | EST, t), TRK | EST);
    let syn_ack = tcp(B, 80, A, 4000, SYN | ACK, 1, 1);
    let earlier = ct.track(&syn_ack, 7, false, t);
    assert_eq!(ct.commit_tracked(&syn_ack, 7, earlier, t), TRK | INV);
    assert_eq!(ct.len(), 1);
}
