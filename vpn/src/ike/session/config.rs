//! A session's configuration: addresses, identities, the pre-shared key,
//! ciphers, traffic selectors, lifetimes, liveness checks, the
//! retransmission schedule and re-establishment back-off, with their
//! defaults (in [`Config::new`]) and validation that reports every error.

use crate::esp::Cipher;
use std::net::Ipv4Addr;
use std::time::Duration;
use zeroize::Zeroizing;

/// Whether this side starts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends IKE_SA_INIT from the start and again after every failure, so
    /// that the connection comes back by itself.
    Initiator,
    /// Only answers (a responder still accepts a peer's initiation at any
    /// time, and [`super::Session::connect`] makes it initiate).
    Responder,
}

/// When requests are sent again (RFC 7296 §2.1): after the first
/// transmission wait `initial`, then each wait `backoff` times the one
/// before; a request sent `tries` times and still unanswered after the
/// last wait is given up, and the peer with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retransmit {
    /// The wait after the first transmission.
    pub initial: Duration,
    /// Factor between successive waits (at least 1).
    pub backoff: f64,
    /// Transmissions of one request, the first included (at least 1).
    pub tries: u32,
}

/// The longest single wait, whatever the backoff gives.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

impl Retransmit {
    /// strongSwan's defaults: 4 s, times 1.8, five transmissions.
    pub const DEFAULT: Retransmit = Retransmit {
        initial: Duration::from_secs(4),
        backoff: 1.8,
        tries: 5,
    };

    /// The wait after the `sent`-th transmission (1 for the first).
    pub fn wait_after(&self, sent: u32) -> Duration {
        let exponent = i32::try_from(sent.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.backoff.max(1.0).powi(exponent);
        if !factor.is_finite() || factor > LONGEST_WAIT.as_secs_f64() {
            return LONGEST_WAIT;
        }
        self.initial.mul_f64(factor).min(LONGEST_WAIT)
    }

    /// From the first transmission of a request sent `tries` times to the
    /// moment it is given up.
    pub fn give_up_after(&self, tries: u32) -> Duration {
        (1..=tries.max(1)).map(|n| self.wait_after(n)).sum()
    }
}

/// Where in its lifetime an SA is rekeyed: at a random point between these
/// fractions (the jitter, from the session's RNG, keeps the two ends from
/// rekeying at once), or earlier when a request's whole retransmission
/// schedule would not fit in what is left, but never before half of the
/// lifetime. An SA not rekeyed by the end of its lifetime is torn down.
pub const REKEY_BETWEEN: (f64, f64) = (0.8, 0.9);

/// One IKEv2 connection's settings. [`Config::new`] fills in the defaults.
#[derive(Clone)]
pub struct Config {
    /// Whether this side initiates.
    pub role: Role,
    /// Our underlay address (IKE on UDP 500 and 4500 there).
    pub local: Ipv4Addr,
    /// The peer's underlay address.
    pub remote: Ipv4Addr,
    /// Our identity (ID_IPV4_ADDR). Default: `local`.
    pub id: Ipv4Addr,
    /// The identity the peer must prove. Default: `remote`.
    pub peer_id: Ipv4Addr,
    /// The pre-shared key (wiped when dropped).
    pub psk: Zeroizing<Vec<u8>>,
    /// Ciphers of the IKE SA and child SAs, by preference. Default:
    /// AES-256-GCM-16, then AES-128-GCM-16.
    pub ciphers: Vec<Cipher>,
    /// Our side's traffic (address, prefix length).
    pub local_ts: (Ipv4Addr, u8),
    /// The peer's side's traffic.
    pub remote_ts: (Ipv4Addr, u8),
    /// The IKE SA's lifetime. Default: 8 hours.
    pub ike_lifetime: Duration,
    /// A child SA's lifetime. Default: 1 hour.
    pub child_lifetime: Duration,
    /// Silence from the peer (no IKE message, no ESP reported) after which
    /// a liveness check is sent. Default: 30 s.
    pub dpd_interval: Duration,
    /// Retransmissions of a liveness check before the peer is declared
    /// dead (it is sent `1 + dpd_retries` times on the retransmission
    /// schedule's waits). Default: 4.
    pub dpd_retries: u32,
    /// The retransmission schedule of every other request. Default:
    /// [`Retransmit::DEFAULT`].
    pub retransmit: Retransmit,
    /// The first wait before an initiator tries again after a failure;
    /// each further failure doubles it. Default: 1 s.
    pub reconnect_initial: Duration,
    /// The longest such wait. Default: 60 s.
    pub reconnect_max: Duration,
    /// IKE_SA_INIT requests per second above which a responder demands a
    /// cookie (RFC 7296 §2.6) before keeping any state: `Some(0)` always,
    /// `None` never. Default: `Some(10)`.
    pub cookie_threshold: Option<u32>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("role", &self.role)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("id", &self.id)
            .field("peer_id", &self.peer_id)
            .field("ciphers", &self.ciphers)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("ike_lifetime", &self.ike_lifetime)
            .field("child_lifetime", &self.child_lifetime)
            .field("dpd_interval", &self.dpd_interval)
            .field("dpd_retries", &self.dpd_retries)
            .field("retransmit", &self.retransmit)
            .finish_non_exhaustive()
    }
}

/// One thing wrong with a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field with a value it cannot have.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
}

/// Every error of a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IKE configuration: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// A configuration with the defaults documented on each field.
    pub fn new(
        role: Role,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        psk: &[u8],
        local_ts: (Ipv4Addr, u8),
        remote_ts: (Ipv4Addr, u8),
    ) -> Config {
        Config {
            role,
            local,
            remote,
            id: local,
            peer_id: remote,
            psk: Zeroizing::new(psk.to_vec()),
            ciphers: vec![Cipher::Aes256Gcm16, Cipher::Aes128Gcm16],
            local_ts,
            remote_ts,
            ike_lifetime: Duration::from_secs(8 * 3600),
            child_lifetime: Duration::from_secs(3600),
            dpd_interval: Duration::from_secs(30),
            dpd_retries: 4,
            retransmit: Retransmit::DEFAULT,
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            cookie_threshold: Some(10),
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// All that is wrong, each naming its field and value.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut bad = |field: &'static str, reason: String| {
            errors.push(ConfigError::Invalid { field, reason });
        };
        if self.ciphers.is_empty() {
            bad("ciphers", "no cipher to offer".into());
        }
        if self.psk.is_empty() {
            bad("psk", "an empty pre-shared key".into());
        }
        for (field, (address, len)) in [("local_ts", self.local_ts), ("remote_ts", self.remote_ts)]
        {
            if len > 32 {
                bad(
                    field,
                    format!("prefix length {len} of {address} is over 32"),
                );
            }
        }
        for (field, value) in [
            ("ike_lifetime", self.ike_lifetime),
            ("child_lifetime", self.child_lifetime),
            ("dpd_interval", self.dpd_interval),
            ("retransmit.initial", self.retransmit.initial),
            ("reconnect_initial", self.reconnect_initial),
        ] {
            if value.is_zero() {
                bad(field, "must be more than zero".into());
            }
        }
        if !(self.retransmit.backoff.is_finite() && self.retransmit.backoff >= 1.0) {
            bad(
                "retransmit.backoff",
                format!("{} is not a factor of at least 1", self.retransmit.backoff),
            );
        }
        if self.retransmit.tries == 0 {
            bad(
                "retransmit.tries",
                "a request must be sent at least once".into(),
            );
        }
        if self.reconnect_max < self.reconnect_initial {
            bad(
                "reconnect_max",
                format!(
                    "{:?} is shorter than reconnect_initial {:?}",
                    self.reconnect_max, self.reconnect_initial
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The longest a silent peer can go undetected: from the last thing
    /// heard, a liveness check's wait and its transmissions, or an
    /// ordinary request's if one was under way.
    pub fn dead_peer_within(&self) -> Duration {
        let liveness = self
            .retransmit
            .give_up_after(self.dpd_retries.saturating_add(1));
        let request = self.retransmit.give_up_after(self.retransmit.tries);
        self.dpd_interval + liveness.max(request)
    }

    /// How long a replaced SA is kept for the peer's Delete of it (which
    /// may come after its own retransmissions of the rekey).
    pub(crate) fn retire_wait(&self) -> Duration {
        2 * self.retransmit.give_up_after(self.retransmit.tries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new(
            Role::Initiator,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            b"key",
            (Ipv4Addr::new(10, 81, 0, 0), 24),
            (Ipv4Addr::new(10, 82, 0, 0), 24),
        )
    }

    #[test]
    fn the_default_schedule_is_rfc_7296s_backoff() {
        let r = Retransmit::DEFAULT;
        assert_eq!(r.wait_after(1), Duration::from_secs(4));
        assert_eq!(r.wait_after(2), Duration::from_secs_f64(7.2));
        let total = r.give_up_after(5).as_secs_f64();
        assert!((total - (4.0 + 7.2 + 12.96 + 23.328 + 41.9904)).abs() < 1e-6);
        let wild = Retransmit { backoff: 1e9, ..r };
        assert_eq!(wild.wait_after(40), LONGEST_WAIT);
    }

    #[test]
    fn the_defaults_validate_and_every_error_is_reported() {
        let good = config();
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(good.ciphers[0], Cipher::Aes256Gcm16);
        assert_eq!(good.id, good.local);
        let mut bad = config();
        bad.ciphers.clear();
        bad.psk = Zeroizing::new(Vec::new());
        bad.local_ts.1 = 33;
        bad.dpd_interval = Duration::ZERO;
        bad.retransmit.backoff = 0.5;
        bad.retransmit.tries = 0;
        bad.reconnect_max = Duration::from_millis(1);
        let errors = bad.validate().unwrap_err();
        assert_eq!(errors.0.len(), 7, "{errors}");
        assert!(errors.to_string().contains("local_ts: prefix length 33"));
        assert!(!format!("{bad:?}").contains("psk"), "the key is not shown");
    }

    #[test]
    fn a_dead_peer_is_found_within_the_liveness_wait_and_schedule() {
        let mut c = config();
        c.dpd_interval = Duration::from_secs(10);
        c.dpd_retries = 1;
        c.retransmit = Retransmit {
            initial: Duration::from_secs(1),
            backoff: 2.0,
            tries: 3,
        };
        // max(1 + 2, 1 + 2 + 4) after the 10 s wait.
        assert_eq!(c.dead_peer_within(), Duration::from_secs(17));
    }
}
