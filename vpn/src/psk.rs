//! Pre-shared key files of VPN connections: what a key file must be (a
//! regular file only its owner may read or write, holding one line of
//! visible ASCII) and reading the key when it is used. Validation checks
//! the file and forgets the key; whatever needs the key calls `read_psk`,
//! which checks the file again, since its mode may have changed since.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest PSK file read, in bytes (a base64 key of 32 random bytes is 45
/// with its newline; Azure takes keys of up to 128 characters).
pub const MAX_PSK_FILE: u64 = 1024;

/// Permission bits a PSK file may not have: any for its group or others.
const OPEN_TO_OTHERS: u32 = 0o077;

/// Why a PSK file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    /// Nothing is at the path.
    #[error(
        "PSK file {} does not exist; create one with `head -c 32 /dev/urandom | base64 > {} && chmod 600 {}`",
        .path.display(), .path.display(), .path.display()
    )]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Something other than a regular file is at the path.
    #[error("PSK file {} is not a regular file ({kind})", .path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is, like `a directory`.
        kind: &'static str,
    },
    /// Its group or others may read, write or run it.
    #[error(
        "PSK file {} has mode {mode:04o}, {what}: want 0600 or stricter (chmod 600 {})",
        .path.display(), .path.display()
    )]
    OpenToOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// `readable by others`, or what else the bits allow.
        what: &'static str,
    },
    /// It could not be opened or read.
    #[error("cannot read PSK file {}: {source}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is larger than a key file may be.
    #[error(
        "PSK file {} is {size} bytes; a PSK file holds at most {MAX_PSK_FILE}",
        .path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes (at least).
        size: u64,
    },
    /// It holds nothing but a newline, or nothing at all.
    #[error("PSK file {} is empty", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// It holds more than one line, or characters other than visible ASCII
    /// (the key goes into strongSwan's configuration as quoted text).
    #[error(
        "PSK file {} holds something other than one line of visible ASCII (no spaces or control characters), as base64 is",
        .path.display()
    )]
    NotText {
        /// The file.
        path: PathBuf,
    },
}

/// Reads the key in the PSK file at `path`: the file's text without one
/// trailing newline. The file must be a regular file of mode 0600 or
/// stricter (no group or other bits), at most `MAX_PSK_FILE` bytes, and
/// hold one line of visible ASCII. The key is wiped from memory when the
/// returned buffer is dropped.
///
/// # Errors
///
/// `PskError` says which of those the file fails, naming it.
pub fn read_psk(path: &Path) -> Result<Zeroizing<Vec<u8>>, PskError> {
    let unreadable = |source: io::Error| PskError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening, so that a file open to others is reported
    // as that even when this user cannot read it.
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PskError::Missing {
            path: path.to_path_buf(),
        },
        _ => unreadable(e),
    })?;
    check(path, &metadata)?;
    // Non-blocking, so that a FIFO put there since does not hang the open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(unreadable)?;
    // The file opened may not be the one examined: check what is open.
    check(path, &file.metadata().map_err(unreadable)?)?;
    let mut key = read_at_most(file, MAX_PSK_FILE + 1).map_err(unreadable)?;
    let size = key.len() as u64;
    if size > MAX_PSK_FILE {
        return Err(PskError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    if key.ends_with(b"\n") {
        key.pop();
        if key.ends_with(b"\r") {
            key.pop();
        }
    }
    if key.is_empty() {
        return Err(PskError::Empty {
            path: path.to_path_buf(),
        });
    }
    if !key.iter().all(u8::is_ascii_graphic) {
        return Err(PskError::NotText {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

/// Reads up to `limit` bytes into a buffer allocated once, so that no
/// copy of the key is left behind in a freed, larger allocation.
fn read_at_most(file: File, limit: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let capacity = usize::try_from(limit).expect("MAX_PSK_FILE fits in memory");
    let mut buffer = Zeroizing::new(Vec::with_capacity(capacity));
    file.take(limit).read_to_end(&mut buffer)?;
    Ok(buffer)
}

/// Checks a PSK file's type, mode and size.
fn check(path: &Path, metadata: &Metadata) -> Result<(), PskError> {
    let kind = metadata.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a file"
        };
        return Err(PskError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & OPEN_TO_OTHERS != 0 {
        let what = if mode & 0o044 != 0 {
            "readable by others"
        } else if mode & 0o022 != 0 {
            "writable by others"
        } else {
            "executable by others"
        };
        return Err(PskError::OpenToOthers {
            path: path.to_path_buf(),
            mode,
            what,
        });
    }
    if metadata.len() > MAX_PSK_FILE {
        return Err(PskError::TooLarge {
            path: path.to_path_buf(),
            size: metadata.len(),
        });
    }
    Ok(())
}
