//! Named network namespaces, made the way `ip netns add` makes them: a new
//! namespace bind-mounted at `/run/netns/NAME`, with `/run/netns` a shared
//! mount so that removal propagates. Made with system calls, not by running
//! `ip`.

use sdn_vswitch::netns::{NETNS_RUN_DIR, path_of};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))
}

fn last_error(what: String) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Makes `/run/netns` exist and be a shared mount point.
fn prepare_run_dir() -> io::Result<()> {
    std::fs::create_dir_all(NETNS_RUN_DIR)?;
    let dir = cstr(Path::new(NETNS_RUN_DIR))?;
    let none = CString::new("none").expect("literal has no NUL");
    let empty = CString::new("").expect("literal has no NUL");
    let mut made_mount_point = false;
    loop {
        // SAFETY: all pointers are valid NUL-terminated strings or null.
        let ret = unsafe {
            libc::mount(
                empty.as_ptr(),
                dir.as_ptr(),
                none.as_ptr(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) || made_mount_point {
            return Err(io::Error::new(
                err.kind(),
                format!("make {NETNS_RUN_DIR} a shared mount: {err}"),
            ));
        }
        // Not a mount point yet: bind it onto itself, then retry.
        // SAFETY: as above.
        let ret = unsafe {
            libc::mount(
                dir.as_ptr(),
                dir.as_ptr(),
                none.as_ptr(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if ret != 0 {
            return Err(last_error(format!("bind-mount {NETNS_RUN_DIR}")));
        }
        made_mount_point = true;
    }
}

/// Whether the namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path_of(name).exists()
}

/// Creates the network namespace `name`; fails if it exists.
pub fn create(name: &str) -> io::Result<()> {
    prepare_run_dir()?;
    let path = path_of(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                io::Error::new(e.kind(), format!("network namespace {name} already exists"))
            }
            _ => io::Error::new(e.kind(), format!("create {}: {e}", path.display())),
        })?;
    let target = cstr(&path)?;
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(2) affects only this helper thread.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(last_error("unshare(CLONE_NEWNET)".into()));
                }
                let source = CString::new("/proc/thread-self/ns/net").expect("literal has no NUL");
                let none = CString::new("none").expect("literal has no NUL");
                // SAFETY: valid NUL-terminated strings; bind mount of our own namespace file.
                let ret = unsafe {
                    libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        none.as_ptr(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                };
                if ret != 0 {
                    return Err(last_error(format!("bind-mount namespace {name}")));
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// Deletes the namespace `name` (its devices go when nothing holds it).
pub fn delete(name: &str) -> io::Result<()> {
    let path = path_of(name);
    if !path.exists() {
        return Ok(());
    }
    let target = cstr(&path)?;
    // SAFETY: umount2(2) on a valid path.
    let ret = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if ret != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::new(
                err.kind(),
                format!("unmount {}: {err}", path.display()),
            ));
        }
    }
    std::fs::remove_file(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("remove {}: {e}", path.display())))
}

/// The inode that identifies the namespace `name`.
pub fn inode(name: &str) -> io::Result<u64> {
    Ok(std::fs::metadata(path_of(name))?.ino())
}

/// Pids of processes whose network namespace is `name` (as `ip netns pids`).
pub fn pids_in(name: &str) -> Vec<u32> {
    let Ok(target) = inode(name) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == target)
        })
        .collect()
}

/// Names of existing namespaces that start with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
