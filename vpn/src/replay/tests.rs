use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// The plain model: every number accepted, and the highest.
#[derive(Default)]
struct Model {
    seen: BTreeSet<u32>,
    top: u32,
}

impl Model {
    fn accept(&mut self, seq: u32) -> Result<(), Replay> {
        if seq == 0 {
            return Err(Replay::Zero);
        }
        if seq <= self.top && self.top - seq >= WINDOW {
            return Err(Replay::TooOld);
        }
        if !self.seen.insert(seq) {
            return Err(Replay::Seen);
        }
        self.top = self.top.max(seq);
        Ok(())
    }
}

#[test]
fn in_order_numbers_pass_once() {
    let mut w = ReplayWindow::new();
    for seq in 1..5000 {
        assert_eq!(w.accept(seq), Ok(()));
        assert_eq!(w.accept(seq), Err(Replay::Seen));
    }
    assert_eq!(w.highest(), 4999);
    assert_eq!(w.check(4999 - WINDOW + 1), Err(Replay::Seen));
    assert_eq!(w.check(4999 - WINDOW), Err(Replay::TooOld));
    assert_eq!(w.check(0), Err(Replay::Zero));
}

#[test]
fn a_late_packet_inside_the_window_passes_once() {
    let mut w = ReplayWindow::new();
    assert_eq!(w.accept(2000), Ok(()));
    assert_eq!(
        w.accept(2000 - WINDOW + 1),
        Ok(()),
        "the oldest in the window"
    );
    assert_eq!(w.accept(2000 - WINDOW + 1), Err(Replay::Seen));
    assert_eq!(w.accept(2000 - WINDOW), Err(Replay::TooOld));
    // A jump past the whole window forgets everything below it.
    assert_eq!(w.accept(2000 + 3 * WINDOW), Ok(()));
    assert_eq!(w.accept(2000 + 2 * WINDOW + 1), Ok(()));
    assert_eq!(w.accept(2000 + 2 * WINDOW), Err(Replay::TooOld));
}

#[test]
fn a_check_does_not_record() {
    let mut w = ReplayWindow::new();
    assert_eq!(w.check(7), Ok(()));
    assert_eq!(w.check(7), Ok(()));
    assert_eq!(w.highest(), 0);
    assert_eq!(w.accept(7), Ok(()));
    assert_eq!(w.check(7), Err(Replay::Seen));
}

#[test]
fn the_top_of_the_sequence_space() {
    let mut w = ReplayWindow::new();
    assert_eq!(w.accept(u32::MAX - 1), Ok(()));
    assert_eq!(w.accept(u32::MAX), Ok(()));
    assert_eq!(w.accept(u32::MAX), Err(Replay::Seen));
    assert_eq!(w.accept(u32::MAX - 5), Ok(()));
}

proptest! {
    /// Reordered, duplicated and far-jumping sequences, long enough for the
    /// bitmap's slots to be reused many times over: the window answers as
    /// the set of everything accepted does.
    #[test]
    fn the_window_agrees_with_the_set_model(
        steps in prop::collection::vec((0u32..3000, -1500i64..40, any::<bool>()), 1..3000)
    ) {
        let mut w = ReplayWindow::new();
        let mut model = Model::default();
        let mut base: i64 = 1;
        for (jump, jitter, repeat) in steps {
            // Mostly forward in small steps, sometimes far, sometimes back.
            base += i64::from(jump % 7) + if jump > 2990 { i64::from(WINDOW) * 2 } else { 0 };
            let seq = (base + jitter).clamp(0, i64::from(u32::MAX)) as u32;
            prop_assert_eq!(w.accept(seq), model.accept(seq), "seq {}", seq);
            if repeat {
                prop_assert_eq!(w.accept(seq), model.accept(seq), "repeat {}", seq);
            }
            prop_assert_eq!(w.highest(), model.top);
        }
    }
}
