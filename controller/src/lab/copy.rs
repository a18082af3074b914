//! The copy of a lab's topology file in its run directory, which the
//! controller and `sdn status` read, with the pre-shared key files it names
//! reachable from it. Validation resolves a relative `psk_file` against the
//! file's directory, so each such key file gets a symbolic link at the same
//! relative place from the copy (the key itself is not copied). A lab
//! without connections keeps its copy at `<run dir>/topology.yaml`.

use super::private;
use crate::topology::Topology;
use anyhow::{Context, Result};
use std::path::{Component, Path, PathBuf};

/// The copy's file name.
pub const COPY_NAME: &str = "topology.yaml";

/// Where the copy and the links to key files go when there are any.
const KEYS_TREE: &str = "topology";

/// The key files named relative to the topology file: the relative path
/// as written, and the file it names.
fn relative_key_files(topology: &Topology) -> Vec<(PathBuf, PathBuf)> {
    let base = topology.source.parent().unwrap_or(Path::new(""));
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    for connection in &topology.vpn.connections {
        let file = &connection.psk_file;
        let Ok(relative) = file.strip_prefix(base) else {
            continue;
        };
        if relative.is_absolute() || out.iter().any(|(r, _)| r == relative) {
            continue;
        }
        out.push((relative.to_path_buf(), file.clone()));
    }
    out
}

/// How many directories above the topology file's the relative paths
/// reach (`../../k.psk` reaches two).
fn levels_above(relative: &Path) -> usize {
    let mut depth: isize = 0;
    let mut lowest: isize = 0;
    for component in relative.components() {
        match component {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        lowest = lowest.min(depth);
    }
    lowest.unsigned_abs()
}

/// Where the copy goes in run directory `dir`: `dir/topology.yaml`, or,
/// with key files to link, deep enough inside `dir/topology/` that every
/// relative key path stays inside it.
pub fn copy_path(topology: &Topology, dir: &Path) -> PathBuf {
    let keys = relative_key_files(topology);
    if keys.is_empty() {
        return dir.join(COPY_NAME);
    }
    let levels = keys.iter().map(|(r, _)| levels_above(r)).max().unwrap_or(0);
    let mut at = dir.join(KEYS_TREE);
    for level in 0..levels {
        at.push(level.to_string());
    }
    at.join(COPY_NAME)
}

/// Copies the topology file into run directory `dir` and links the key
/// files it names relatively; returns the copy's path.
pub fn place(topology: &Topology, dir: &Path) -> Result<PathBuf> {
    let copy = copy_path(topology, dir);
    let copy_dir = copy.parent().unwrap_or(dir).to_path_buf();
    if copy_dir != dir {
        private::create_dir(&copy_dir)?;
    }
    std::fs::copy(&topology.source, &copy).with_context(|| {
        format!(
            "copy {} into {}",
            topology.source.display(),
            copy_dir.display()
        )
    })?;
    for (relative, file) in relative_key_files(topology) {
        link_key(&copy_dir, &relative, &file)?;
    }
    Ok(copy)
}

/// Makes `relative` from `copy_dir` name `file`: real directories for the
/// path's directories (so that a `..` after one resolves as written), then
/// a symbolic link to the key file's absolute path.
fn link_key(copy_dir: &Path, relative: &Path, file: &Path) -> Result<()> {
    let target = std::fs::canonicalize(file)
        .with_context(|| format!("find the PSK file {}", file.display()))?;
    let mut at = copy_dir.to_path_buf();
    let components: Vec<Component> = relative.components().collect();
    let Some((last, directories)) = components.split_last() else {
        return Ok(());
    };
    for component in directories {
        match component {
            Component::ParentDir => {
                at.pop();
            }
            Component::Normal(name) => {
                at.push(name);
                private::create_dir(&at)?;
            }
            _ => {}
        }
    }
    let link = at.join(last.as_os_str());
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(&target, &link).with_context(|| {
        format!(
            "link {} to the PSK file {}",
            link.display(),
            target.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_key_paths_stay_inside_the_copy_tree() {
        assert_eq!(levels_above(Path::new("k.psk")), 0);
        assert_eq!(levels_above(Path::new("../k.psk")), 1);
        assert_eq!(levels_above(Path::new("../../keys/k.psk")), 2);
        assert_eq!(levels_above(Path::new("keys/../../k.psk")), 1);
        assert_eq!(levels_above(Path::new("./keys/k.psk")), 0);
    }

    #[test]
    fn the_copy_validates_with_its_keys_linked() {
        use super::super::testutil::{VPN, VpnFixture};
        let fixture = VpnFixture::new(&VPN.replacen(
            "psk_file: east-west.psk",
            "psk_file: ../keys/east-west.psk",
            1,
        ));
        let topology = fixture.topology();
        let run = fixture.scratch("run");
        let copy = place(&topology, &run).unwrap();
        assert_eq!(copy, run.join("topology/0/topology.yaml"));
        let again = crate::topology::load(&copy).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.vpn.connections.len(), 2);
        let link = run.join("topology/0/branch.psk");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            std::fs::canonicalize(fixture.dir().join("branch.psk")).unwrap()
        );
        assert!(run.join("topology/keys/east-west.psk").exists());

        let mut plain = topology.clone();
        plain.vpn.connections.clear();
        assert_eq!(copy_path(&plain, &run), run.join(COPY_NAME));
    }
}
