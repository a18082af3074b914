use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

fn flow(client: u8, src_port: u16) -> FlowTuple {
    FlowTuple {
        src_addr: Ipv4Addr::new(198, 51, 100, client),
        dst_addr: Ipv4Addr::new(203, 0, 113, 50),
        protocol: 6,
        src_port,
        dst_port: 80,
    }
}

fn backends(weights: &[u32]) -> Vec<Backend> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Backend {
            weight,
            ..Backend::new(i as u32, 0x0a1e_0100 + i as u64)
        })
        .collect()
}

fn pool(algorithm: Algorithm, weights: &[u32]) -> Pool {
    Pool::new(algorithm, NoHealthyBackends::Refuse, backends(weights)).unwrap()
}

fn pick(pool: &mut Pool, flow: &FlowTuple) -> u32 {
    match pool.select(flow, |_| 0) {
        Selection::Backend(BackendId(id)) => id,
        Selection::NoBackend => panic!("no backend"),
    }
}

#[test]
fn round_robin_cycles_exactly_and_ignores_weights() {
    let mut pool = pool(Algorithm::RoundRobin, &[1, 5, 1]);
    let picks: Vec<u32> = (0..9).map(|i| pick(&mut pool, &flow(1, i))).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
}

#[test]
fn round_robin_skips_an_unhealthy_backend_and_takes_it_back() {
    let mut pool = pool(Algorithm::RoundRobin, &[1, 1, 1]);
    assert!(pool.set_healthy(BackendId(1), false));
    assert!(
        !pool.set_healthy(BackendId(1), false),
        "no change the second time"
    );
    let picks: Vec<u32> = (0..4).map(|i| pick(&mut pool, &flow(1, i))).collect();
    assert_eq!(picks, [0, 2, 0, 2]);
    pool.set_healthy(BackendId(1), true);
    let picks: Vec<u32> = (0..6).map(|i| pick(&mut pool, &flow(1, i))).collect();
    let mut sorted = picks.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 0, 1, 1, 2, 2], "{picks:?}");
}

#[test]
fn smooth_weighted_round_robin_interleaves_in_proportion() {
    // nginx's documented sequence for weights 5, 1, 1: a a b a c a a.
    let mut pool = pool(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
    let picks: Vec<u32> = (0..7).map(|i| pick(&mut pool, &flow(1, i))).collect();
    assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn no_healthy_backend_refuses_by_default_and_spreads_when_asked() {
    let mut refuse = pool(Algorithm::FiveTupleHash, &[1, 1]);
    refuse.set_healthy(BackendId(0), false);
    refuse.set_healthy(BackendId(1), false);
    assert_eq!(refuse.select(&flow(1, 1), |_| 0), Selection::NoBackend);

    let mut spread = Pool::new(
        Algorithm::RoundRobin,
        NoHealthyBackends::AllProbedUp,
        backends(&[1, 1]),
    )
    .unwrap();
    spread.set_healthy(BackendId(0), false);
    // One healthy backend left: it takes everything.
    assert_eq!(pick(&mut spread, &flow(1, 1)), 1);
    assert_eq!(pick(&mut spread, &flow(1, 2)), 1);
    spread.set_healthy(BackendId(1), false);
    let picks: Vec<u32> = (0..4).map(|i| pick(&mut spread, &flow(1, i))).collect();
    assert_eq!(picks, [0, 1, 0, 1]);
}

#[test]
fn a_draining_backend_takes_no_new_connection_even_when_all_are_down() {
    let mut pool = Pool::new(
        Algorithm::RoundRobin,
        NoHealthyBackends::AllProbedUp,
        backends(&[1, 1]),
    )
    .unwrap();
    pool.set_draining(BackendId(0), true);
    for i in 0..4 {
        assert_eq!(pick(&mut pool, &flow(1, i)), 1);
    }
    pool.set_healthy(BackendId(1), false);
    // All probed up still excludes the draining one.
    assert_eq!(pick(&mut pool, &flow(1, 9)), 1);
    pool.set_draining(BackendId(1), true);
    assert_eq!(pool.select(&flow(1, 9), |_| 0), Selection::NoBackend);
}

#[test]
fn source_ip_hash_keeps_a_client_on_one_backend() {
    let mut pool = pool(Algorithm::SourceIpHash, &[1, 1, 1]);
    let mut seen = HashMap::new();
    for client in 1..=60u8 {
        let first = pick(&mut pool, &flow(client, 1000));
        for port in 1001..1050 {
            assert_eq!(pick(&mut pool, &flow(client, port)), first);
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "60 clients spread over all three: {seen:?}");
}

#[test]
fn source_ip_protocol_separates_protocols_of_one_client_only_by_hash() {
    let mut pool = pool(Algorithm::SourceIpProtocol, &[1, 1, 1, 1]);
    let tcp = pick(&mut pool, &flow(7, 1));
    for port in 2..40 {
        assert_eq!(pick(&mut pool, &flow(7, port)), tcp);
    }
    let udp = FlowTuple {
        protocol: 17,
        ..flow(7, 1)
    };
    let first = pick(&mut pool, &udp);
    assert_eq!(pick(&mut pool, &udp), first);
}

#[test]
fn five_tuple_hash_spreads_one_clients_connections() {
    let mut pool = pool(Algorithm::FiveTupleHash, &[1, 1, 1]);
    let mut counts = [0u32; 3];
    for port in 0..3000 {
        counts[pick(&mut pool, &flow(1, 10_000 + port)) as usize] += 1;
    }
    for count in counts {
        assert!((900..1100).contains(&count), "{counts:?}");
    }
}

#[test]
fn an_unhealthy_backends_flows_move_and_the_others_stay() {
    let mut pool = pool(Algorithm::FiveTupleHash, &[1, 1, 1, 1]);
    let flows: Vec<FlowTuple> = (0..2000).map(|p| flow(3, p)).collect();
    let before: Vec<u32> = flows.iter().map(|f| pick(&mut pool, f)).collect();
    pool.set_healthy(BackendId(2), false);
    for f in &flows {
        assert_ne!(pick(&mut pool, f), 2);
    }
    // Maglev keeps nearly all of the other backends' flows where they were.
    let kept = flows
        .iter()
        .zip(&before)
        .filter(|(f, b)| **b != 2 && pick(&mut pool, f) == **b)
        .count();
    let others = before.iter().filter(|b| **b != 2).count();
    assert!(
        kept as f64 >= others as f64 * 0.97,
        "{kept} of {others} kept"
    );
}

#[test]
fn set_backends_that_do_not_fit_leave_the_pool_as_it_was() {
    let mut pool = Pool::with_table_size(
        Algorithm::FiveTupleHash,
        NoHealthyBackends::Refuse,
        backends(&[1, 1]),
        3,
    )
    .unwrap();
    assert!(pool.set_backends(backends(&[1, 1, 1, 1])).is_err());
    assert_eq!(pool.backends().len(), 2);
    assert!(matches!(
        pool.select(&flow(1, 1), |_| 0),
        Selection::Backend(_)
    ));
    assert!(
        Pool::with_table_size(Algorithm::RoundRobin, NoHealthyBackends::Refuse, vec![], 4).is_err()
    );
}

#[test]
fn least_connections_fills_the_emptiest_per_weight() {
    let mut pool = pool(Algorithm::LeastConnections, &[1, 2, 1]);
    let mut live: HashMap<BackendId, u32> = HashMap::new();
    // Long-lived connections: none closes, so after 40 picks the live
    // counts stand in the ratio of the weights.
    for i in 0..40 {
        let counts = live.clone();
        let Selection::Backend(b) = pool.select(&flow(1, i), |id| *counts.get(&id).unwrap_or(&0))
        else {
            panic!("no backend");
        };
        *live.entry(b).or_default() += 1;
    }
    assert_eq!(live[&BackendId(0)], 10);
    assert_eq!(live[&BackendId(1)], 20);
    assert_eq!(live[&BackendId(2)], 10);
}

/// Reference for least connections: the minimum of live / weight.
fn least_loaded(weights: &[u32], live: &[u32]) -> Vec<usize> {
    let load = |i: usize| live[i] as f64 / weights[i] as f64;
    let min = (0..weights.len()).map(load).fold(f64::INFINITY, f64::min);
    (0..weights.len()).filter(|&i| load(i) == min).collect()
}

proptest! {
    #[test]
    fn least_connections_always_picks_a_least_loaded_backend(
        weights in proptest::collection::vec(1u32..6, 1..6),
        events in proptest::collection::vec((any::<bool>(), any::<u8>()), 1..200),
    ) {
        let mut pool = pool(Algorithm::LeastConnections, &weights);
        let mut live = vec![0u32; weights.len()];
        for (open, which) in events {
            if open {
                let snapshot = live.clone();
                let Selection::Backend(BackendId(b)) =
                    pool.select(&flow(1, 1), |id| snapshot[id.0 as usize])
                else {
                    panic!("no backend");
                };
                prop_assert!(least_loaded(&weights, &live).contains(&(b as usize)));
                live[b as usize] += 1;
            } else {
                let b = usize::from(which) % weights.len();
                live[b] = live[b].saturating_sub(1);
            }
        }
    }

    #[test]
    fn weighted_round_robin_gives_exact_shares_every_cycle(
        weights in proptest::collection::vec(1u32..8, 1..6),
        cycles in 1usize..5,
    ) {
        let mut pool = pool(Algorithm::WeightedRoundRobin, &weights);
        let total: u32 = weights.iter().sum();
        for _ in 0..cycles {
            let mut counts = vec![0u32; weights.len()];
            for i in 0..total {
                counts[pick(&mut pool, &flow(1, i as u16)) as usize] += 1;
            }
            prop_assert_eq!(&counts, &weights);
        }
    }

    #[test]
    fn round_robin_visits_every_candidate_once_per_cycle(n in 1usize..8, cycles in 1usize..4) {
        let mut pool = pool(Algorithm::RoundRobin, &vec![1; n]);
        for _ in 0..cycles {
            let mut picks: Vec<u32> = (0..n).map(|i| pick(&mut pool, &flow(1, i as u16))).collect();
            picks.sort();
            prop_assert_eq!(picks, (0..n as u32).collect::<Vec<_>>());
        }
    }
}
