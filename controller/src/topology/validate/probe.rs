//! Load balancer fields that stand alone: ports (1-65535), health probes
//! (protocol, path for HTTP only, interval and timeout above zero with the
//! timeout shorter, thresholds at least 1) and a rule's algorithm, idle
//! timeout and behaviour without healthy backends. Defaults are the
//! `load_balancer` module's.

use super::Checker;
use super::duration::{duration, show};
use super::security::word;
use crate::topology::load_balancer::*;
use crate::topology::raw::{RawLoadBalancingRule, RawProbe};
use serde_saphyr::Spanned;
use std::time::Duration;

/// A TCP or UDP port, 1 to 65535.
pub(super) fn port(c: &mut Checker<'_>, raw: &Spanned<i64>, path: &str) -> Option<u16> {
    match u16::try_from(raw.value) {
        Ok(port) if port >= 1 => Some(port),
        _ => {
            c.error(
                raw,
                path,
                format!("{}: want a port from 1 to 65535", raw.value),
            );
            None
        }
    }
}

/// A probe threshold: consecutive results, at least 1.
fn threshold(c: &mut Checker<'_>, raw: Option<&Spanned<i64>>, path: &str) -> Option<u32> {
    let Some(raw) = raw else {
        return Some(DEFAULT_THRESHOLD);
    };
    match u32::try_from(raw.value) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            c.error(
                raw,
                path,
                format!("{}: want a threshold from 1 to {}", raw.value, u32::MAX),
            );
            None
        }
    }
}

/// Longest HTTP probe path: its request goes in one segment.
pub(super) const MAX_PROBE_PATH: usize = 1024;

/// Whether `path` may go on an HTTP request line: it starts with `/`, holds
/// visible ASCII only (no spaces, no control characters) and is at most
/// `MAX_PROBE_PATH` long.
fn request_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_PROBE_PATH
        && path.bytes().all(|b| b.is_ascii_graphic())
}

/// A probe, if every field is valid.
pub(super) fn probe(c: &mut Checker<'_>, raw: &RawProbe, path: &str) -> Option<Probe> {
    let kind = word(
        c,
        &raw.protocol,
        &format!("{path}.protocol"),
        &[("tcp", false), ("http", true)],
    );
    let protocol = match (kind, &raw.path) {
        (Some(false), Some(p)) => {
            c.error(
                p,
                format!("{path}.path"),
                "a tcp probe has no path (path is for http probes)",
            );
            None
        }
        (Some(false), None) => Some(ProbeProtocol::Tcp),
        (Some(true), Some(p)) if !request_path(&p.value) => {
            c.error(
                p,
                format!("{path}.path"),
                format!(
                    "{:?}: want a path starting with / of at most {MAX_PROBE_PATH} visible ASCII characters, like /healthz",
                    p.value
                ),
            );
            None
        }
        (Some(true), p) => Some(ProbeProtocol::Http {
            path: p
                .as_ref()
                .map_or_else(|| DEFAULT_HTTP_PATH.to_string(), |p| p.value.clone()),
        }),
        (None, _) => None,
    };
    let port = port(c, &raw.port, &format!("{path}.port"));
    let interval = match &raw.interval {
        None => Some(DEFAULT_PROBE_INTERVAL),
        Some(at) => positive(c, at, &format!("{path}.interval"), "interval"),
    };
    let timeout = match (&raw.timeout, interval) {
        (None, Some(interval)) => Some(default_probe_timeout(interval)),
        (None, None) => None,
        (Some(at), interval) => {
            let tpath = format!("{path}.timeout");
            match (positive(c, at, &tpath, "timeout"), interval) {
                (Some(timeout), Some(interval)) if timeout >= interval => {
                    let default = if raw.interval.is_none() {
                        ", the default"
                    } else {
                        ""
                    };
                    c.error(
                        at,
                        tpath,
                        format!(
                            "timeout {} is not shorter than the interval ({}{default}): a probe ends before the next starts",
                            show(timeout),
                            show(interval)
                        ),
                    );
                    None
                }
                (timeout, _) => timeout,
            }
        }
    };
    let unhealthy = threshold(
        c,
        raw.unhealthy_threshold.as_ref(),
        &format!("{path}.unhealthy_threshold"),
    );
    let healthy = threshold(
        c,
        raw.healthy_threshold.as_ref(),
        &format!("{path}.healthy_threshold"),
    );
    Some(Probe {
        name: raw.name.value.clone(),
        protocol: protocol?,
        port: port?,
        interval: interval?,
        timeout: timeout?,
        unhealthy_threshold: unhealthy?,
        healthy_threshold: healthy?,
    })
}

/// A duration above zero; `what` names it in the message.
fn positive(
    c: &mut Checker<'_>,
    at: &Spanned<crate::topology::raw::RawDuration>,
    path: &str,
    what: &str,
) -> Option<Duration> {
    let d = duration(c, at, path)?;
    if d.is_zero() {
        c.error(at, path, format!("{what} 0s: want a duration above zero"));
        return None;
    }
    Some(d)
}

/// A rule's settings beyond its ports and names.
pub(super) struct RuleSettings {
    pub(super) algorithm: Algorithm,
    pub(super) idle_timeout: Duration,
    pub(super) no_healthy_backends: NoHealthyBackends,
}

/// A rule's algorithm, idle timeout and behaviour without healthy
/// backends, defaults filled in; `None` if one is invalid.
pub(super) fn rule_settings(
    c: &mut Checker<'_>,
    raw: &RawLoadBalancingRule,
    path: &str,
) -> Option<RuleSettings> {
    let algorithm = match &raw.algorithm {
        None => Some(Algorithm::default()),
        Some(at) => word(c, at, &format!("{path}.algorithm"), &Algorithm::NAMES),
    };
    let idle_timeout = match &raw.idle_timeout {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(at) => positive(c, at, &format!("{path}.idle_timeout"), "idle timeout"),
    };
    let no_healthy_backends = match &raw.no_healthy_backends {
        None => Some(NoHealthyBackends::default()),
        Some(at) => word(
            c,
            at,
            &format!("{path}.no_healthy_backends"),
            &[
                ("refuse", NoHealthyBackends::Refuse),
                ("all_probed_up", NoHealthyBackends::AllProbedUp),
            ],
        ),
    };
    Some(RuleSettings {
        algorithm: algorithm?,
        idle_timeout: idle_timeout?,
        no_healthy_backends: no_healthy_backends?,
    })
}
