//! An established IKE SA's exchanges: the peer's INFORMATIONAL requests
//! (liveness checks, deletes) answered, our requests sent when the window
//! is free (deletes first, then rekeys, then liveness checks) and their
//! answers taken, the SA's and its child SAs' timers, and which child SA
//! the switch sends on. Rekeys are in `rekeying`.

use super::Ctx;
use super::events::{DownReason, Event};
use super::state::{Child, Established, Purpose, child_keys, retry_before};
use super::timers::Timer;
use super::window::{Deadline, RequestKind};
use crate::ike::auth::ChildSa;
use crate::ike::message::{Header, exchange, payload};
use crate::ike::protected::{Opened, deleted_esp_spis, deletes_ike};
use crate::ike::sk::SkError;
use std::time::{Duration, Instant};

/// What handling an input leaves the connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Still established.
    Stay,
    /// Down, for this reason.
    Down(DownReason),
}

/// The Delete payloads of `opened`: whether one deletes the IKE SA, and
/// the ESP SPIs (the sender's inbound ones) the others name.
pub(crate) fn deletes(opened: &Opened) -> (bool, Vec<u32>) {
    let mut ike = false;
    let mut spis = Vec::new();
    for p in opened.payloads.iter().filter(|p| p.kind == payload::DELETE) {
        let Some(body) = opened.bytes.get(p.body.clone()) else {
            continue;
        };
        if deletes_ike(body) {
            ike = true;
        } else {
            spis.extend(deleted_esp_spis(body));
        }
    }
    (ike, spis)
}

/// A short random wait before trying a refused or postponed rekey again
/// (RFC 7296 §2.25: not at once, so that two ends do not collide again).
pub(crate) fn retry_delay(ctx: &mut Ctx<'_>) -> Duration {
    ctx.config
        .retransmit
        .initial
        .mul_f64(1.0 + ctx.rng.fraction())
}

impl Established {
    /// A message on the current IKE SA.
    pub(crate) fn on_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        message: &[u8],
        h: &Header,
    ) -> Flow {
        let Ok(opened) = self.ike.protected.open(message) else {
            ctx.out.stats.unauthenticated += 1;
            return Flow::Stay;
        };
        self.heard(now, ctx.config);
        let id = h.message_id;
        let flow = if h.is_response() {
            let Some(purpose) = self.ike.window.answered_by(id) else {
                ctx.out.stats.unexpected += 1;
                return Flow::Stay;
            };
            self.on_response(ctx, now, &opened, purpose)
        } else {
            match self.ike.window.classify(id) {
                RequestKind::New => self.on_request(ctx, now, &opened),
                RequestKind::Again => {
                    if let Some(t) = self.ike.window.cached() {
                        ctx.out.stats.responses_resent += 1;
                        ctx.out.send(t.clone());
                    }
                    return Flow::Stay;
                }
                RequestKind::Stale => {
                    ctx.out.stats.unexpected += 1;
                    return Flow::Stay;
                }
            }
        };
        if flow == Flow::Stay {
            self.drive(ctx, now);
        }
        flow
    }

    fn on_request(&mut self, ctx: &mut Ctx<'_>, now: Instant, opened: &Opened) -> Flow {
        match opened.header.exchange {
            exchange::INFORMATIONAL => self.informational(ctx, now, opened),
            exchange::CREATE_CHILD_SA => {
                self.create_child(ctx, now, opened);
                Flow::Stay
            }
            _ => {
                ctx.out.stats.unexpected += 1;
                Flow::Stay
            }
        }
    }

    /// Sends and caches our response to the peer's request `id`.
    pub(crate) fn reply(&mut self, ctx: &mut Ctx<'_>, id: u32, sealed: Result<Vec<u8>, SkError>) {
        match sealed {
            Ok(message) => {
                let transmit = self.ike.transmit(&message);
                ctx.out.send(transmit.clone());
                self.ike.window.respond(id, transmit);
            }
            Err(e) => tracing::warn!(error = %e, "a response not sealed"),
        }
    }

    /// The peer's INFORMATIONAL request: a liveness check, or deletes.
    fn informational(&mut self, ctx: &mut Ctx<'_>, now: Instant, opened: &Opened) -> Flow {
        let id = opened.header.message_id;
        let (ike, spis) = deletes(opened);
        if ike {
            let answer = self.ike.protected.informational_response(id, &[]);
            self.reply(ctx, id, answer);
            // A crossed IKE rekey the peer won: it deletes the old SA,
            // perhaps before our own rekey's answer came (§2.25.2).
            if let Some(i) = ctx.retiring.iter().position(|r| r.candidate) {
                let theirs = ctx.retiring.remove(i).sa;
                self.switch_to(ctx, now, theirs, false);
                return Flow::Stay;
            }
            tracing::debug!("the peer deleted the IKE SA");
            return Flow::Down(DownReason::PeerDeleted);
        }
        let ours = self.peer_deletes_children(ctx, now, &spis);
        let answer = self.ike.protected.informational_response(id, &ours);
        self.reply(ctx, id, answer);
        self.orphaned(ctx, now);
        Flow::Stay
    }

    /// If no child SA is left (or being made), the IKE SA waits for a new
    /// one for a while: the peer may make it (strongSwan does after a
    /// child SA's hard expiry), or we do if we keep the connection up.
    pub(crate) fn orphaned(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let making = matches!(
            self.ike.window.outstanding().map(|o| &o.purpose),
            Some(Purpose::RekeyChild { .. } | Purpose::NewChild { .. })
        );
        if making || self.children.iter().any(|c| c.live() || c.pending) {
            return;
        }
        if self.childless_until.is_none() {
            tracing::debug!("no child SA left");
            self.childless_until = Some(now + ctx.config.retire_wait());
            self.wants.new_child = ctx.keep_up;
        }
    }

    /// The peer deletes its inbound SPIs `spis` (our outbound ones):
    /// those child SAs are removed; returns our inbound SPIs of them to
    /// name in the answer, leaving out those we are deleting ourselves
    /// (RFC 7296 §1.4.1).
    pub(crate) fn peer_deletes_children(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        spis: &[u32],
    ) -> Vec<u32> {
        let deleting: Vec<u32> = match self.ike.window.outstanding().map(|o| &o.purpose) {
            Some(Purpose::DeleteChildren(ours)) => ours.clone(),
            _ => Vec::new(),
        };
        let mut ours = Vec::new();
        for &spi in spis {
            let Some(at) = self.children.iter().position(|c| c.outbound_spi == spi) else {
                continue;
            };
            let inbound = self.children[at].inbound_spi;
            self.wants.delete_children.retain(|&s| s != inbound);
            if !deleting.contains(&inbound) {
                ours.push(inbound);
            }
            self.remove_child(ctx, at);
            // The old SA of crossed rekeys: the peer's rekey won.
            if let Some(crossed) = self.crossed.as_mut().filter(|c| c.old_inbound == inbound)
                && !crossed.peer_won
            {
                crossed.peer_won = true;
                let new = crossed.new_inbound;
                tracing::debug!("crossed child SA rekey: the peer deleted the old SA");
                self.promote(ctx, now, new);
            }
        }
        self.ensure_sending(ctx);
        ours
    }

    /// Our Delete of `ours` was answered: those child SAs go, and those the
    /// answer names (by the peer's inbound SPIs) too.
    pub(crate) fn deleted_children(&mut self, ctx: &mut Ctx<'_>, ours: &[u32], opened: &Opened) {
        let (_, theirs) = deletes(opened);
        while let Some(at) = self
            .children
            .iter()
            .position(|c| ours.contains(&c.inbound_spi) || theirs.contains(&c.outbound_spi))
        {
            self.remove_child(ctx, at);
        }
        self.ensure_sending(ctx);
    }

    fn remove_child(&mut self, ctx: &mut Ctx<'_>, at: usize) {
        let c = self.children.remove(at);
        tracing::debug!(
            inbound = format_args!("{:#010x}", c.inbound_spi),
            "child SA removed"
        );
        ctx.out.event(Event::ChildSaRemoved {
            inbound_spi: c.inbound_spi,
            outbound_spi: c.outbound_spi,
        });
    }

    /// If no child SA is sent on, the newest live one is.
    pub(crate) fn ensure_sending(&mut self, ctx: &mut Ctx<'_>) {
        if self.children.iter().any(|c| c.sending) {
            return;
        }
        if let Some(c) = self.children.iter_mut().rev().find(|c| c.live()) {
            c.sending = true;
            ctx.out.event(Event::ChildSaSending {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
    }

    /// Adds the child SA `child` (made by an exchange we initiated:
    /// `ours_first`), sent on at once or not, decided or `pending`.
    pub(crate) fn install(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        child: ChildSa,
        ours_first: bool,
        sending: bool,
        pending: bool,
    ) {
        let keys = child_keys(child, ours_first, &self.ike);
        let mut c = Child::new(
            keys.inbound_spi,
            keys.outbound_spi,
            now,
            ctx.config,
            ctx.rng,
        );
        if pending {
            c.pending = true;
            c.rekey_at = None;
            c.expire_at = None;
        }
        tracing::debug!(
            inbound = format_args!("{:#010x}", c.inbound_spi),
            sending,
            pending,
            "child SA installed"
        );
        ctx.out.event(Event::ChildSaInstalled(keys));
        if !pending {
            self.childless_until = None;
            self.new_child_at = None;
        }
        if sending {
            for other in &mut self.children {
                other.sending = false;
            }
            c.sending = true;
            ctx.out.event(Event::ChildSaSending {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
        self.children.push(c);
    }

    /// A fresh inbound SPI, none of our child SAs' own.
    pub(crate) fn fresh_spi(&self, ctx: &mut Ctx<'_>) -> u32 {
        loop {
            let spi = ctx.rng.esp_spi();
            if !self.children.iter().any(|c| c.inbound_spi == spi) {
                return spi;
            }
        }
    }

    /// The answer to our request for `purpose`.
    fn on_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        opened: &Opened,
        purpose: Purpose,
    ) -> Flow {
        match purpose {
            Purpose::Liveness | Purpose::DeleteIke => Flow::Stay,
            Purpose::DeleteChildren(ours) => {
                self.deleted_children(ctx, &ours, opened);
                self.orphaned(ctx, now);
                Flow::Stay
            }
            Purpose::NewChild { request } => self.new_child_answered(ctx, now, opened, request),
            Purpose::RekeyChild {
                request,
                old_inbound,
            } => self.child_rekey_answered(ctx, now, opened, request, old_inbound),
            Purpose::RekeyIke { request, pair } => {
                self.ike_rekey_answered(ctx, now, opened, request, pair);
                Flow::Stay
            }
        }
    }

    /// A timer of the SA or its child SAs expired at `now`.
    pub(crate) fn on_timer(&mut self, ctx: &mut Ctx<'_>, now: Instant, timer: Timer) -> Flow {
        match timer {
            Timer::Request => match self.ike.window.on_deadline(now, &ctx.config.retransmit) {
                Deadline::Waiting => {}
                Deadline::Resend(t) => {
                    ctx.out.stats.retransmissions += 1;
                    ctx.out.send(t);
                }
                Deadline::GaveUp(_) => {
                    ctx.out.stats.peer_dead += 1;
                    tracing::info!("the peer does not answer: declared dead");
                    return Flow::Down(DownReason::PeerDead);
                }
            },
            Timer::Liveness => {
                self.liveness_at = now + ctx.config.dpd_interval;
                self.wants.liveness = true;
            }
            Timer::RekeyIke => {
                self.ike.rekey_at = None;
                self.wants.rekey_ike = true;
            }
            Timer::RekeyChild => {
                if self.new_child_at.is_some_and(|at| at <= now) {
                    self.new_child_at = None;
                    self.wants.new_child = true;
                }
                for c in &mut self.children {
                    if c.rekey_at.is_some_and(|at| at <= now) {
                        c.rekey_at = None;
                        self.wants.rekey_child = true;
                    }
                }
            }
            Timer::ExpireChild if self.childless_until.is_some_and(|at| at <= now) => {
                tracing::info!("no new child SA came: the IKE SA goes");
                return Flow::Down(DownReason::PeerDeleted);
            }
            Timer::ExpireIke | Timer::ExpireChild => {
                tracing::info!(?timer, "a lifetime ran out before its rekey");
                return Flow::Down(DownReason::Expired);
            }
            Timer::ChildCleanup => {
                while let Some(at) = self
                    .children
                    .iter()
                    .position(|c| c.retire_at.is_some_and(|t| t <= now))
                {
                    self.remove_child(ctx, at);
                }
                self.ensure_sending(ctx);
                self.orphaned(ctx, now);
            }
            _ => {}
        }
        self.drive(ctx, now);
        Flow::Stay
    }

    /// Sends the next request that waits, if the window is free: deletes,
    /// then the IKE SA's rekey, the child SA's rekey, a liveness check.
    pub(crate) fn drive(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        while self.ike.window.is_free() {
            let id = self.ike.window.next_id();
            let mut tries = ctx.config.retransmit.tries;
            let next = if !self.wants.delete_children.is_empty() {
                let spis = std::mem::take(&mut self.wants.delete_children);
                self.ike
                    .protected
                    .delete_children(id, &spis)
                    .ok()
                    .map(|m| (m, Purpose::DeleteChildren(spis)))
            } else if self.wants.rekey_ike {
                self.wants.rekey_ike = false;
                let started = self.start_ike_rekey(ctx, id);
                if started.is_none() {
                    let wait = retry_delay(ctx);
                    self.ike.rekey_at = Some(retry_before(now, wait, self.ike.expire_at));
                    continue;
                }
                started
            } else if self.wants.rekey_child {
                self.wants.rekey_child = false;
                let started = self.start_child_rekey(ctx, id);
                if started.is_none() {
                    let wait = retry_delay(ctx);
                    if let Some(c) = self.children.iter_mut().rev().find(|c| c.live()) {
                        let expire_at = c.expire_at.unwrap_or(now + wait);
                        c.rekey_at = Some(retry_before(now, wait, expire_at));
                    }
                    continue;
                }
                started
            } else if self.wants.new_child {
                self.wants.new_child = false;
                if self.children.iter().any(|c| c.live() || c.pending) {
                    continue;
                }
                let started = self.start_new_child(ctx, id);
                if started.is_none() {
                    self.new_child_at = Some(now + retry_delay(ctx));
                    continue;
                }
                started
            } else if self.wants.liveness {
                self.wants.liveness = false;
                tries = ctx.config.dpd_retries.saturating_add(1);
                ctx.out.stats.liveness_checks += 1;
                self.ike
                    .protected
                    .liveness(id)
                    .ok()
                    .map(|m| (m, Purpose::Liveness))
            } else {
                return;
            };
            let Some((message, purpose)) = next else {
                tracing::warn!("a request not sealed");
                continue;
            };
            let transmit = self.ike.transmit(&message);
            let sent = self
                .ike
                .window
                .start(now, &ctx.config.retransmit, tries, transmit, purpose);
            ctx.out.send(sent);
        }
    }

    /// ESP opened on `inbound_spi`: the peer is alive, and sends on that
    /// child SA, so we do too if it is the live one.
    pub(crate) fn esp_received(&mut self, ctx: &mut Ctx<'_>, now: Instant, inbound_spi: u32) {
        let Some(at) = self
            .children
            .iter()
            .position(|c| c.inbound_spi == inbound_spi)
        else {
            return;
        };
        self.heard(now, ctx.config);
        if !self.children[at].sending && self.children[at].live() {
            for c in &mut self.children {
                c.sending = false;
            }
            let c = &mut self.children[at];
            c.sending = true;
            ctx.out.event(Event::ChildSaSending {
                inbound_spi: c.inbound_spi,
                outbound_spi: c.outbound_spi,
            });
        }
    }
}
