//! The anti-replay window of an inbound SA (RFC 4303 §3.4.3): which of the
//! last `WINDOW` sequence numbers below the highest one accepted have been
//! seen. A packet is checked before its ICV is (cheap refusals first) and
//! accepted only after it authenticated, so a forged packet never moves the
//! window.

/// Packets the window spans (RFC 4303 asks for at least 32, and 64 by
/// default; a fast link reorders more).
pub const WINDOW: u32 = 1024;

const WORDS: usize = (WINDOW / 64) as usize;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// Zero is never sent (the first packet carries 1).
    #[error("sequence number 0 is never sent")]
    Zero,
    /// Older than the window: it cannot be told from a replay.
    #[error("sequence number below the replay window")]
    TooOld,
    /// Accepted before.
    #[error("sequence number seen before")]
    Seen,
}

/// The window: the highest sequence number accepted and a bitmap of the
/// `WINDOW` numbers up to it, indexed by the number modulo `WINDOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u32,
    seen: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub fn new() -> Self {
        ReplayWindow {
            top: 0,
            seen: [0; WORDS],
        }
    }

    /// The highest sequence number accepted (0: none yet).
    pub fn highest(&self) -> u32 {
        self.top
    }

    /// Whether `seq` may be new: not zero, not below the window, not seen.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn check(&self, seq: u32) -> Result<(), Replay> {
        if seq == 0 {
            return Err(Replay::Zero);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(Replay::TooOld);
        }
        if self.is_set(seq) {
            return Err(Replay::Seen);
        }
        Ok(())
    }

    /// Records `seq` as received (after its packet authenticated), sliding
    /// the window when it is the highest yet.
    ///
    /// # Errors
    /// As [`ReplayWindow::check`]; the window is left as it was.
    pub fn accept(&mut self, seq: u32) -> Result<(), Replay> {
        self.check(seq)?;
        if seq > self.top {
            let advance = seq - self.top;
            if advance >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                // The slots the new numbers take held numbers that now fall
                // out of the window.
                for n in self.top + 1..seq {
                    self.clear(n);
                }
            }
            self.top = seq;
        }
        self.set(seq);
        Ok(())
    }

    fn slot(seq: u32) -> (usize, u64) {
        let index = seq % WINDOW;
        ((index / 64) as usize, 1 << (index % 64))
    }

    fn is_set(&self, seq: u32) -> bool {
        let (word, bit) = Self::slot(seq);
        self.seen[word] & bit != 0
    }

    fn set(&mut self, seq: u32) {
        let (word, bit) = Self::slot(seq);
        self.seen[word] |= bit;
    }

    fn clear(&mut self, seq: u32) {
        let (word, bit) = Self::slot(seq);
        self.seen[word] &= !bit;
    }
}

#[cfg(test)]
mod tests;
