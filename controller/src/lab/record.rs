//! The record of what `sdn up` created for a lab (namespaces, processes, the
//! run directory), written before each step so that `sdn down` can undo
//! everything even after a crash.

use super::process::ProcessRecord;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// Where lab run directories live (override with `SDN_RUN_DIR`).
pub fn run_root() -> PathBuf {
    std::env::var_os("SDN_RUN_DIR").map_or_else(|| PathBuf::from("/run/sdn"), PathBuf::from)
}

/// The run directory of lab `name`.
pub fn run_dir(name: &str) -> PathBuf {
    run_root().join(name)
}

/// What exists of one lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabRecord {
    /// Lab name.
    pub name: String,
    /// The topology file it was brought up from.
    pub topology: PathBuf,
    /// The copy of that file the controller reads.
    pub topology_copy: PathBuf,
    /// When it was brought up (seconds since the Unix epoch).
    pub created_unix: u64,
    /// The controller's address (`unix:/path` or `tcp:host:port`).
    pub controller: String,
    /// Namespaces created, in order.
    pub namespaces: Vec<String>,
    /// Processes started.
    pub processes: Vec<ProcessRecord>,
}

impl LabRecord {
    /// The record file of lab `name`.
    pub fn path(name: &str) -> PathBuf {
        run_dir(name).join("lab.json")
    }

    /// Reads the record of lab `name`; `None` if there is none.
    pub fn load(name: &str) -> io::Result<Option<LabRecord>> {
        let path = Self::path(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the record atomically (temporary file, then rename).
    pub fn save(&self) -> io::Result<()> {
        let dir = run_dir(&self.name);
        std::fs::create_dir_all(&dir)?;
        let path = Self::path(&self.name);
        let temporary = dir.join("lab.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &path)
    }

    /// Every lab with a record, by name.
    pub fn all() -> Vec<LabRecord> {
        let Ok(entries) = std::fs::read_dir(run_root()) else {
            return Vec::new();
        };
        let mut labs: Vec<LabRecord> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|name| LabRecord::load(&name).ok().flatten())
            .collect();
        labs.sort_by(|a, b| a.name.cmp(&b.name));
        labs
    }

    /// The record's process named `name`.
    pub fn process(&self, name: &str) -> Option<&ProcessRecord> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The run directory of this lab.
    pub fn dir(&self) -> PathBuf {
        run_dir(&self.name)
    }
}

/// Where the controller's Unix socket goes.
pub fn controller_socket(dir: &Path) -> PathBuf {
    dir.join("controller.sock")
}
