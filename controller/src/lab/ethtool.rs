//! Device offload settings through the legacy ethtool ioctls, for switch ports
//! declared without offloads: their peer device must not hand the switch
//! TSO super-frames or partial checksums it cannot describe.

use std::io;
use std::mem;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SSG: u32 = 0x19;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_SGSO: u32 = 0x24;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn set(socket: libc::c_int, device: &str, cmd: u32, data: u32) -> io::Result<()> {
    // SAFETY: ifreq is plain data.
    let mut request: libc::ifreq = unsafe { mem::zeroed() };
    let name = device.as_bytes();
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device name {device} is too long"),
        ));
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let mut value = EthtoolValue { cmd, data };
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads the ethtool_value `ifr_data` points to, which
    // lives until the call returns.
    if unsafe { libc::ioctl(socket, SIOCETHTOOL, &mut request) } < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("ethtool command {cmd:#x} on {device}: {err}"),
        ));
    }
    Ok(())
}

/// Turns off checksum offload, TSO, GSO and scatter-gather on `device` in the
/// calling thread's network namespace, so that it sends only complete,
/// MTU-sized frames with finished checksums.
pub fn disable_offloads(device: &str) -> io::Result<()> {
    // SAFETY: plain socket(2) call; closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // TSO needs checksum offload: turning that off first switches TSO off too.
    let result = [ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM, ETHTOOL_SSG]
        .iter()
        .try_for_each(|cmd| set(socket, device, *cmd, 0));
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(socket) };
    result
}
