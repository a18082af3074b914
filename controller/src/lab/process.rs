//! Background processes of a lab (controller, switches, the sites'
//! charon): started detached with their output in a log file, in a network
//! namespace and with a `/run` of their own when asked, recognised later by
//! pid *and* start time (so a reused pid is never mistaken for ours), and
//! stopped gently, then firmly.

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where a process runs, beyond its command line: what a daemon that is
/// not ours (charon) needs to run beside others of its kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Launch {
    /// The network namespace it runs in (default: that of `sdn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// A directory bound over `/run` in a mount namespace of the process's
    /// own, for a daemon that keeps fixed files there (charon's
    /// `/var/run/charon.pid`, which would keep a second charon from
    /// starting). The bind does not propagate to other mount namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_run: Option<PathBuf>,
    /// Environment variables it gets besides `sdn`'s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

/// A process the lab started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// `controller`, `switch` or `ipsec` (a site's charon).
    pub role: String,
    /// Component name (`controller`, the switch name, or `charon-<site>`).
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// Where its output goes.
    pub log: PathBuf,
    /// The command line, to start it again.
    pub argv: Vec<String>,
    /// Where it runs, to start it again there (records written before
    /// this field existed ran in `sdn`'s namespaces).
    #[serde(default)]
    pub launch: Launch,
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
    spawn_launched(role, name, argv, &Launch::default(), log)
}

/// What the child does between fork and exec, prepared beforehand (no
/// allocation happens in the child).
struct ChildSetup {
    /// The namespace to enter, kept open until the child has entered it.
    netns: Option<File>,
    /// The directory to bind over `/run`.
    private_run: Option<CString>,
}

impl ChildSetup {
    fn new(launch: &Launch) -> io::Result<ChildSetup> {
        let netns = match &launch.netns {
            Some(name) => Some(File::open(sdn_vswitch::netns::path_of(name)).map_err(|e| {
                io::Error::new(e.kind(), format!("open network namespace {name}: {e}"))
            })?),
            None => None,
        };
        let private_run = match &launch.private_run {
            Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "private /run path has a NUL")
            })?),
            None => None,
        };
        Ok(ChildSetup { netns, private_run })
    }

    /// Runs in the child: only async-signal-safe system calls.
    fn apply(&self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        // SAFETY: setsid(2) has no preconditions.
        if unsafe { libc::setsid() } < 0 {
            return fail();
        }
        if let Some(netns) = &self.netns {
            // SAFETY: setns(2) on a namespace file this process holds open.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return fail();
            }
        }
        if let Some(source) = &self.private_run {
            // SAFETY: unshare(2) affects only this (single-threaded) child.
            if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                return fail();
            }
            // Private first, as `ip netns exec` does, so that the bind below
            // stays in this mount namespace.
            // SAFETY: valid NUL-terminated strings or null pointers.
            let ret = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
            };
            if ret != 0 {
                return fail();
            }
            // SAFETY: as above; `source` lives until after exec.
            let ret = unsafe {
                libc::mount(
                    source.as_ptr(),
                    c"/run".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            };
            if ret != 0 {
                return fail();
            }
        }
        Ok(())
    }
}

/// Starts `argv` as `spawn_detached` does, where `launch` says.
pub fn spawn_launched(
    role: &str,
    name: &str,
    argv: &[String],
    launch: &Launch,
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
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let setup = ChildSetup::new(launch)?;
    // SAFETY: `apply` makes only async-signal-safe system calls on data
    // prepared before the fork; it runs in the child before exec.
    unsafe {
        command.pre_exec(move || setup.apply());
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
        launch: launch.clone(),
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
