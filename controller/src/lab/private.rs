//! Files only their owner (root) may read: the directories and files of a
//! lab's run directory that hold pre-shared keys or name them.

use anyhow::{Context, Result};
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a private directory.
pub const DIRECTORY_MODE: u32 = 0o700;

/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; an existing one is
/// set to 0700.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    // The umask may have taken bits away, never added any; an existing
    // directory keeps its mode unless set.
    std::fs::set_permissions(dir, Permissions::from_mode(DIRECTORY_MODE))
        .with_context(|| format!("make {} private (mode 0700)", dir.display()))
}

/// Writes `contents` to `path` with mode 0600, replacing what is there.
/// The file is never readable by others, not even while being written.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    // `mode` applies only to a file it creates.
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("make {} private (mode 0600)", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn directories_and_files_are_private() {
        let dir = std::env::temp_dir().join(format!("sdn-private-{}", std::process::id()));
        let nested = dir.join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(std::fs::metadata(&nested).unwrap().mode() & 0o777, 0o700);
        let file = nested.join("secret");
        std::fs::write(&file, "old, longer contents").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        write_file(&file, b"new").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
