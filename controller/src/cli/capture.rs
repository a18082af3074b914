//! `sdn capture`: frames crossing a switch port, as they cross it, into a
//! pcap file that tcpdump and Wireshark read.

use crate::client;
use crate::pcap::PcapWriter;
use anyhow::{Context, Result};
use sdn_proto::management as mgmt;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// When a capture stops (besides Ctrl-C).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// After this many frames.
    pub(super) count: Option<u64>,
    /// After this long.
    pub(super) duration: Option<Duration>,
}

pub(super) async fn capture(
    switch: &str,
    port: &str,
    path: &Path,
    limits: Limits,
    snaplen: u32,
    lab: Option<&str>,
) -> Result<()> {
    let lab = super::resolve_lab(lab)?;
    let out: Box<dyn Write> = if path == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
        ))
    };
    let mut writer = PcapWriter::new(out, snaplen)?;
    writer.flush()?;
    let mut management = client::connect(&lab.controller).await?;
    let mut stream = management
        .capture(mgmt::CaptureRequest {
            switch: switch.to_string(),
            port: port.to_string(),
            snaplen,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    eprintln!(
        "capturing on {switch} port {port} into {} (Ctrl-C stops)",
        path.display()
    );
    let deadline = limits.duration.map(|d| tokio::time::Instant::now() + d);
    let mut written = 0u64;
    let mut dropped = 0u64;
    let stop = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    'outer: loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::signal::ctrl_c() => break,
            chunk = stream.message() => {
                let chunk = match chunk {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(status) => anyhow::bail!("capture ended: {}", status.message()),
                };
                dropped = dropped.max(chunk.dropped);
                for frame in chunk.frames {
                    writer.write_frame(frame.timestamp_ns, frame.original_len, &frame.data)?;
                    written += 1;
                    if limits.count.is_some_and(|c| written >= c) {
                        break 'outer;
                    }
                }
                writer.flush()?;
            }
        }
    }
    writer.flush()?;
    let lost = if dropped > 0 {
        format!(" ({dropped} not captured: the capture could not keep up)")
    } else {
        String::new()
    };
    eprintln!("{written} frame(s) written to {}{lost}", path.display());
    Ok(())
}
