//! What a bench that compares several paths keeps of its runs: per path
//! and measure each run's figure, the CPU of the processes that forward
//! the path and of everything else, and notes; the load-balancer and VPN
//! benches each name their own measures.

use super::median;
use std::marker::PhantomData;

/// A bench's measures: three of them, each with its place.
pub(super) trait Measured: Copy {
    /// Its place among the bench's three measures.
    fn index(self) -> usize;
}

/// The runs of one measure on one path.
#[derive(Debug, Clone, Default)]
pub(super) struct Series {
    /// Each run's figure.
    pub(super) values: Vec<f64>,
    /// Each run's CPU of the forwarding processes, percent of one core.
    pub(super) forwarder_cpu: Vec<f64>,
    /// Each run's CPU of the processes outside the bench (the machine's
    /// other load, a lower bound), percent of one core.
    pub(super) elsewhere_cpu: Vec<f64>,
    /// Each run's 99th percentile latency, ms (where the load tool gives it).
    pub(super) p99_ms: Vec<f64>,
    /// Each run's retransmitted segments (TCP).
    pub(super) retransmits: Vec<u64>,
    /// What went wrong in a run, or why the path was not measured.
    pub(super) notes: Vec<String>,
}

/// Everything measured on one path.
#[derive(Debug, Clone)]
pub(super) struct PathResults<M> {
    /// Its name in the table.
    pub(super) name: &'static str,
    /// Its name in "vs" columns and JSON keys.
    pub(super) label: &'static str,
    series: [Series; 3],
    measures: PhantomData<M>,
}

impl<M: Measured> PathResults<M> {
    /// A path not measured yet.
    pub(super) fn new(name: &'static str, label: &'static str) -> PathResults<M> {
        PathResults {
            name,
            label,
            series: Default::default(),
            measures: PhantomData,
        }
    }

    /// The runs of `measure`.
    pub(super) fn series(&self, measure: M) -> &Series {
        &self.series[measure.index()]
    }

    /// The runs of `measure`, to add to.
    pub(super) fn series_mut(&mut self, measure: M) -> &mut Series {
        &mut self.series[measure.index()]
    }

    /// Notes `note` on every measure (the path could not be measured).
    pub(super) fn note_all(&mut self, note: &str) {
        for series in &mut self.series {
            series.notes.push(note.to_string());
        }
    }
}

/// The smallest and largest finite value.
pub(super) fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    finite.fold(None, |range, v| match range {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// The median and the largest CPU the machine's other processes used in a
/// run of any path and measure.
pub(super) fn elsewhere_load<M>(paths: &[PathResults<M>]) -> Option<(f64, f64)> {
    let all: Vec<f64> = paths
        .iter()
        .flat_map(|p| &p.series)
        .flat_map(|s| s.elsewhere_cpu.iter().copied())
        .collect();
    Some((median(&all)?, min_max(&all)?.1))
}
