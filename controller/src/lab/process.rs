//! Background processes of a lab (controller, switches): started detached
//! with their output in a log file, recognised later by pid *and* start time
//! (so a reused pid is never mistaken for ours), and stopped gently, then
//! firmly.

use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// `controller` or `switch`.
    pub role: String,
    /// Component name (`controller`, or the switch name).
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// Where its output goes.
    pub log: PathBuf,
    /// The command line, to start it again.
    pub argv: Vec<String>,
}

/// Field 22 of `/proc/PID/stat` and the state letter, if the process exists.
fn stat_of(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 3 is fields[0]; field 22 is fields[19].
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The start time of `pid`, if it runs.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_of(pid).map(|(_, start)| start)
}

impl ProcessRecord {
    /// Whether the very process recorded is still running (not a zombie).
    pub fn is_alive(&self) -> bool {
        matches!(stat_of(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }

    /// Asks the process to stop (SIGTERM), then kills it after `grace`.
    /// Returns once it is gone.
    pub fn stop(&self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        let pid = self.pid as libc::pid_t;
        // SAFETY: kill(2) on a pid we verified is our process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while self.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_alive() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Starts `argv` in its own session, detached from the terminal, with stdout
/// and stderr appended to `log`.
pub fn spawn_detached(
    role: &str,
    name: &str,
    argv: &[String],
    log: &Path,
) -> io::Result<ProcessRecord> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command line"))?;
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid(2) is async-signal-safe; it runs in the child before exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("start {program}: {e}")))?;
    let pid = child.id();
    // The child is reaped by init once we exit; we only keep its identity.
    drop(child);
    let start_time = start_time(pid).ok_or_else(|| {
        io::Error::other(format!("{program} exited at once; see {}", log.display()))
    })?;
    Ok(ProcessRecord {
        role: role.to_string(),
        name: name.to_string(),
        pid,
        start_time,
        log: log.to_path_buf(),
        argv: argv.to_vec(),
    })
}

/// Kills every process in the lab namespace `name` (they keep it alive).
pub fn kill_namespace_members(namespace: &str) -> usize {
    let pids = super::netns::pids_in(namespace);
    for pid in &pids {
        // SAFETY: kill(2) on processes found inside the lab's namespace.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
    }
    pids.len()
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
