//! Running code inside a named network namespace (`/run/netns/NAME`, as
//! `ip netns` makes them). `setns` changes only the calling thread, so the work
//! runs on a short-lived helper thread; sockets it creates stay in the
//! namespace after the thread ends.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where named network namespaces are bound.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The path of the namespace named `name`.
pub fn path_of(name: &str) -> PathBuf {
    PathBuf::from(NETNS_RUN_DIR).join(name)
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(name: &str) -> io::Result<()> {
    let file = File::open(path_of(name))
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
    // SAFETY: setns(2) on a descriptor we hold open for the duration.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("setns into {name}: {err}"),
        ));
    }
    Ok(())
}

/// Runs `work` on a helper thread inside namespace `name` (or the current one
/// when `name` is `None`) and returns its result.
pub fn run_in<T: Send>(
    name: Option<&str>,
    work: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                if let Some(name) = name {
                    enter(name)?;
                }
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace helper thread panicked")))
    })
}
