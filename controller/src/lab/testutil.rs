//! Fixtures of the lab's unit tests: a topology file (topologies/vpn.yaml
//! or a variant) in a directory of its own, with the key files its
//! `psk_file:` lines name written there with mode 0600 (git keeps no
//! modes), all removed when dropped.

use crate::topology::Topology;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shipped VPN example.
pub(crate) const VPN: &str = include_str!("../../../topologies/vpn.yaml");

/// The key every fixture's key file holds (before its newline).
pub(crate) const KEY: &str = "c2VjcmV0LWtleS1vZi10aGUtbGFi";

/// A topology file and its key files.
pub(crate) struct VpnFixture {
    /// Removed when dropped.
    root: PathBuf,
    /// The topology file, `<root>/topo/vpn.yaml`.
    pub(crate) file: PathBuf,
}

impl VpnFixture {
    /// Writes `text` and the key files it names (relative to it).
    pub(crate) fn new(text: &str) -> VpnFixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "sdn-lab-tests-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let dir = root.join("topo");
        std::fs::create_dir_all(&dir).expect("create the fixture directory");
        let file = dir.join("vpn.yaml");
        std::fs::write(&file, text).expect("write the topology");
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("psk_file:") else {
                continue;
            };
            let name = rest.split('#').next().unwrap_or_default().trim();
            let key = dir.join(name);
            std::fs::create_dir_all(key.parent().expect("a key file has a directory"))
                .expect("create the key's directory");
            std::fs::write(&key, format!("{KEY}\n")).expect("write a key file");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .expect("make a key file private");
        }
        VpnFixture { root, file }
    }

    /// The topology, validated.
    pub(crate) fn topology(&self) -> Topology {
        crate::topology::load(&self.file).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The topology file's directory, where relative key files are.
    pub(crate) fn dir(&self) -> PathBuf {
        self.file
            .parent()
            .expect("a file has a directory")
            .to_path_buf()
    }

    /// A scratch directory inside the fixture (a stand-in run directory).
    pub(crate) fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        dir
    }
}

impl Drop for VpnFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
