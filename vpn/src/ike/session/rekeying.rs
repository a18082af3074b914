//! Rekeys on an established IKE SA, both ways: our CREATE_CHILD_SA for the
//! live child SA or the IKE SA and its answer, the peer's answered (a
//! child SA rekey installs the new SA before the peer deletes the old; an
//! IKE SA rekey moves the child SAs to the new SA), refusals while another
//! exchange is under way (RFC 7296 §2.25), and crossed rekeys settled by
//! the lowest of the four nonces (§2.8.1, §2.8.2).

use super::Ctx;
use super::established::{Flow, retry_delay};
use super::events::{DownReason, Event};
use super::fresh_nonce;
use super::retiring::retire_with_delete;
use super::state::{Crossed, Established, IkeSa, Purpose, Retiring, retry_before};
use super::window::Window;
use crate::ike::dh::KeyPair;
use crate::ike::message::{body_of, exchange, payload};
use crate::ike::protected::Opened;
use crate::ike::rekey::{
    IkeRekeyRequest, RekeyError, RekeyRequest, child_request, ike_rekey_request,
    read_ike_rekey_opened, read_rekey_opened, rekey_request,
};
use crate::ike::rekey_responder::{
    ChildRekeyParams, CreateChild, classify, respond_child_rekey, respond_ike_rekey,
};
use crate::ike::sa_init::notify;
use std::time::Instant;

/// Whether our exchange made the SA to give up when two crossed: the
/// lowest of the four nonces is one of ours (Ni, Nr of the exchange we
/// initiated) rather than one of the peer's exchange's.
pub(crate) fn lowest_is_ours(our_i: &[u8], our_r: &[u8], peer_i: &[u8], peer_r: &[u8]) -> bool {
    our_i.min(our_r) < peer_i.min(peer_r)
}

impl Established {
    /// The peer's CREATE_CHILD_SA request.
    pub(crate) fn create_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, opened: &Opened) {
        let id = opened.header.message_id;
        match classify(opened) {
            Ok(CreateChild::RekeyChild { old_spi }) => {
                self.peer_rekeys_child(ctx, now, opened, old_spi)
            }
            Ok(CreateChild::RekeyIke) => self.peer_rekeys_ike(ctx, now, opened),
            Ok(CreateChild::NewChild) => self.peer_makes_child(ctx, now, opened),
            Err(RekeyError::Unacceptable(kind)) => self.refuse(ctx, id, kind),
            Err(_) => self.refuse(ctx, id, notify::INVALID_SYNTAX),
        }
    }

    fn refuse(&mut self, ctx: &mut Ctx<'_>, id: u32, kind: u16) {
        tracing::debug!(kind, "a CREATE_CHILD_SA refused");
        let answer = self
            .ike
            .protected
            .error_response(exchange::CREATE_CHILD_SA, id, kind);
        self.reply(ctx, id, answer);
    }

    /// The peer rekeys the child SA it receives under `old_spi`: the new
    /// one is installed, not sent on until the peer deletes the old one or
    /// sends on the new (make before break); if our rekey of it is under
    /// way too, the new one waits for the nonces to decide.
    fn peer_rekeys_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        opened: &Opened,
        old_spi: u32,
    ) {
        let id = opened.header.message_id;
        let Some(at) = self.children.iter().position(|c| c.outbound_spi == old_spi) else {
            return self.refuse(ctx, id, notify::CHILD_SA_NOT_FOUND);
        };
        let old = &self.children[at];
        let old_inbound = old.inbound_spi;
        let outstanding = self.ike.window.outstanding().map(|o| &o.purpose);
        let ours_under_way = matches!(outstanding,
            Some(Purpose::RekeyChild { old_inbound: o, .. }) if *o == old_inbound);
        let closing = !old.live()
            || self.crossed.is_some()
            || self.wants.delete_children.contains(&old_inbound)
            || matches!(outstanding, Some(Purpose::DeleteChildren(s)) if s.contains(&old_inbound));
        let ike_rekeying = matches!(outstanding, Some(Purpose::RekeyIke { .. }))
            || ctx.retiring.iter().any(|r| r.candidate);
        if closing || ike_rekeying {
            return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
        }
        let spi = self.fresh_spi(ctx);
        let Some(nonce) = fresh_nonce() else {
            return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
        };
        let params = ChildRekeyParams {
            ciphers: &ctx.config.ciphers,
            local: ctx.config.local_ts,
            remote: ctx.config.remote_ts,
            spi,
        };
        let sk_d = &self.ike.agreed.keys.sk_d;
        let answer =
            match respond_child_rekey(&mut self.ike.protected, sk_d, opened, &nonce, &params) {
                Ok(answer) => answer,
                Err(RekeyError::Unacceptable(kind)) => return self.refuse(ctx, id, kind),
                Err(e) => {
                    tracing::debug!(error = %e, "a child SA rekey not answered");
                    return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
                }
            };
        self.reply(ctx, id, Ok(answer.bytes));
        if ours_under_way {
            ctx.out.stats.rekey_collisions += 1;
            tracing::debug!("child SA rekeys crossed");
            self.install(ctx, now, answer.child, false, false, true);
            self.crossed = Some(Crossed {
                old_inbound,
                nonce_i: answer.nonce_i,
                nonce_r: nonce,
                new_inbound: spi,
                peer_won: false,
            });
        } else {
            ctx.out.stats.child_rekeys += 1;
            tracing::info!(
                old = format_args!("{old_inbound:#010x}"),
                new = format_args!("{spi:#010x}"),
                "child SA rekeyed by the peer"
            );
            self.install(ctx, now, answer.child, false, false, false);
            self.children[at].retire(now, ctx.config.retire_wait());
            self.wants.rekey_child = false;
        }
    }

    /// The peer rekeys the IKE SA: the new SA becomes current (the old one
    /// retires until the peer deletes it), or, if our IKE rekey is under
    /// way too, waits for the nonces to decide.
    fn peer_rekeys_ike(&mut self, ctx: &mut Ctx<'_>, now: Instant, opened: &Opened) {
        let id = opened.header.message_id;
        let outstanding = self.ike.window.outstanding().map(|o| &o.purpose);
        let ours_under_way = matches!(outstanding, Some(Purpose::RekeyIke { .. }));
        let busy = matches!(outstanding, Some(Purpose::RekeyChild { .. }))
            || ctx.retiring.iter().any(|r| r.candidate)
            || self.children.iter().any(|c| c.pending);
        if busy {
            return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
        }
        let new_spi = ctx.rng.ike_spi();
        let Some(nonce) = fresh_nonce() else {
            return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
        };
        let answer = match respond_ike_rekey(
            &mut self.ike.protected,
            &self.ike.agreed,
            opened,
            new_spi,
            &nonce,
            &ctx.config.ciphers,
        ) {
            Ok(answer) => answer,
            Err(RekeyError::Unacceptable(kind)) => return self.refuse(ctx, id, kind),
            Err(e) => {
                tracing::debug!(error = %e, "an IKE SA rekey not answered");
                return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
            }
        };
        self.reply(ctx, id, Ok(answer.bytes));
        let Some(theirs) = IkeSa::new(
            answer.agreed,
            false,
            Window::new(0, 0),
            self.ike.peer,
            self.ike.local_port,
            now,
            ctx.config,
            ctx.rng,
        ) else {
            return;
        };
        if ours_under_way {
            ctx.out.stats.rekey_collisions += 1;
            tracing::debug!("IKE SA rekeys crossed");
            ctx.retiring.push(Retiring {
                sa: theirs,
                until: now + ctx.config.retire_wait(),
                candidate: true,
                pending_delete: false,
            });
        } else {
            self.switch_to(ctx, now, theirs, false);
        }
    }

    /// Makes `new` the current IKE SA; the old one retires, deleted by us
    /// (`delete_old`: we made the rekey that won) or awaiting the peer's
    /// Delete.
    pub(crate) fn switch_to(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        new: IkeSa,
        delete_old: bool,
    ) {
        let old = std::mem::replace(&mut self.ike, new);
        let (spi_i, spi_r) = self.ike.spis();
        ctx.out.stats.ike_rekeys += 1;
        tracing::info!(
            spi_i = format_args!("{spi_i:016x}"),
            spi_r = format_args!("{spi_r:016x}"),
            "IKE SA rekeyed"
        );
        ctx.out.event(Event::IkeRekeyed { spi_i, spi_r });
        self.wants.rekey_ike = false;
        if delete_old {
            retire_with_delete(ctx, old, now);
        } else {
            ctx.retiring.push(Retiring {
                sa: old,
                until: now + ctx.config.retire_wait(),
                candidate: false,
                pending_delete: false,
            });
        }
    }

    /// Our rekey of the live child SA, as request `id`; `None` when it
    /// must wait (a crossed rekey undecided, no randomness).
    pub(crate) fn start_child_rekey(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: u32,
    ) -> Option<(Vec<u8>, Purpose)> {
        if self.children.iter().any(|c| c.pending) {
            return None;
        }
        let old = self.children.iter().rev().find(|c| c.live())?.inbound_spi;
        let new_spi = self.fresh_spi(ctx);
        let nonce = fresh_nonce()?;
        let request: RekeyRequest = rekey_request(
            &mut self.ike.protected,
            id,
            old,
            new_spi,
            &ctx.config.ciphers,
            &nonce,
            ctx.config.local_ts,
            ctx.config.remote_ts,
        )
        .ok()?;
        tracing::debug!(old = format_args!("{old:#010x}"), "child SA rekey sent");
        Some((
            request.bytes.clone(),
            Purpose::RekeyChild {
                request,
                old_inbound: old,
            },
        ))
    }

    /// Our rekey of the IKE SA, as request `id`; `None` when it must wait.
    pub(crate) fn start_ike_rekey(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: u32,
    ) -> Option<(Vec<u8>, Purpose)> {
        if ctx.retiring.iter().any(|r| r.candidate) || self.children.iter().any(|c| c.pending) {
            return None;
        }
        let new_spi = ctx.rng.ike_spi();
        let pair = KeyPair::generate().ok()?;
        let nonce = fresh_nonce()?;
        let request: IkeRekeyRequest = ike_rekey_request(
            &mut self.ike.protected,
            id,
            new_spi,
            &ctx.config.ciphers,
            &nonce,
            &pair,
        )
        .ok()?;
        tracing::debug!("IKE SA rekey sent");
        Some((request.bytes.clone(), Purpose::RekeyIke { request, pair }))
    }

    /// Makes the pending child SA `inbound` (the peer's, of a crossed
    /// rekey) live, its lifetime counted from `now`; sent on if nothing
    /// else is.
    pub(crate) fn promote(&mut self, ctx: &mut Ctx<'_>, now: Instant, inbound: u32) {
        let lifetime = ctx.config.child_lifetime;
        let rekey_at = super::state::rekey_time(now, lifetime, ctx.config, ctx.rng);
        if let Some(c) = self.child(inbound).filter(|c| c.pending) {
            c.pending = false;
            c.rekey_at = Some(rekey_at);
            c.expire_at = Some(now + lifetime);
            ctx.out.stats.child_rekeys += 1;
        }
        self.ensure_sending(ctx);
    }

    /// The answer to our rekey of the child SA `old_inbound`.
    pub(crate) fn child_rekey_answered(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        opened: &Opened,
        request: RekeyRequest,
        old_inbound: u32,
    ) -> Flow {
        let wait = ctx.config.retire_wait();
        let collision = self.crossed.take_if(|c| c.old_inbound == old_inbound);
        let sk_d = &self.ike.agreed.keys.sk_d;
        let result = read_rekey_opened(opened, sk_d, &request, &ctx.config.ciphers);
        let nonce_r = body_of(&opened.bytes, &opened.payloads, payload::NONCE).map(<[u8]>::to_vec);
        match (result, nonce_r) {
            (Ok(child), Some(nonce_r)) => {
                let lost = collision.as_ref().is_some_and(|p| {
                    p.peer_won || lowest_is_ours(&request.nonce, &nonce_r, &p.nonce_i, &p.nonce_r)
                });
                if let Some(peer) = &collision {
                    if lost {
                        tracing::debug!("crossed child SA rekey: the peer's new SA stays");
                        self.promote(ctx, now, peer.new_inbound);
                    } else if let Some(theirs) = self.child(peer.new_inbound) {
                        // The peer deletes its redundant SA.
                        theirs.pending = false;
                        theirs.retire(now, wait);
                    }
                }
                if lost {
                    // Ours is the redundant one: never sent on, deleted.
                    self.wants.delete_children.push(child.our_spi);
                    if let Some(old) = self.child(old_inbound) {
                        old.retire(now, wait);
                    }
                } else {
                    ctx.out.stats.child_rekeys += 1;
                    tracing::info!(
                        old = format_args!("{old_inbound:#010x}"),
                        new = format_args!("{:#010x}", child.our_spi),
                        "child SA rekeyed"
                    );
                    self.install(ctx, now, child, true, true, false);
                    if let Some(old) = self.child(old_inbound) {
                        old.retire(now, wait);
                        self.wants.delete_children.push(old_inbound);
                    }
                }
                Flow::Stay
            }
            (result, _) => {
                let error = result.err();
                tracing::debug!(?error, "our child SA rekey refused");
                if let Some(peer) = collision {
                    // The peer's rekey of it stands alone.
                    self.promote(ctx, now, peer.new_inbound);
                    if let Some(old) = self.child(old_inbound) {
                        old.retire(now, wait);
                    }
                    return Flow::Stay;
                }
                if matches!(error, Some(RekeyError::Refused(notify::CHILD_SA_NOT_FOUND))) {
                    // The peer has no such child SA: ours is of no use.
                    if let Some(at) = self
                        .children
                        .iter()
                        .position(|c| c.inbound_spi == old_inbound && c.live())
                    {
                        let c = self.children.remove(at);
                        ctx.out.event(Event::ChildSaRemoved {
                            inbound_spi: c.inbound_spi,
                            outbound_spi: c.outbound_spi,
                        });
                        self.ensure_sending(ctx);
                    }
                    self.orphaned(ctx, now);
                    return Flow::Stay;
                }
                let wait = retry_delay(ctx);
                if let Some(old) = self.child(old_inbound).filter(|c| c.live()) {
                    let expire_at = old.expire_at.unwrap_or(now + wait);
                    old.rekey_at = Some(retry_before(now, wait, expire_at));
                }
                Flow::Stay
            }
        }
    }

    /// The answer to our rekey of the IKE SA.
    pub(crate) fn ike_rekey_answered(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        opened: &Opened,
        request: IkeRekeyRequest,
        pair: KeyPair,
    ) {
        let candidate = ctx.retiring.iter().position(|r| r.candidate);
        let result = read_ike_rekey_opened(
            opened,
            &self.ike.agreed,
            &request,
            &pair,
            &ctx.config.ciphers,
        );
        let ours = match result {
            Ok(agreed) => IkeSa::new(
                agreed,
                true,
                Window::new(0, 0),
                self.ike.peer,
                self.ike.local_port,
                now,
                ctx.config,
                ctx.rng,
            ),
            Err(e) => {
                tracing::debug!(error = %e, "our IKE SA rekey refused");
                None
            }
        };
        match (ours, candidate) {
            (Some(ours), Some(i)) => {
                let theirs = &ctx.retiring[i].sa.agreed;
                if lowest_is_ours(
                    &request.nonce,
                    &ours.agreed.nonce_r,
                    &theirs.nonce_i,
                    &theirs.nonce_r,
                ) {
                    tracing::debug!("crossed IKE SA rekey: the peer's new SA stays");
                    let theirs = ctx.retiring.remove(i).sa;
                    self.switch_to(ctx, now, theirs, false);
                    retire_with_delete(ctx, ours, now);
                } else {
                    // The peer deletes its redundant SA.
                    ctx.retiring[i].candidate = false;
                    ctx.retiring[i].until = now + ctx.config.retire_wait();
                    self.switch_to(ctx, now, ours, true);
                }
            }
            (Some(ours), None) => self.switch_to(ctx, now, ours, true),
            (None, Some(i)) => {
                let theirs = ctx.retiring.remove(i).sa;
                self.switch_to(ctx, now, theirs, false);
            }
            (None, None) => {
                let wait = retry_delay(ctx);
                self.ike.rekey_at = Some(retry_before(now, wait, self.ike.expire_at));
            }
        }
    }
}

impl Established {
    /// The peer asks for a child SA of its own: taken when we have none
    /// (it replaces the one that is gone), refused otherwise.
    fn peer_makes_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, opened: &Opened) {
        let id = opened.header.message_id;
        if self.children.iter().any(|c| c.live() || c.pending) {
            return self.refuse(ctx, id, notify::NO_ADDITIONAL_SAS);
        }
        if !self.ike.window.is_free() {
            // Perhaps our own new child SA: one of the two tries again.
            return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
        }
        let spi = self.fresh_spi(ctx);
        let Some(nonce) = fresh_nonce() else {
            return self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
        };
        let params = ChildRekeyParams {
            ciphers: &ctx.config.ciphers,
            local: ctx.config.local_ts,
            remote: ctx.config.remote_ts,
            spi,
        };
        let sk_d = &self.ike.agreed.keys.sk_d;
        match respond_child_rekey(&mut self.ike.protected, sk_d, opened, &nonce, &params) {
            Ok(answer) => {
                self.reply(ctx, id, Ok(answer.bytes));
                tracing::info!(
                    new = format_args!("{spi:#010x}"),
                    "child SA made by the peer"
                );
                // No older SA to keep sending on.
                self.install(ctx, now, answer.child, false, true, false);
            }
            Err(RekeyError::Unacceptable(kind)) => self.refuse(ctx, id, kind),
            Err(e) => {
                tracing::debug!(error = %e, "a new child SA not answered");
                self.refuse(ctx, id, notify::TEMPORARY_FAILURE);
            }
        }
    }

    /// Our request for a new child SA, as request `id`.
    pub(crate) fn start_new_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: u32,
    ) -> Option<(Vec<u8>, Purpose)> {
        let new_spi = self.fresh_spi(ctx);
        let nonce = fresh_nonce()?;
        let request = child_request(
            &mut self.ike.protected,
            id,
            None,
            new_spi,
            &ctx.config.ciphers,
            &nonce,
            ctx.config.local_ts,
            ctx.config.remote_ts,
        )
        .ok()?;
        tracing::debug!("new child SA asked for");
        Some((request.bytes.clone(), Purpose::NewChild { request }))
    }

    /// The answer to our request for a new child SA.
    pub(crate) fn new_child_answered(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        opened: &Opened,
        request: RekeyRequest,
    ) -> Flow {
        let sk_d = &self.ike.agreed.keys.sk_d;
        match read_rekey_opened(opened, sk_d, &request, &ctx.config.ciphers) {
            Ok(child) => {
                if self.children.iter().any(|c| c.live()) {
                    // The peer made one meanwhile: ours goes.
                    self.wants.delete_children.push(child.our_spi);
                } else {
                    tracing::info!("child SA made again");
                    self.install(ctx, now, child, true, true, false);
                }
                Flow::Stay
            }
            Err(RekeyError::Refused(notify::NO_PROPOSAL_CHOSEN)) => {
                Flow::Down(DownReason::NoProposalChosen)
            }
            Err(RekeyError::Refused(kind))
                if kind != notify::TEMPORARY_FAILURE && kind != notify::NO_ADDITIONAL_SAS =>
            {
                Flow::Down(DownReason::Refused(kind))
            }
            Err(e) => {
                tracing::debug!(error = %e, "our new child SA refused for now");
                if !self.children.iter().any(|c| c.live() || c.pending) {
                    let until = self.childless_until.unwrap_or(now);
                    self.new_child_at = Some(retry_before(now, retry_delay(ctx), until));
                }
                Flow::Stay
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_of_four_nonces_decides_and_both_ends_agree() {
        let (a_i, b_r, b_i, a_r) = ([1u8; 4], [9u8; 4], [5u8; 4], [7u8; 4]);
        // A's exchange (a_i, b_r) holds the lowest: A gives up its SA...
        assert!(lowest_is_ours(&a_i, &b_r, &b_i, &a_r));
        // ...and B, seeing the same four from its side, keeps its own.
        assert!(!lowest_is_ours(&b_i, &a_r, &a_i, &b_r));
    }
}
