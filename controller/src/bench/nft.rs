//! nftables in a namespace: whether `nft` is installed, and loading a
//! ruleset with it (the baselines' firewall and NAT).

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::{Command, Stdio};

/// Whether nftables' `nft` is installed.
pub(super) fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Loads `ruleset` (nft's own syntax) into namespace `namespace`.
pub(super) fn load(namespace: &str, ruleset: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(ruleset.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft -f failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
