//! Links between endpoints, and the check that every port and interface is
//! linked exactly once.

use super::{Checker, DeviceInfo, DeviceRef};
use crate::topology::TopologyError;
use crate::topology::model::*;
use rustc_hash::FxHashMap;
use serde_saphyr::Spanned;

pub(super) fn links(
    c: &mut Checker<'_>,
    raw: &[Spanned<Vec<Spanned<String>>>],
    devices: &FxHashMap<DeviceRef, DeviceInfo>,
) -> Vec<Link> {
    let mut used: FxHashMap<DeviceRef, String> = FxHashMap::default();
    let mut out = Vec::new();
    for (l, link) in raw.iter().enumerate() {
        let path = format!("links[{l}]");
        if link.value.len() != 2 {
            c.error(
                link,
                &path,
                format!(
                    "a link joins exactly two endpoints, like [h1:eth0, sw1:p1]; got {}",
                    link.value.len()
                ),
            );
            continue;
        }
        let mut ends = Vec::new();
        for (e, end) in link.value.iter().enumerate() {
            let epath = format!("{path}[{e}]");
            let Some((node, device)) = end.value.split_once(':') else {
                c.error(
                    end,
                    &epath,
                    format!("{:?}: want node:device, like h1:eth0 or sw1:p1", end.value),
                );
                continue;
            };
            let key = DeviceRef {
                node: node.to_string(),
                device: device.to_string(),
            };
            let Some(DeviceInfo { kind, .. }) = devices.get(&key) else {
                let node_has_devices = devices.keys().any(|k| k.node == node);
                let reason = if node_has_devices {
                    format!("{node} has no port or interface named {device}")
                } else {
                    format!("no host or switch named {node}")
                };
                c.error(end, &epath, reason);
                continue;
            };
            if let Some(first) = used.insert(key.clone(), epath.clone()) {
                c.error(
                    end,
                    &epath,
                    format!("{} is already linked by {first}", end.value),
                );
                continue;
            }
            ends.push(Endpoint {
                node: key.node,
                device: key.device,
                kind: *kind,
            });
        }
        if let [a, b] = ends.as_slice() {
            if a.node == b.node {
                c.error(link, &path, format!("links {} to itself", a.node));
                continue;
            }
            out.push(Link {
                a: a.clone(),
                b: b.clone(),
            });
        }
    }
    // Every port and interface must be linked: an unlinked one has no device.
    let mut unlinked: Vec<(&DeviceRef, &DeviceInfo)> = devices
        .iter()
        .filter(|(k, _)| !used.contains_key(*k))
        .collect();
    unlinked.sort_by_key(|(_, info)| (info.line, info.column));
    for (device, info) in unlinked {
        c.errors.push(TopologyError {
            file: c.file.to_path_buf(),
            line: Some(info.line),
            column: Some(info.column),
            path: info.path.clone(),
            reason: format!(
                "{}:{} is not linked to anything; add it to links",
                device.node, device.device
            ),
        });
    }
    out
}
