//! A backend pool and how it picks a backend for a new connection: round
//! robin, smooth weighted round robin, least connections per unit of weight,
//! source hashing (2- and 3-tuple) and 5-tuple hashing, the hashes through a
//! Maglev table. Only healthy backends that are not draining take new
//! connections; when none is healthy the pool refuses, or, with
//! [`NoHealthyBackends::AllProbedUp`], spreads over every backend not
//! draining. Live connections are the caller's (conntrack's): a pool never
//! moves one.

use crate::hash::FlowTuple;
use crate::maglev::{DEFAULT_TABLE_SIZE, MaglevError, MaglevTable};

/// A backend's identity, stable while it stays in the pool (the caller's
/// numbering: the controller gives each member one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u32);

/// One member of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Identity.
    pub id: BackendId,
    /// Stable hashing key (its address and port, say): a backend keeps its
    /// Maglev preferences, and so its flows, across rebuilds.
    pub key: u64,
    /// Relative weight; 0 takes no new connections.
    pub weight: u32,
    /// Whether its probe holds it healthy.
    pub healthy: bool,
    /// Being removed: takes no new connections, its live ones finish.
    pub draining: bool,
}

impl Backend {
    /// A healthy backend of weight 1, not draining.
    pub fn new(id: u32, key: u64) -> Self {
        Self {
            id: BackendId(id),
            key,
            weight: 1,
            healthy: true,
            draining: false,
        }
    }
}

/// How a new connection picks its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Each backend in turn.
    RoundRobin,
    /// In turn, as often as each backend's weight (smooth: interleaved, as
    /// nginx does it).
    WeightedRoundRobin,
    /// The backend with the fewest live connections per unit of weight.
    LeastConnections,
    /// By a hash of client and frontend address (Azure's "client IP").
    SourceIpHash,
    /// By a hash of both addresses and the protocol (Azure's "client IP and
    /// protocol").
    SourceIpProtocol,
    /// By a hash of the 5-tuple (Azure's default).
    FiveTupleHash,
}

impl Algorithm {
    /// Whether it picks through the Maglev table.
    pub fn hashes(self) -> bool {
        matches!(
            self,
            Self::SourceIpHash | Self::SourceIpProtocol | Self::FiveTupleHash
        )
    }
}

/// What a pool does with a new connection when no backend is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NoHealthyBackends {
    /// Refuse it (the default).
    #[default]
    Refuse,
    /// Spread it over every backend not draining, as if all probed up
    /// (Azure's option).
    AllProbedUp,
}

/// The outcome of [`Pool::select`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The connection goes to this backend.
    Backend(BackendId),
    /// No backend takes new connections: refuse it.
    NoBackend,
}

/// A pool: its members, its algorithm and the state that algorithm keeps.
#[derive(Debug, Clone)]
pub struct Pool {
    algorithm: Algorithm,
    no_healthy: NoHealthyBackends,
    table_size: u32,
    backends: Vec<Backend>,
    /// Indices into `backends` that take new connections now.
    candidates: Vec<usize>,
    /// Over `candidates`, for the hashing algorithms.
    table: MaglevTable,
    /// Round robin's next turn, and least connections' tie breaker.
    cursor: usize,
    /// Smooth weighted round robin's current weights, by candidate.
    current: Vec<i64>,
}

impl Pool {
    /// A pool of `backends` picking by `algorithm`, with a Maglev table of
    /// the default size.
    ///
    /// # Errors
    /// As [`MaglevTable::build`], for more backends than the table holds.
    pub fn new(
        algorithm: Algorithm,
        no_healthy: NoHealthyBackends,
        backends: Vec<Backend>,
    ) -> Result<Self, MaglevError> {
        Self::with_table_size(algorithm, no_healthy, backends, DEFAULT_TABLE_SIZE)
    }

    /// As [`Pool::new`] with a Maglev table of `table_size` slots (a prime).
    ///
    /// # Errors
    /// As [`MaglevTable::build`].
    pub fn with_table_size(
        algorithm: Algorithm,
        no_healthy: NoHealthyBackends,
        backends: Vec<Backend>,
        table_size: u32,
    ) -> Result<Self, MaglevError> {
        let mut pool = Self {
            algorithm,
            no_healthy,
            table_size,
            backends,
            candidates: Vec::new(),
            table: MaglevTable::build(&[], table_size)?,
            cursor: 0,
            current: Vec::new(),
        };
        pool.rebuild()?;
        Ok(pool)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The members, as last set.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The members that take new connections now.
    pub fn candidates(&self) -> impl Iterator<Item = &Backend> {
        self.candidates.iter().map(|&i| &self.backends[i])
    }

    /// Replaces the members at once (a new backend set from the controller).
    ///
    /// # Errors
    /// As [`MaglevTable::build`]; the pool is unchanged then.
    pub fn set_backends(&mut self, backends: Vec<Backend>) -> Result<(), MaglevError> {
        let old = std::mem::replace(&mut self.backends, backends);
        if let Err(e) = self.rebuild() {
            self.backends = old;
            self.rebuild()?;
            return Err(e);
        }
        Ok(())
    }

    /// Marks a member healthy or not; returns whether anything changed.
    pub fn set_healthy(&mut self, id: BackendId, healthy: bool) -> bool {
        self.update(id, |b| b.healthy = healthy)
    }

    /// Marks a member draining or not; returns whether anything changed.
    pub fn set_draining(&mut self, id: BackendId, draining: bool) -> bool {
        self.update(id, |b| b.draining = draining)
    }

    fn update(&mut self, id: BackendId, change: impl FnOnce(&mut Backend)) -> bool {
        let Some(backend) = self.backends.iter_mut().find(|b| b.id == id) else {
            return false;
        };
        let before = *backend;
        change(backend);
        if *backend == before {
            return false;
        }
        // The member set is unchanged, so the table fits: a rebuild of a
        // table that was built before cannot fail.
        self.rebuild()
            .expect("a table that held these backends holds them again");
        true
    }

    /// Recomputes the candidates and what the algorithm keeps over them.
    fn rebuild(&mut self) -> Result<(), MaglevError> {
        // Checked over all members, not only today's candidates, so that a
        // later change of health never meets a table too small.
        let members = self.backends.len();
        if members > self.table_size as usize || members > usize::from(u16::MAX) {
            return Err(MaglevError::TooManyBackends {
                size: self.table_size,
                backends: members,
            });
        }
        let open = |b: &Backend| !b.draining && b.weight > 0;
        let mut candidates: Vec<usize> = (0..self.backends.len())
            .filter(|&i| open(&self.backends[i]) && self.backends[i].healthy)
            .collect();
        if candidates.is_empty() && self.no_healthy == NoHealthyBackends::AllProbedUp {
            candidates = (0..self.backends.len())
                .filter(|&i| open(&self.backends[i]))
                .collect();
        }
        self.table = if self.algorithm.hashes() {
            let keyed: Vec<(u64, u32)> = candidates
                .iter()
                .map(|&i| (self.backends[i].key, self.backends[i].weight))
                .collect();
            MaglevTable::build(&keyed, self.table_size)?
        } else {
            MaglevTable::build(&[], self.table_size)?
        };
        self.current = vec![0; candidates.len()];
        self.candidates = candidates;
        Ok(())
    }

    /// Picks the backend for a new connection `flow`; `live` gives a
    /// backend's live connections (read by least connections only). Does
    /// not allocate.
    pub fn select(&mut self, flow: &FlowTuple, live: impl Fn(BackendId) -> u32) -> Selection {
        let n = self.candidates.len();
        if n == 0 {
            return Selection::NoBackend;
        }
        let pick = match self.algorithm {
            Algorithm::RoundRobin => {
                let pick = self.cursor % n;
                self.cursor = (pick + 1) % n;
                pick
            }
            Algorithm::WeightedRoundRobin => self.smooth_weighted_pick(),
            Algorithm::LeastConnections => self.least_connections_pick(live),
            Algorithm::SourceIpHash => self.hashed(flow.source_hash()),
            Algorithm::SourceIpProtocol => self.hashed(flow.source_protocol_hash()),
            Algorithm::FiveTupleHash => self.hashed(flow.five_tuple_hash()),
        };
        Selection::Backend(self.backends[self.candidates[pick]].id)
    }

    fn hashed(&self, hash: u64) -> usize {
        self.table
            .lookup(hash)
            .expect("a pool with candidates has a table over them")
    }

    /// nginx's smooth weighted round robin: every turn each candidate gains
    /// its weight, the richest is picked and pays the total.
    fn smooth_weighted_pick(&mut self) -> usize {
        let mut total = 0i64;
        let mut best = 0;
        for (slot, &i) in self.candidates.iter().enumerate() {
            let weight = i64::from(self.backends[i].weight);
            self.current[slot] += weight;
            total += weight;
            if self.current[slot] > self.current[best] {
                best = slot;
            }
        }
        self.current[best] -= total;
        best
    }

    /// Fewest live connections per unit of weight; ties go to the next
    /// candidate after the last pick, so equal backends alternate.
    fn least_connections_pick(&mut self, live: impl Fn(BackendId) -> u32) -> usize {
        let n = self.candidates.len();
        let mut best: Option<(usize, u64, u64)> = None;
        for step in 0..n {
            let slot = (self.cursor + step) % n;
            let backend = &self.backends[self.candidates[slot]];
            let (count, weight) = (u64::from(live(backend.id)), u64::from(backend.weight));
            // count / weight < best_count / best_weight, without division.
            let better = match best {
                None => true,
                Some((_, best_count, best_weight)) => count * best_weight < best_count * weight,
            };
            if better {
                best = Some((slot, count, weight));
            }
        }
        let (slot, _, _) = best.expect("a pool with candidates has a least loaded one");
        self.cursor = (slot + 1) % n;
        slot
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
