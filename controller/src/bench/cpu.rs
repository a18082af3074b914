//! CPU time of processes over a measurement, from their user and system
//! time in `/proc/<pid>/stat` (all threads): how much of one core the
//! processes that forward a path (the switch, HAProxy) used, and how much
//! everything outside the bench's namespaces used meanwhile (the shared
//! machine's other load).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

/// CPU time of a set of processes since a start.
pub(super) struct CpuClock {
    pids: Vec<u32>,
    ticks: Option<u64>,
    started: Instant,
}

impl CpuClock {
    /// Starts counting the CPU time of `pids` (none: nothing to count).
    pub(super) fn start(pids: &[u32]) -> CpuClock {
        CpuClock {
            pids: pids.to_vec(),
            ticks: ticks_of_all(pids),
            started: Instant::now(),
        }
    }

    /// Percent of one core the processes used since the start; `None` for
    /// no processes or when one has gone.
    pub(super) fn percent_of_core(&self) -> Option<f64> {
        let before = self.ticks?;
        let after = ticks_of_all(&self.pids)?;
        percent(after.saturating_sub(before), self.started)
    }
}

/// CPU time of the processes outside some network namespaces (kernel
/// threads included) since a start.
pub(super) struct ElsewhereClock {
    inodes: Vec<u64>,
    excluded: Vec<u32>,
    ticks: HashMap<u32, u64>,
    started: Instant,
}

impl ElsewhereClock {
    /// Starts counting the CPU time of every process whose network
    /// namespace is none of `namespaces`, except `excluded` (processes of
    /// the bench that live outside them) and this one.
    pub(super) fn start(namespaces: &[String], excluded: &[u32]) -> ElsewhereClock {
        let inodes = namespaces
            .iter()
            .filter_map(|n| crate::lab::netns::inode(n).ok())
            .collect::<Vec<_>>();
        let mut excluded = excluded.to_vec();
        excluded.push(std::process::id());
        ElsewhereClock {
            ticks: ticks_outside(&inodes, &excluded),
            inodes,
            excluded,
            started: Instant::now(),
        }
    }

    /// Percent of one core those processes used since the start: the
    /// growth of each one still running (a process that started meanwhile
    /// counts whole; one that ended meanwhile is missed, so this is a lower
    /// bound).
    pub(super) fn percent_of_core(&self) -> Option<f64> {
        let now = ticks_outside(&self.inodes, &self.excluded);
        let grown: u64 = now
            .iter()
            .map(|(pid, after)| after.saturating_sub(self.ticks.get(pid).copied().unwrap_or(0)))
            .sum();
        percent(grown, self.started)
    }
}

/// Ticks over the time since `started` as percent of one core.
fn percent(ticks: u64, started: Instant) -> Option<f64> {
    let elapsed = started.elapsed().as_secs_f64();
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (elapsed > 0.0 && hz > 0).then(|| ticks as f64 / hz as f64 / elapsed * 100.0)
}

/// User plus system ticks of every process whose network namespace's inode
/// is none of `inodes`, by pid, except the `excluded` pids.
fn ticks_outside(inodes: &[u64], excluded: &[u32]) -> HashMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| !excluded.contains(pid))
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| !inodes.contains(&m.ino()))
        })
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, ticks_in_stat(&stat)?))
        })
        .collect()
}

/// User plus system ticks of all `pids`; `None` if there are none or one
/// cannot be read.
fn ticks_of_all(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(0u64, |sum, pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(sum + ticks_in_stat(&stat)?)
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line.
fn ticks_in_stat(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (the state).
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_are_read_past_the_command_name() {
        let stat = "4242 (vswitchd (sw1)) S 1 4242 4242 0 -1 4194560 500 0 0 0 1200 345 0 0 20 0 3 0 9876 0 0";
        assert_eq!(ticks_in_stat(stat), Some(1545));
        assert_eq!(ticks_in_stat("4242 (short) S 1"), None);
        assert_eq!(ticks_in_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_is_counted_and_nothing_is_nothing() {
        let me = CpuClock::start(&[std::process::id()]);
        let spin = Instant::now();
        while spin.elapsed().as_millis() < 30 {
            std::hint::black_box(0u64);
        }
        assert!(me.percent_of_core().is_some());
        assert_eq!(CpuClock::start(&[]).percent_of_core(), None);
        // Everything else on the machine: some figure, never negative.
        let elsewhere = ElsewhereClock::start(&[], &[]);
        assert!(elsewhere.percent_of_core().is_some_and(|p| p >= 0.0));
    }
}
