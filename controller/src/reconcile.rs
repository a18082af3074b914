//! Desired state against installed state, per switch: applications say which
//! flows they want; the reconciler answers with the flow-mods that turn what
//! the switch holds into that, and nothing more (as a Kubernetes controller
//! reconciles spec against status).

use rustc_hash::FxHashMap;
use sdn_vswitch::flow::{FlowMod, FlowModCommand, FlowSpec, Match};

/// What identifies an entry in a switch: table, priority and match (OpenFlow's
/// strict identity).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowId {
    /// Table.
    pub table: u8,
    /// Priority.
    pub priority: u16,
    /// Match.
    pub matcher: Match,
}

impl FlowId {
    /// The identity of `spec`.
    pub fn of(spec: &FlowSpec) -> FlowId {
        FlowId {
            table: spec.table,
            priority: spec.priority,
            matcher: spec.matcher.clone(),
        }
    }
}

/// Whether two entries with the same identity behave the same.
fn same_entry(a: &FlowSpec, b: &FlowSpec) -> bool {
    a.actions == b.actions
        && a.cookie == b.cookie
        && a.idle_timeout == b.idle_timeout
        && a.hard_timeout == b.hard_timeout
        && a.send_flow_removed == b.send_flow_removed
        && a.matcher == b.matcher
}

/// The desired and the (believed) installed flows of one switch.
#[derive(Debug, Default)]
pub struct Reconciler {
    desired: FxHashMap<FlowId, FlowSpec>,
    installed: FxHashMap<FlowId, FlowSpec>,
}

impl Reconciler {
    /// An empty reconciler: nothing wanted, nothing known installed.
    pub fn new() -> Reconciler {
        Reconciler::default()
    }

    /// Wants `spec` installed; returns its id.
    pub fn want(&mut self, spec: FlowSpec) -> FlowId {
        let id = FlowId::of(&spec);
        self.desired.insert(id.clone(), spec);
        id
    }

    /// No longer wants the entry `id`.
    pub fn unwant(&mut self, id: &FlowId) {
        self.desired.remove(id);
    }

    /// The desired entry `id`.
    pub fn desired(&self, id: &FlowId) -> Option<&FlowSpec> {
        self.desired.get(id)
    }

    /// Every desired entry.
    pub fn desired_flows(&self) -> impl Iterator<Item = &FlowSpec> {
        self.desired.values()
    }

    /// The entry `id` as believed installed.
    pub fn installed(&self, id: &FlowId) -> Option<&FlowSpec> {
        self.installed.get(id)
    }

    /// Number of entries believed installed.
    pub fn installed_count(&self) -> usize {
        self.installed.len()
    }

    /// Replaces what is believed installed with what the switch reported.
    pub fn set_installed(&mut self, flows: impl IntoIterator<Item = FlowSpec>) {
        self.installed = flows.into_iter().map(|f| (FlowId::of(&f), f)).collect();
    }

    /// Records that the switch removed an entry by itself (timeout). An entry
    /// that has since been replaced by another with the same match (a
    /// different cookie or actions) is still installed and stays recorded.
    pub fn forget_removed(&mut self, removed: &FlowSpec) {
        let id = FlowId::of(removed);
        if self
            .installed
            .get(&id)
            .is_some_and(|have| same_entry(have, removed))
        {
            self.installed.remove(&id);
        }
    }

    /// Flow-mods that bring the entries `ids` to their desired state, and
    /// records them as installed.
    pub fn sync_ids<'a>(&mut self, ids: impl IntoIterator<Item = &'a FlowId>) -> Vec<FlowMod> {
        let mut mods = Vec::new();
        for id in ids {
            self.sync_one(id, &mut mods);
        }
        mods
    }

    /// Flow-mods that bring the whole switch to the desired state: deletes
    /// first, then additions, in table order.
    pub fn sync_all(&mut self) -> Vec<FlowMod> {
        let unique: rustc_hash::FxHashSet<FlowId> = self
            .desired
            .keys()
            .chain(self.installed.keys())
            .cloned()
            .collect();
        let mut ids: Vec<FlowId> = unique.into_iter().collect();
        ids.sort_by_key(|id| (id.table, std::cmp::Reverse(id.priority)));
        let mut mods = Vec::new();
        for id in &ids {
            self.sync_one(id, &mut mods);
        }
        mods.sort_by_key(|m| !matches!(m.command, FlowModCommand::Delete { .. }));
        mods
    }

    fn sync_one(&mut self, id: &FlowId, mods: &mut Vec<FlowMod>) {
        match (self.desired.get(id), self.installed.get(id)) {
            (Some(want), Some(have)) if same_entry(want, have) => {}
            (Some(want), _) => {
                mods.push(FlowMod::add(want.clone()));
                self.installed.insert(id.clone(), want.clone());
            }
            (None, Some(have)) => {
                mods.push(FlowMod::delete_strict(FlowSpec::new(
                    have.table,
                    have.priority,
                    have.matcher.clone(),
                    Vec::new(),
                )));
                self.installed.remove(id);
            }
            (None, None) => {}
        }
    }

    /// Every installed entry whose cookie matches `cookie` under `mask`.
    pub fn installed_with_cookie(&self, cookie: u64, mask: u64) -> impl Iterator<Item = &FlowSpec> {
        self.installed
            .values()
            .filter(move |f| f.cookie & mask == cookie & mask)
    }
}

/// The entries one application wants, as it last asked for them: wanting
/// a new list unwants what is no longer in it.
#[derive(Debug, Default, Clone)]
pub struct FlowSet {
    ids: Vec<FlowId>,
}

impl FlowSet {
    /// Wants every flow of `flows` in `r`; returns their ids.
    pub fn want(&mut self, flows: &[FlowSpec], r: &mut Reconciler) -> Vec<FlowId> {
        self.ids = flows.iter().map(|spec| r.want(spec.clone())).collect();
        self.ids.clone()
    }

    /// Replaces the wanted flows by `flows`; returns the ids whose desired
    /// state changed (entries gone, and entries new or different).
    pub fn replace(&mut self, flows: &[FlowSpec], r: &mut Reconciler) -> Vec<FlowId> {
        let old = std::mem::take(&mut self.ids);
        let wanted = self.want(flows, r);
        let keep: rustc_hash::FxHashSet<&FlowId> = wanted.iter().collect();
        let mut changed: Vec<FlowId> = old.into_iter().filter(|id| !keep.contains(id)).collect();
        for id in &changed {
            r.unwant(id);
        }
        changed.extend(wanted);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdn_vswitch::flow::{Action, MacMatch};
    use sdn_vswitch::testutil::mac;

    fn flow(table: u8, priority: u16, dst: u8, out: u32) -> FlowSpec {
        FlowSpec::new(
            table,
            priority,
            Match {
                eth_dst: Some(MacMatch::exact(mac(dst))),
                ..Match::default()
            },
            vec![Action::Output(out)],
        )
    }

    #[test]
    fn pushes_only_differences() {
        let mut r = Reconciler::new();
        let a = r.want(flow(0, 10, 1, 1));
        let b = r.want(flow(0, 10, 2, 2));
        let first = r.sync_all();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|m| m.command == FlowModCommand::Add));
        assert!(r.sync_all().is_empty(), "nothing changed, nothing pushed");
        // Change one entry's actions, drop the other.
        r.want(flow(0, 10, 1, 3));
        r.unwant(&b);
        let mods = r.sync_ids([&a, &b]);
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].command, FlowModCommand::Add);
        assert_eq!(mods[0].spec.actions, vec![Action::Output(3)]);
        assert_eq!(mods[1].command, FlowModCommand::Delete { strict: true });
        assert_eq!(r.installed_count(), 1);
    }

    #[test]
    fn resync_against_what_the_switch_reports() {
        let mut r = Reconciler::new();
        r.want(flow(0, 10, 1, 1));
        r.want(flow(1, 0, 2, 2));
        // The switch holds one wanted entry, one stale entry and one with other actions.
        r.set_installed([flow(0, 10, 1, 1), flow(0, 50, 9, 9), flow(1, 0, 2, 7)]);
        let mods = r.sync_all();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0].command, FlowModCommand::Delete { strict: true });
        assert_eq!(mods[0].spec.priority, 50);
        assert_eq!(mods[1].command, FlowModCommand::Add);
        assert_eq!(mods[1].spec.actions, vec![Action::Output(2)]);
        assert!(r.sync_all().is_empty());
        r.forget_removed(&flow(0, 10, 1, 1));
        assert_eq!(
            r.sync_all().len(),
            1,
            "an entry the switch timed out is put back while wanted"
        );
        // A removal of an entry that was since replaced changes nothing.
        r.forget_removed(&flow(1, 0, 2, 7));
        assert!(
            r.sync_all().is_empty(),
            "the replacement is still installed"
        );
    }
}
