//! System-call helpers the socket-based ports share: errors that name the
//! call, socket options, batched receives that do not block, and batched
//! sends that step over refused frames.

use std::io;
use std::mem;
use std::os::fd::RawFd;

/// `ret` as a result, the error naming `what`.
pub(crate) fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(err.kind(), format!("{what}: {err}")));
    }
    Ok(ret)
}

/// Sets socket option `level`/`name` to `value`.
pub(crate) fn set_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret, what).map(|_| ())
}

/// Sends every message of `msgs` with `sendmmsg`, retrying after
/// interruptions; a message the kernel refuses (no room, or a frame it will
/// not take) is skipped. Returns (sent, refused).
///
/// # Safety
/// Every message must point at iovecs, addresses and control data that are
/// alive for the call.
pub(crate) unsafe fn send_all(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> (usize, u64) {
    let (mut offset, mut refused) = (0, 0);
    while offset < msgs.len() {
        // SAFETY: the caller vouches for what the messages point at; the
        // kernel only reads it.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs.as_mut_ptr().add(offset),
                (msgs.len() - offset) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            offset += n as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            refused += 1;
            offset += 1;
        }
    }
    (msgs.len() - refused as usize, refused)
}

/// Receives into the messages of `msgs` with one non-blocking `recvmmsg`;
/// returns how many arrived, 0 when none wait (or the call was
/// interrupted).
///
/// # Safety
/// Every message must point at iovecs, address and control buffers that
/// are alive and exclusively borrowed for the call.
pub(crate) unsafe fn recv_some(fd: RawFd, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the caller vouches for what the messages point at.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(err),
        };
    }
    Ok(n as usize)
}
