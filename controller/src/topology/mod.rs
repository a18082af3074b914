//! Topology files: a YAML description of a lab (networks and subnets, switches
//! and their ports, hosts and their interfaces, links, and the security,
//! routing, internet, load balancer and VPN sections), parsed into a raw form
//! and validated into a typed model before anything is created. A bad file is
//! answered with every problem found, each with file, line, path and reason.

pub mod common;
pub mod edit;
pub mod load_balancer;
pub mod model;
pub use sdn_vpn::psk;
mod raw;
pub mod routing;
pub mod security;
mod validate;
pub mod vpn;

pub use common::*;
pub use model::*;

use std::fmt;
use std::path::{Path, PathBuf};

/// Largest topology file read (a guard against reading something else).
const MAX_FILE_SIZE: u64 = 4 << 20;

/// One problem in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// Where in the document, like `hosts[1].interfaces[0].address`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in a topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyErrors {
    /// The problems, in file order where known.
    pub errors: Vec<TopologyError>,
    /// The file's text, to quote lines (empty if it could not be read).
    pub source: String,
}

impl fmt::Display for TopologyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.source.lines().collect();
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
            if let Some(text) = error
                .line
                .and_then(|l| usize::try_from(l).ok())
                .and_then(|l| lines.get(l.wrapping_sub(1)))
            {
                write!(f, "\n  {:>4} | {}", error.line.unwrap_or(0), text)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for TopologyErrors {}

impl TopologyErrors {
    fn single(file: &Path, reason: String, source: String) -> TopologyErrors {
        TopologyErrors {
            errors: vec![TopologyError {
                file: file.to_path_buf(),
                line: None,
                column: None,
                path: String::new(),
                reason,
            }],
            source,
        }
    }
}

/// Reads and validates the topology file at `path`.
pub fn load(path: &Path) -> Result<Topology, TopologyErrors> {
    let size = std::fs::metadata(path)
        .map_err(|e| TopologyErrors::single(path, format!("cannot read: {e}"), String::new()))?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(TopologyErrors::single(
            path,
            format!("{size} bytes is larger than a topology file may be ({MAX_FILE_SIZE})"),
            String::new(),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| TopologyErrors::single(path, format!("cannot read: {e}"), String::new()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| TopologyErrors::single(path, "not UTF-8 text".into(), String::new()))?;
    parse(&text, path)
}

/// Parses and validates topology text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Topology, TopologyErrors> {
    let raw = parse_raw(text, path)?;
    validate::validate(raw, path).map_err(|errors| TopologyErrors {
        errors,
        source: text.to_string(),
    })
}

/// Parses topology text into its raw, unvalidated form.
fn parse_raw(text: &str, path: &Path) -> Result<raw::RawTopology, TopologyErrors> {
    serde_saphyr::from_str(text).map_err(|e| {
        let plain = e.without_snippet().to_string();
        // The message ends with " at line L, column C", which the location already says.
        let reason = match plain.rsplit_once(" at line ") {
            Some((message, _)) => message.to_string(),
            None => plain,
        };
        let location = e.location();
        TopologyErrors {
            errors: vec![TopologyError {
                file: path.to_path_buf(),
                line: location.map(|l| l.line()),
                column: location.map(|l| l.column()),
                path: String::new(),
                reason,
            }],
            source: text.to_string(),
        }
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod security_tests;

#[cfg(test)]
mod routing_tests;

#[cfg(test)]
mod load_balancer_tests;

#[cfg(test)]
mod vpn_tests;
