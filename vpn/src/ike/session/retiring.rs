//! IKE SAs that are no longer the current one: an old SA after a rekey
//! (deleted by us, or kept until the peer deletes it), the SA of a closed
//! or expired connection being deleted, the peer's SA of a crossed rekey
//! until the nonces decide. Their requests are retransmitted; the peer's
//! requests on them are answered (liveness, deletes; rekeys are refused
//! with TEMPORARY_FAILURE); each is forgotten once deleted, given up or
//! past its time.

use super::Ctx;
use super::established::deletes;
use super::state::{IkeSa, Purpose, Retiring};
use super::window::{Deadline, RequestKind};
use super::{Config, Outputs, Session};
use crate::ike::message::{Header, exchange};
use crate::ike::sa_init::notify;
use std::time::Instant;

impl Retiring {
    /// Sends our Delete of the SA if it waits and the window is free.
    fn try_delete(&mut self, config: &Config, out: &mut Outputs, now: Instant) {
        if !self.pending_delete || !self.sa.window.is_free() {
            return;
        }
        self.pending_delete = false;
        let id = self.sa.window.next_id();
        match self.sa.protected.delete_ike(id) {
            Ok(message) => {
                let transmit = self.sa.transmit(&message);
                let schedule = config.retransmit;
                let sent = self.sa.window.start(
                    now,
                    &schedule,
                    schedule.tries,
                    transmit,
                    Purpose::DeleteIke,
                );
                out.send(sent);
            }
            Err(e) => tracing::warn!(error = %e, "an IKE SA's Delete not sealed"),
        }
    }
}

/// Retires `sa`, deleting it at the peer (once its window is free).
pub(crate) fn retire_with_delete(ctx: &mut Ctx<'_>, sa: IkeSa, now: Instant) {
    let mut retiring = Retiring {
        sa,
        until: now + ctx.config.retire_wait(),
        candidate: false,
        pending_delete: true,
    };
    retiring.try_delete(ctx.config, ctx.out, now);
    ctx.retiring.push(retiring);
}

impl Session {
    /// A message on the retiring SA `at`.
    pub(super) fn on_retiring(&mut self, now: Instant, at: usize, message: &[u8], h: &Header) {
        let (mut est, mut ctx) = self.split();
        let r = &mut ctx.retiring[at];
        let Ok(opened) = r.sa.protected.open(message) else {
            ctx.out.stats.unauthenticated += 1;
            return;
        };
        if let Some(est) = est.as_deref_mut() {
            est.heard(now, ctx.config);
        }
        let id = h.message_id;
        if h.is_response() {
            match r.sa.window.answered_by(id) {
                None => ctx.out.stats.unexpected += 1,
                Some(Purpose::DeleteIke) => {
                    tracing::debug!("a retiring IKE SA deleted");
                    ctx.retiring.remove(at);
                    return;
                }
                Some(Purpose::DeleteChildren(ours)) => {
                    if let Some(est) = est.as_deref_mut() {
                        est.deleted_children(&mut ctx, &ours, &opened);
                    }
                }
                Some(_) => {}
            }
            ctx.retiring[at].try_delete(ctx.config, ctx.out, now);
            return;
        }
        match r.sa.window.classify(id) {
            RequestKind::Again => {
                if let Some(t) = r.sa.window.cached() {
                    ctx.out.stats.responses_resent += 1;
                    ctx.out.send(t.clone());
                }
                return;
            }
            RequestKind::Stale => {
                ctx.out.stats.unexpected += 1;
                return;
            }
            RequestKind::New => {}
        }
        let answer = match h.exchange {
            exchange::INFORMATIONAL => {
                let (ike, spis) = deletes(&opened);
                if ike {
                    let answer = r.sa.protected.informational_response(id, &[]);
                    if let Ok(m) = answer {
                        ctx.out.send(r.sa.transmit(&m));
                    }
                    tracing::debug!("the peer deleted a retiring IKE SA");
                    ctx.retiring.remove(at);
                    return;
                }
                let ours = match est.as_deref_mut() {
                    Some(est) => est.peer_deletes_children(&mut ctx, now, &spis),
                    None => Vec::new(),
                };
                ctx.retiring[at]
                    .sa
                    .protected
                    .informational_response(id, &ours)
            }
            exchange::CREATE_CHILD_SA => r.sa.protected.error_response(
                exchange::CREATE_CHILD_SA,
                id,
                notify::TEMPORARY_FAILURE,
            ),
            _ => {
                ctx.out.stats.unexpected += 1;
                return;
            }
        };
        let r = &mut ctx.retiring[at];
        if let Ok(m) = answer {
            let transmit = r.sa.transmit(&m);
            ctx.out.send(transmit.clone());
            r.sa.window.respond(id, transmit);
        }
        if let Some(est) = est {
            est.orphaned(&mut ctx, now);
        }
    }

    /// The retiring SAs' deadlines at `now`: requests sent again, SAs
    /// given up or past their time forgotten.
    pub(super) fn on_retiring_deadline(&mut self, now: Instant) {
        let schedule = self.config.retransmit;
        let out = &mut self.out;
        self.retiring.retain_mut(|r| {
            if r.until <= now {
                return false;
            }
            match r.sa.window.on_deadline(now, &schedule) {
                Deadline::Waiting => true,
                Deadline::Resend(t) => {
                    out.stats.retransmissions += 1;
                    out.send(t);
                    true
                }
                Deadline::GaveUp(_) => false,
            }
        });
    }
}
