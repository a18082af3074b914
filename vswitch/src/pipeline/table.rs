//! One flow table: entries in a slab, a classifier over them, and an index by
//! (match, priority) for strict operations.

use crate::classifier::{Classifier, RuleId};
use crate::flow::{FlowSpec, MaskedKey};
use rustc_hash::FxHashMap;
use std::time::Instant;

/// An installed entry with its counters.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) spec: FlowSpec,
    pub(crate) masked: MaskedKey,
    /// Insertion order across the whole pipeline; breaks priority ties.
    pub(crate) seq: u64,
    pub(crate) installed: Instant,
    pub(crate) last_used: Instant,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

/// A flow table.
#[derive(Debug, Default)]
pub(crate) struct FlowTable {
    slots: Vec<Option<Entry>>,
    free: Vec<RuleId>,
    classifier: Classifier,
    strict: FxHashMap<(MaskedKey, u16), RuleId>,
}

impl FlowTable {
    pub(crate) fn len(&self) -> usize {
        self.classifier.len()
    }

    /// Installs an entry, returning its id and the entry it replaced (same
    /// match and priority), if any.
    pub(crate) fn insert(&mut self, entry: Entry) -> (RuleId, Option<Entry>) {
        let replaced = self
            .find_strict(&entry.masked, entry.spec.priority)
            .and_then(|id| self.remove(id));
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as RuleId
            }
        };
        self.classifier
            .insert(&entry.masked, entry.spec.priority, entry.seq, id);
        self.strict.insert((entry.masked, entry.spec.priority), id);
        self.slots[id as usize] = Some(entry);
        (id, replaced)
    }

    pub(crate) fn remove(&mut self, id: RuleId) -> Option<Entry> {
        let entry = self.slots.get_mut(id as usize)?.take()?;
        self.classifier.remove(&entry.masked, id);
        self.strict.remove(&(entry.masked, entry.spec.priority));
        self.free.push(id);
        Some(entry)
    }

    pub(crate) fn get(&self, id: RuleId) -> Option<&Entry> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: RuleId) -> Option<&mut Entry> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    pub(crate) fn lookup(&self, key: &crate::flow::FlowKey) -> Option<RuleId> {
        self.classifier.lookup(key)
    }

    pub(crate) fn find_strict(&self, masked: &MaskedKey, priority: u16) -> Option<RuleId> {
        self.strict.get(&(*masked, priority)).copied()
    }

    /// Ids of every entry, in slot order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i as RuleId)
    }
}
