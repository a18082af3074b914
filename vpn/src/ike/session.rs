//! A sans-IO IKEv2 endpoint for one connection (RFC 7296) with a
//! pre-shared key: IKE datagrams, ESP activity and the time come in; IKE
//! datagrams to send, events for the switch and the next deadline come
//! out. It never opens a socket or reads the clock.
//!
//! It initiates (as [`Role::Initiator`], or after [`Session::connect`])
//! and always accepts a peer's initiation; answers IKE_SA_INIT with a
//! cookie under load; moves to UDP 4500 with the non-ESP marker when a NAT
//! is detected; retransmits its requests (one at a time per IKE SA) and
//! answers a repeated request from its cache; rekeys child SAs and the IKE
//! SA before their lifetimes end, as initiator or responder, making the
//! new SA before deleting the old and settling crossed rekeys by their
//! nonces; checks a silent peer is alive and, once it is declared dead,
//! removes every SA and (as initiator) tries again on a back-off.
//!
//! Driving it: feed [`Session::handle_datagram`] every UDP datagram of
//! ports 500 and 4500 that is IKE (on 4500: those that begin with the
//! non-ESP marker, passed with it), tell [`Session::esp_received`] when
//! ESP opened on one of its inbound SAs, call [`Session::handle_timeout`]
//! at [`Session::poll_timeout`], and after each call drain
//! [`Session::poll_transmit`] and [`Session::poll_event`].

mod config;
mod established;
mod events;
mod handshake;
mod rekeying;
mod retiring;
mod rng;
mod state;
mod timers;
mod window;

pub use config::{Config, ConfigError, ConfigErrors, REKEY_BETWEEN, Retransmit, Role};
pub use events::{
    ChildSaKeys, DownReason, Event, IKE_PORT, NAT_T_PORT, NON_ESP_MARKER, Phase, Stats, Transmit,
};

use super::cookie::CookieJar;
use super::message::{Header, exchange};
use established::Flow;
use rng::Rng;
use state::{Established, Responding, Retiring, State};
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};
use timers::{Timer, TimerTable};

/// How often the cookie secret changes.
const COOKIE_ROTATION: Duration = Duration::from_secs(300);
/// Most timers one `handle_timeout` call handles (each moves its deadline
/// on, so this only bounds a bug).
const TIMER_ROUNDS: usize = 256;

/// What a session hands out, gathered as it works.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

impl Outputs {
    pub(crate) fn send(&mut self, transmit: Transmit) {
        self.transmits.push_back(transmit);
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }
}

/// What the parts of an established SA's handling share with the session.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    /// Whether this side keeps the connection up (makes what is missing).
    pub(crate) keep_up: bool,
    pub(crate) rng: &'a mut Rng,
    pub(crate) out: &'a mut Outputs,
    pub(crate) retiring: &'a mut Vec<Retiring>,
}

/// One IKEv2 connection's endpoint.
pub struct Session {
    config: Config,
    rng: Rng,
    state: State,
    /// A peer's handshake between its IKE_SA_INIT and its IKE_AUTH.
    responding: Option<Box<Responding>>,
    /// IKE SAs other than the current one, winding down.
    retiring: Vec<Retiring>,
    /// The last IKE_SA_INIT request answered and the answer's message.
    last_init: Option<(Vec<u8>, Vec<u8>)>,
    /// Whether to (re-)establish by initiating.
    keep_up: bool,
    /// Failed attempts in a row, for the back-off.
    failures: u32,
    cookies: Option<CookieJar>,
    cookie_rotate_at: Option<Instant>,
    /// IKE_SA_INIT requests in the second that began at `.0`.
    load: (Instant, u32),
    timers: TimerTable,
    out: Outputs,
    span: tracing::Span,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase())
            .field("stats", &self.out.stats)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for `config` at `now`, its SPIs, jitter and back-off
    /// drawn from `seed` (seed it from the system in production: SPIs
    /// should not be guessable). An initiator's first IKE_SA_INIT is due at
    /// once.
    ///
    /// # Errors
    /// Every error of the configuration.
    pub fn new(config: Config, seed: u64, now: Instant) -> Result<Session, ConfigErrors> {
        config.validate()?;
        let keep_up = config.role == Role::Initiator;
        let span = tracing::info_span!("ike", peer = %config.remote);
        let mut session = Session {
            rng: Rng::new(seed),
            state: State::Idle {
                start_at: keep_up.then_some(now),
            },
            responding: None,
            retiring: Vec::new(),
            last_init: None,
            keep_up,
            failures: 0,
            cookies: None,
            cookie_rotate_at: None,
            load: (now, 0),
            timers: TimerTable::default(),
            out: Outputs::default(),
            span,
            config,
        };
        session.sync_timers();
        Ok(session)
    }

    /// An IKE datagram that arrived at our `local_port` (500 or 4500) from
    /// `from`: the UDP payload as received, so on port 4500 it begins with
    /// the four-byte non-ESP marker (a NAT keepalive or ESP there is
    /// counted as malformed and dropped). Never panics on any bytes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        local_port: u16,
        datagram: &[u8],
    ) {
        let span = self.span.clone();
        let _entered = span.enter();
        self.receive(now, from, local_port, datagram);
        self.sync_timers();
    }

    /// Handles every timer expired at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let span = self.span.clone();
        let _entered = span.enter();
        for _ in 0..TIMER_ROUNDS {
            self.sync_timers();
            let Some(timer) = self.timers.expired(now) else {
                break;
            };
            self.on_timer(now, timer);
        }
        self.sync_timers();
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Makes this side initiate now (if no IKE SA is up or being made) and
    /// keep the connection up from then on, as an initiator does.
    pub fn connect(&mut self, now: Instant) {
        let span = self.span.clone();
        let _entered = span.enter();
        self.keep_up = true;
        self.failures = 0;
        if matches!(self.state, State::Idle { .. } | State::Closed) {
            self.start_handshake(now);
        }
        self.sync_timers();
    }

    /// Closes the connection: the child SAs are removed at once, the IKE
    /// SA is deleted (an INFORMATIONAL Delete, retransmitted), and nothing
    /// is started or accepted until [`Session::connect`].
    pub fn close(&mut self, now: Instant) {
        let span = self.span.clone();
        let _entered = span.enter();
        self.keep_up = false;
        self.responding = None;
        if matches!(self.state, State::Established(_)) {
            self.down(now, DownReason::Closed);
        }
        self.state = State::Closed;
        self.sync_timers();
    }

    /// ESP opened on our inbound SA `inbound_spi` at `now`: the peer is
    /// alive (no liveness check is needed while it sends), and a child SA
    /// the peer made is one it now sends on, so we send on it too. Call it
    /// once per batch of packets, not necessarily per packet.
    pub fn esp_received(&mut self, now: Instant, inbound_spi: u32) {
        let (Some(est), mut ctx) = self.split() else {
            return;
        };
        est.esp_received(&mut ctx, now, inbound_spi);
        self.sync_timers();
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.out.stats
    }

    /// Where the connection stands.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle { .. } => Phase::Idle,
            State::Initiating(_) => Phase::Connecting,
            State::Established(_) => Phase::Established,
            State::Closed => Phase::Closed,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The established state and what its handling shares.
    fn split(&mut self) -> (Option<&mut Established>, Ctx<'_>) {
        let Session {
            state,
            config,
            rng,
            out,
            retiring,
            keep_up,
            ..
        } = self;
        let est = match state {
            State::Established(est) => Some(&mut **est),
            _ => None,
        };
        (
            est,
            Ctx {
                config,
                keep_up: *keep_up,
                rng,
                out,
                retiring,
            },
        )
    }

    fn receive(&mut self, now: Instant, from: SocketAddrV4, local_port: u16, datagram: &[u8]) {
        let message = if local_port == NAT_T_PORT {
            match datagram.strip_prefix(&NON_ESP_MARKER[..]) {
                Some(m) => m,
                None => {
                    // A NAT keepalive (0xff) or ESP: not ours.
                    self.out.stats.malformed += 1;
                    return;
                }
            }
        } else {
            datagram
        };
        let header = match Header::parse(message) {
            Ok(h) if h.length as usize == message.len() => h,
            _ => {
                self.out.stats.malformed += 1;
                tracing::trace!(len = message.len(), "not an IKE message");
                return;
            }
        };
        match (header.exchange, header.is_response()) {
            (exchange::IKE_SA_INIT, false) => {
                self.on_init_request(now, from, local_port, message, &header)
            }
            (exchange::IKE_SA_INIT, true) => {
                self.on_init_response(now, from, local_port, message, &header)
            }
            _ => self.on_protected(now, from, local_port, message, &header),
        }
    }

    /// A message of an IKE SA after IKE_SA_INIT, routed by its SPIs.
    fn on_protected(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        local_port: u16,
        message: &[u8],
        h: &Header,
    ) {
        let spis = (h.spi_i, h.spi_r);
        if let State::Initiating(init) = &self.state
            && init
                .auth
                .as_ref()
                .is_some_and(|a| (a.agreed.spi_i, a.agreed.spi_r) == spis)
        {
            return self.on_auth_response(now, message, h);
        }
        if self
            .responding
            .as_ref()
            .is_some_and(|r| (r.agreed.spi_i, r.agreed.spi_r) == spis)
        {
            return self.on_auth_request(now, from, local_port, message, h);
        }
        if let (Some(est), mut ctx) = self.split()
            && est.ike.spis() == spis
        {
            if let Flow::Down(reason) = est.on_message(&mut ctx, now, message, h) {
                self.down(now, reason);
            }
            return;
        }
        if let Some(i) = self.retiring.iter().position(|r| r.sa.spis() == spis) {
            return self.on_retiring(now, i, message, h);
        }
        self.out.stats.unexpected += 1;
        tracing::trace!(spi_i = h.spi_i, "a message for no IKE SA of ours");
    }

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Start => self.start_handshake(now),
            Timer::Handshake => self.on_handshake_deadline(now),
            Timer::HalfOpen => {
                tracing::debug!("a peer's half-open IKE_SA_INIT expired");
                self.responding = None;
            }
            Timer::Retiring => self.on_retiring_deadline(now),
            Timer::CookieRotate => {
                if let Some(jar) = &mut self.cookies {
                    jar.rotate();
                }
                self.cookie_rotate_at = Some(now + COOKIE_ROTATION);
            }
            Timer::Request
            | Timer::Liveness
            | Timer::RekeyIke
            | Timer::ExpireIke
            | Timer::RekeyChild
            | Timer::ExpireChild
            | Timer::ChildCleanup => {
                let (Some(est), mut ctx) = self.split() else {
                    return;
                };
                if let Flow::Down(reason) = est.on_timer(&mut ctx, now, timer) {
                    self.down(now, reason);
                }
            }
        }
    }

    /// Established → Idle (or Closed): every child SA removed, the IKE SA
    /// deleted at the peer unless the peer is gone or deleted it, and the
    /// next attempt scheduled if we keep the connection up.
    fn down(&mut self, now: Instant, reason: DownReason) {
        let state = std::mem::replace(&mut self.state, State::Idle { start_at: None });
        let State::Established(est) = state else {
            self.state = state;
            return;
        };
        let Established { ike, children, .. } = *est;
        for c in children {
            self.out.event(Event::ChildSaRemoved {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
        if matches!(
            reason,
            DownReason::Expired | DownReason::Closed | DownReason::Replaced
        ) {
            let mut ctx = Ctx {
                config: &self.config,
                keep_up: self.keep_up,
                rng: &mut self.rng,
                out: &mut self.out,
                retiring: &mut self.retiring,
            };
            retiring::retire_with_delete(&mut ctx, ike, now);
        }
        tracing::info!(?reason, "IKE SA down");
        self.out.event(Event::IkeDown { reason });
        if reason == DownReason::PeerDead {
            self.failures += 1;
        }
        self.state = State::Idle {
            start_at: self.next_start(now),
        };
    }

    /// When to try again, if we keep the connection up: the back-off of
    /// [`Config::reconnect_initial`] doubled per failure in a row, up to
    /// [`Config::reconnect_max`], plus up to a quarter of jitter.
    fn next_start(&mut self, now: Instant) -> Option<Instant> {
        if !self.keep_up {
            return None;
        }
        let doubled = 2f64.powi(self.failures.saturating_sub(1).min(30) as i32);
        let wait = self
            .config
            .reconnect_initial
            .mul_f64(doubled)
            .min(self.config.reconnect_max);
        Some(now + wait.mul_f64(1.0 + 0.25 * self.rng.fraction()))
    }

    /// Rebuilds the timer table from the state.
    fn sync_timers(&mut self) {
        let t = &mut self.timers;
        t.clear();
        match &self.state {
            State::Idle { start_at } => t.set(Timer::Start, *start_at),
            State::Initiating(init) => t.set(Timer::Handshake, init.window.deadline()),
            State::Established(est) => {
                t.set(Timer::Request, est.ike.window.deadline());
                if est.ike.window.is_free() {
                    t.set(Timer::Liveness, Some(est.liveness_at));
                }
                t.set(Timer::RekeyIke, est.ike.rekey_at);
                t.set(Timer::ExpireIke, Some(est.ike.expire_at));
                let earliest = |f: fn(&state::Child) -> Option<Instant>| {
                    est.children.iter().filter_map(f).min()
                };
                let at = |a: Option<Instant>, b: Option<Instant>| a.into_iter().chain(b).min();
                t.set(
                    Timer::RekeyChild,
                    at(earliest(|c| c.rekey_at), est.new_child_at),
                );
                t.set(
                    Timer::ExpireChild,
                    at(earliest(|c| c.expire_at), est.childless_until),
                );
                t.set(Timer::ChildCleanup, earliest(|c| c.retire_at));
            }
            State::Closed => {}
        }
        t.set(Timer::HalfOpen, self.responding.as_ref().map(|r| r.expires));
        t.set(
            Timer::Retiring,
            self.retiring
                .iter()
                .map(|r| r.sa.window.deadline().map_or(r.until, |d| d.min(r.until)))
                .min(),
        );
        t.set(Timer::CookieRotate, self.cookie_rotate_at);
    }
}

/// A fresh nonce from the system's randomness (key material: not from the
/// session's seeded RNG).
pub(crate) fn fresh_nonce() -> Option<Vec<u8>> {
    let mut nonce = vec![0u8; super::sa_init::NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).ok()?;
    Some(nonce)
}

#[cfg(test)]
mod tests;
