use super::*;

const A: BackendId = BackendId(1);
const B: BackendId = BackendId(2);

fn config() -> ProbeConfig {
    ProbeConfig {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(2),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    }
}

/// How a simulated backend answers a probe started at a given time: after
/// a delay with an outcome, or never.
type Answer = dyn Fn(BackendId, Duration) -> Option<(ProbeOutcome, Duration)>;

/// Runs `prober` under virtual time from `t0` for `length`, answering
/// probes by `answer` (called with the backend and the time since `t0`),
/// and returns every transition with the time since `t0` it happened at.
fn simulate(
    prober: &mut Prober,
    t0: Instant,
    length: Duration,
    answer: &Answer,
) -> Vec<(Duration, Transition)> {
    let mut pending: Vec<(Instant, ProbeStart, ProbeOutcome)> = Vec::new();
    let mut seen = Vec::new();
    let end = t0 + length;
    loop {
        let next_result = pending.iter().map(|p| p.0).min();
        let now = match (prober.poll_timeout(), next_result) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).expect("the prober always has a timer"),
        };
        if now > end {
            return seen;
        }
        // Results due now first, as a socket's answer would be read before
        // the timer fires.
        pending.sort_by_key(|p| p.0);
        while pending.first().is_some_and(|p| p.0 <= now) {
            let (at, start, outcome) = pending.remove(0);
            prober.on_result(start, outcome, at);
        }
        prober.handle_timeout(now);
        while let Some(start) = prober.poll_start() {
            if let Some((outcome, delay)) = answer(start.backend, now - t0) {
                pending.push((now + delay, start, outcome));
            }
        }
        while let Some(t) = prober.poll_transition() {
            seen.push((now - t0, t));
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn up(_: BackendId, _: Duration) -> Option<(ProbeOutcome, Duration)> {
    Some((ProbeOutcome::Success, Duration::from_millis(1)))
}

#[test]
fn first_result_settles_an_unknown_backend() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A, B], t0);
    assert_eq!(prober.health(A), Some(Health::Unknown));
    assert_eq!(prober.poll_timeout(), Some(t0));
    let answer = |b: BackendId, _: Duration| match b {
        A => Some((ProbeOutcome::Success, Duration::from_millis(1))),
        _ => Some((ProbeOutcome::Failure, Duration::from_millis(1))),
    };
    let seen = simulate(&mut prober, t0, secs(1), &answer);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(prober.health(A), Some(Health::Healthy));
    assert_eq!(prober.health(B), Some(Health::Unhealthy));
    let (outcome, at) = prober.last_result(A).unwrap();
    assert_eq!(
        (outcome, at - t0),
        (ProbeOutcome::Success, Duration::from_millis(1))
    );
}

#[test]
fn a_dead_backend_falls_after_threshold_intervals() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A], t0);
    // Up, then refused from 12 s on: probes at 15, 20, 25 fail; the third
    // (fall = 3) takes it out.
    let answer = |_: BackendId, at: Duration| {
        let outcome = if at < secs(12) {
            ProbeOutcome::Success
        } else {
            ProbeOutcome::Failure
        };
        Some((outcome, Duration::from_millis(1)))
    };
    let seen = simulate(&mut prober, t0, secs(40), &answer);
    let (at, t) = seen[1];
    assert_eq!((t.from, t.to), (Health::Healthy, Health::Unhealthy));
    assert_eq!(at, secs(25) + Duration::from_millis(1));
    assert_eq!(seen.len(), 2);
}

#[test]
fn a_silent_backend_times_out_and_falls() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A], t0);
    let answer = |_: BackendId, at: Duration| {
        (at < secs(1)).then_some((ProbeOutcome::Success, Duration::from_millis(1)))
    };
    let seen = simulate(&mut prober, t0, secs(30), &answer);
    // Probes at 5, 10, 15 go unanswered; each fails at its 2 s timeout.
    assert_eq!(seen.last().unwrap().0, secs(17));
    assert_eq!(prober.health(A), Some(Health::Unhealthy));
}

#[test]
fn a_restarted_backend_rises_after_threshold_successes() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A], t0);
    let answer = |_: BackendId, at: Duration| {
        let outcome = if at < secs(21) {
            ProbeOutcome::Failure
        } else {
            ProbeOutcome::Success
        };
        Some((outcome, Duration::from_millis(1)))
    };
    let seen = simulate(&mut prober, t0, secs(40), &answer);
    let (at, t) = seen[1];
    assert_eq!((t.from, t.to), (Health::Unhealthy, Health::Healthy));
    // Successes at 25 and 30 (rise = 2).
    assert_eq!(at, secs(30) + Duration::from_millis(1));
}

#[test]
fn a_slow_answer_is_a_failure_and_its_late_result_is_ignored() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A], t0);
    prober.handle_timeout(t0);
    let start = prober.poll_start().unwrap();
    prober.handle_timeout(t0 + secs(2));
    assert_eq!(prober.health(A), Some(Health::Unhealthy));
    assert!(!prober.on_result(start, ProbeOutcome::Success, t0 + secs(3)));
    assert_eq!(prober.health(A), Some(Health::Unhealthy));
}

#[test]
fn flapping_under_the_thresholds_changes_nothing() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A], t0);
    // After the first success, two failures and one success in turn: never
    // the three failures in a row that fall needs.
    let answer = |_: BackendId, at: Duration| {
        let round = at.as_secs() / 5;
        let outcome = if round.is_multiple_of(3) {
            ProbeOutcome::Success
        } else {
            ProbeOutcome::Failure
        };
        Some((outcome, Duration::from_millis(1)))
    };
    let seen = simulate(&mut prober, t0, secs(120), &answer);
    assert_eq!(seen.len(), 1, "only the first settling: {seen:?}");
    assert_eq!(prober.health(A), Some(Health::Healthy));
}

#[test]
fn one_probe_in_flight_per_backend_and_the_cadence_holds() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A, B], t0);
    let mut starts = Vec::new();
    for s in 0..=20u64 {
        prober.handle_timeout(t0 + secs(s));
        while let Some(start) = prober.poll_start() {
            starts.push((s, start.backend));
            prober.on_result(start, ProbeOutcome::Success, t0 + secs(s));
        }
    }
    let a: Vec<u64> = starts.iter().filter(|x| x.1 == A).map(|x| x.0).collect();
    assert_eq!(a, [0, 5, 10, 15, 20]);
    assert_eq!(starts.len(), 10);
}

#[test]
fn a_stall_restarts_the_cadence_instead_of_bursting() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A], t0);
    prober.handle_timeout(t0);
    let start = prober.poll_start().unwrap();
    prober.on_result(start, ProbeOutcome::Success, t0);
    prober.handle_timeout(t0 + secs(31));
    assert!(prober.poll_start().is_some());
    assert!(prober.poll_start().is_none(), "one probe, not six");
    assert!(prober.poll_timeout().unwrap() >= t0 + secs(33));
}

#[test]
fn changing_the_set_keeps_state_and_ignores_removed_backends() {
    let t0 = Instant::now();
    let mut prober = Prober::new(config(), &[A, B], t0);
    simulate(&mut prober, t0, secs(1), &up);
    prober.handle_timeout(t0 + secs(5));
    let mut in_flight = Vec::new();
    while let Some(s) = prober.poll_start() {
        in_flight.push(s);
    }
    let c = BackendId(3);
    prober.set_backends(&[A, c], t0 + secs(6));
    assert_eq!(prober.health(A), Some(Health::Healthy));
    assert_eq!(prober.health(B), None);
    assert_eq!(prober.health(c), Some(Health::Unknown));
    let b_attempt = in_flight.iter().find(|s| s.backend == B).unwrap();
    assert!(!prober.on_result(*b_attempt, ProbeOutcome::Failure, t0 + secs(6)));
    let a_attempt = in_flight.iter().find(|s| s.backend == A).unwrap();
    assert!(prober.on_result(*a_attempt, ProbeOutcome::Success, t0 + secs(6)));
    assert_eq!(
        prober.poll_timeout(),
        Some(t0 + secs(6)),
        "the new one is due"
    );
}
