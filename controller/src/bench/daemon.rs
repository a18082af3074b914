//! Programs the load-balancer bench runs inside network namespaces: servers
//! (nginx, HAProxy, iperf3) started with their output in a log file, waited
//! for until they listen and stopped when dropped (SIGTERM, then SIGKILL);
//! and clients run to completion within a time limit.

use super::iperf::command_in;
use crate::lab::process::log_tail;
use anyhow::{Context, Result, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A server running in a namespace, stopped when dropped.
pub(super) struct Daemon {
    /// What it is, for messages (`nginx on benchlb-web1`).
    what: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program` with `args` in `namespace`, its stdout and stderr
    /// in `log`.
    pub(super) fn start(
        what: &str,
        namespace: &str,
        program: &str,
        args: &[&str],
        log: &Path,
    ) -> Result<Daemon> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command_in(namespace, program)?
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {what}"))?;
        Ok(Daemon {
            what: what.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Its process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until something listens on TCP `port` in `namespace`; fails
    /// if the server exits first or `limit` passes, with its log's end.
    pub(super) fn wait_listening(
        &mut self,
        namespace: &str,
        port: u16,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening on port {port}: {}",
                    self.what,
                    log_tail(&self.log, 5)
                );
            }
            if listening(namespace, port)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} does not listen on port {port} after {limit:?}: {}",
                    self.what,
                    log_tail(&self.log, 5)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, which has not been reaped
            // (try_wait above saw it running), so the pid is still its.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a TCP socket listens on `port` in `namespace`, IPv4 or IPv6
/// (iperf3 listens on `::`), from `/proc/thread-self/net/tcp{,6}` read
/// inside it (without connecting, which would use up a one-shot iperf3
/// server).
pub(super) fn listening(namespace: &str, port: u16) -> Result<bool> {
    let tables = sdn_vswitch::netns::run_in(Some(namespace), || {
        let v4 = std::fs::read_to_string("/proc/thread-self/net/tcp")?;
        // Without IPv6 in the namespace there is no tcp6 table.
        let v6 = std::fs::read_to_string("/proc/thread-self/net/tcp6").unwrap_or_default();
        Ok([v4, v6])
    })
    .with_context(|| format!("read the TCP sockets of namespace {namespace}"))?;
    Ok(tables.iter().any(|table| listens_on(table, port)))
}

/// Whether the `/proc/net/tcp` table `text` holds a listening socket on
/// `port` (any address).
fn listens_on(text: &str, port: u16) -> bool {
    /// `st` of a listening socket (`TCP_LISTEN`).
    const LISTEN: &str = "0A";
    text.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields
            .get(1)
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
        local_port == Some(port) && fields.get(3) == Some(&LISTEN)
    })
}

/// Runs `command` to completion with its stdout captured (stderr
/// discarded), killing it if it outlives `limit`.
pub(super) fn output_within(command: &mut Command, what: &str, limit: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("run {what}"))?;
    // Read stdout on a thread of its own, so that a full pipe cannot stall
    // the program while this one waits for it.
    let mut stdout = child.stdout.take().context("capture stdout")?;
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            bail!("{what} did not finish within {limit:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader
        .join()
        .unwrap_or_else(|_| b"(stdout reader panicked)".to_vec());
    Ok(Output {
        status,
        stdout,
        stderr: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0B01510A:1451 0A01510A:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";
        assert!(listens_on(table, 80));
        // 0x1451 = 5201 is an established connection, not a listener.
        assert!(!listens_on(table, 5201));
        assert!(!listens_on(table, 443));
        assert!(!listens_on("", 80));
        let v6 = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1451 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
        assert!(listens_on(v6, 5201));
        assert!(!listens_on("header\n garbage\n 0: zz:zz 0 0A\n", 80));
    }

    #[test]
    fn a_program_past_its_limit_is_killed() {
        let started = Instant::now();
        let mut sleep = Command::new("sleep");
        sleep.arg("5");
        let error = output_within(&mut sleep, "sleep", Duration::from_millis(200)).unwrap_err();
        assert!(error.to_string().contains("did not finish"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let mut echo = Command::new("echo");
        echo.arg("hello");
        let out = output_within(&mut echo, "echo", Duration::from_secs(5)).unwrap();
        assert_eq!(out.stdout, b"hello\n");
    }
}
