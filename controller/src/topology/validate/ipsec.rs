//! A VPN connection's fields that stand alone: its IPsec policy (ciphers
//! from `Aead::NAMES`, none twice; PRF sha256; DH x25519), lifetimes (whole
//! seconds from `MIN_LIFETIME` to `MAX_LIFETIME`, the child's below the
//! IKE SA's), dead-peer detection (an interval of whole seconds above zero
//! and below the child lifetime; 1 to `MAX_DPD_RETRIES` retries), which end
//! initiates, and its pre-shared key file (see `psk::read_psk`). Defaults
//! are the `vpn` module's.

use super::Checker;
use super::duration::{duration, show};
use super::security::word;
use crate::topology::psk::read_psk;
use crate::topology::raw::{RawConnection, RawDuration, RawIpsecPolicy};
use crate::topology::vpn::*;
use serde_saphyr::Spanned;
use std::path::PathBuf;
use std::time::Duration;

/// A connection's settings beyond its ends and key, defaults filled in.
pub(super) struct Settings {
    pub(super) policy: IpsecPolicy,
    pub(super) ike_lifetime: Duration,
    pub(super) child_lifetime: Duration,
    pub(super) dpd_interval: Duration,
    pub(super) dpd_retries: u32,
    pub(super) initiator: Initiator,
}

/// A connection's policy, timers and initiator; `None` if one is invalid.
pub(super) fn settings(c: &mut Checker<'_>, raw: &RawConnection, path: &str) -> Option<Settings> {
    let policy = policy(
        c,
        raw.ipsec_policy.as_ref(),
        &format!("{path}.ipsec_policy"),
    );
    let (ike_lifetime, child_lifetime) = lifetimes(c, raw, path);
    let dpd_interval = dpd_interval(c, raw, path, child_lifetime);
    let dpd_retries = match &raw.dpd_retries {
        None => Some(DEFAULT_DPD_RETRIES),
        Some(at) => match u32::try_from(at.value) {
            Ok(n) if (1..=MAX_DPD_RETRIES).contains(&n) => Some(n),
            _ => {
                c.error(
                    at,
                    format!("{path}.dpd_retries"),
                    format!(
                        "{}: want 1 to {MAX_DPD_RETRIES} unanswered liveness checks",
                        at.value
                    ),
                );
                None
            }
        },
    };
    let initiator = match &raw.initiator {
        None => Some(Initiator::default()),
        Some(at) => word(c, at, &format!("{path}.initiator"), &Initiator::NAMES),
    };
    Some(Settings {
        policy: policy?,
        ike_lifetime: ike_lifetime?,
        child_lifetime: child_lifetime?,
        dpd_interval: dpd_interval?,
        dpd_retries: dpd_retries?,
        initiator: initiator?,
    })
}

/// `ipsec_policy`, each field it leaves out taking `IpsecPolicy::default`'s.
fn policy(
    c: &mut Checker<'_>,
    raw: Option<&Spanned<RawIpsecPolicy>>,
    path: &str,
) -> Option<IpsecPolicy> {
    let default = IpsecPolicy::default();
    let Some(raw) = raw else {
        return Some(default);
    };
    let raw = &raw.value;
    let ike = match &raw.ike {
        None => Some(default.ike),
        Some(list) => ciphers(c, list, &format!("{path}.ike")),
    };
    let prf = match &raw.prf {
        None => Some(default.prf),
        Some(at) => word(c, at, &format!("{path}.prf"), &[("sha256", Prf::Sha256)]),
    };
    let dh = match &raw.dh {
        None => Some(default.dh),
        Some(at) => word(c, at, &format!("{path}.dh"), &[("x25519", DhGroup::X25519)]),
    };
    let esp = match &raw.esp {
        None => Some(default.esp),
        Some(list) => ciphers(c, list, &format!("{path}.esp")),
    };
    Some(IpsecPolicy {
        ike: ike?,
        prf: prf?,
        dh: dh?,
        esp: esp?,
    })
}

/// A list of ciphers: at least one, each known, none twice.
fn ciphers(
    c: &mut Checker<'_>,
    list: &Spanned<Vec<Spanned<String>>>,
    path: &str,
) -> Option<Vec<Aead>> {
    if list.value.is_empty() {
        let known: Vec<&str> = Aead::NAMES.iter().map(|(n, _)| *n).collect();
        c.error(
            list,
            path,
            format!("an empty list: want at least one of {}", known.join(", ")),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (k, at) in list.value.iter().enumerate() {
        let kpath = format!("{path}[{k}]");
        match word(c, at, &kpath, &Aead::NAMES) {
            Some(cipher) if out.contains(&cipher) => {
                c.error(at, kpath, format!("{} is listed twice", cipher.name()));
                ok = false;
            }
            Some(cipher) => out.push(cipher),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A duration of whole seconds; `what` names it in messages.
fn whole_seconds(
    c: &mut Checker<'_>,
    at: &Spanned<RawDuration>,
    path: &str,
    what: &str,
) -> Option<Duration> {
    let d = duration(c, at, path)?;
    if d.subsec_nanos() != 0 {
        c.error(
            at,
            path,
            format!(
                "{what} {}: want whole seconds (IKE counts lifetimes and intervals in seconds)",
                show(d)
            ),
        );
        return None;
    }
    Some(d)
}

/// An SA lifetime from `MIN_LIFETIME` to `MAX_LIFETIME`.
fn lifetime(
    c: &mut Checker<'_>,
    at: &Spanned<RawDuration>,
    path: &str,
    what: &str,
) -> Option<Duration> {
    let d = whole_seconds(c, at, path, what)?;
    let reason = if d < MIN_LIFETIME {
        format!(
            "{what} {} is below the shortest, {}",
            show(d),
            show(MIN_LIFETIME)
        )
    } else if d > MAX_LIFETIME {
        format!(
            "{what} {} is above the longest, {}",
            show(d),
            show(MAX_LIFETIME)
        )
    } else {
        return Some(d);
    };
    c.error(at, path, reason);
    None
}

/// `ike_lifetime` and `child_lifetime`, the child's shorter.
fn lifetimes(
    c: &mut Checker<'_>,
    raw: &RawConnection,
    path: &str,
) -> (Option<Duration>, Option<Duration>) {
    let ike_path = format!("{path}.ike_lifetime");
    let child_path = format!("{path}.child_lifetime");
    let ike = match &raw.ike_lifetime {
        None => Some(DEFAULT_IKE_LIFETIME),
        Some(at) => lifetime(c, at, &ike_path, "IKE lifetime"),
    };
    let child = match &raw.child_lifetime {
        None => Some(DEFAULT_CHILD_LIFETIME),
        Some(at) => lifetime(c, at, &child_path, "child lifetime"),
    };
    let (Some(ike_d), Some(child_d)) = (ike, child) else {
        return (ike, child);
    };
    if child_d < ike_d {
        return (ike, child);
    }
    // Child SAs are rekeyed inside their IKE SA: one outliving it would
    // be deleted with it, unrekeyed.
    let why = "a child SA lives inside its IKE SA";
    match (&raw.child_lifetime, &raw.ike_lifetime) {
        (Some(at), ike_written) => {
            let default = if ike_written.is_none() {
                ", the default"
            } else {
                ""
            };
            c.error(
                at,
                child_path,
                format!(
                    "child lifetime {} is not below the IKE lifetime ({}{default}): {why}",
                    show(child_d),
                    show(ike_d)
                ),
            );
        }
        (None, Some(at)) => c.error(
            at,
            ike_path,
            format!(
                "IKE lifetime {} is not above the child lifetime ({}, the default): {why}",
                show(ike_d),
                show(child_d)
            ),
        ),
        (None, None) => {
            unreachable!("the default child lifetime is below the default IKE lifetime")
        }
    }
    (ike, None)
}

/// `dpd_interval`: above zero and below the child lifetime.
fn dpd_interval(
    c: &mut Checker<'_>,
    raw: &RawConnection,
    path: &str,
    child: Option<Duration>,
) -> Option<Duration> {
    let dpd_path = format!("{path}.dpd_interval");
    let interval = match &raw.dpd_interval {
        None => DEFAULT_DPD_INTERVAL,
        Some(at) => {
            let d = whole_seconds(c, at, &dpd_path, "dpd interval")?;
            if d.is_zero() {
                c.error(at, dpd_path, "dpd interval 0s: want a duration above zero");
                return None;
            }
            d
        }
    };
    // An invalid child lifetime was reported; the interval stands alone.
    let Some(child) = child else {
        return Some(interval);
    };
    if interval < child {
        return Some(interval);
    }
    // A peer that died is to be noticed while its SA lives.
    let why = "dead-peer detection checks the peer within an SA's life";
    match (&raw.dpd_interval, &raw.child_lifetime) {
        (Some(at), child_written) => {
            let default = if child_written.is_none() {
                ", the default"
            } else {
                ""
            };
            c.error(
                at,
                dpd_path,
                format!(
                    "dpd interval {} is not below the child lifetime ({}{default}): {why}",
                    show(interval),
                    show(child)
                ),
            );
        }
        (None, Some(at)) => c.error(
            at,
            format!("{path}.child_lifetime"),
            format!(
                "child lifetime {} is not above the dpd interval ({}, the default): {why}",
                show(child),
                show(interval)
            ),
        ),
        (None, None) => {
            unreachable!("the default dpd interval is below the default child lifetime")
        }
    }
    None
}

/// A connection's `psk_file`: resolved against the topology file's
/// directory, and a usable key file (see `read_psk`). The key read is
/// wiped at once; the model holds the path.
pub(super) fn psk_file(c: &mut Checker<'_>, at: &Spanned<String>, path: &str) -> Option<PathBuf> {
    if at.value.trim().is_empty() {
        c.error(
            at,
            path,
            "want the path of a file holding the pre-shared key (relative to the topology file)",
        );
        return None;
    }
    let file = c
        .file
        .parent()
        .map_or_else(|| PathBuf::from(&at.value), |dir| dir.join(&at.value));
    match read_psk(&file) {
        Ok(_key) => Some(file),
        Err(e) => {
            c.error(at, path, e.to_string());
            None
        }
    }
}
