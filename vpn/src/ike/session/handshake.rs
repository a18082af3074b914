//! IKE_SA_INIT and IKE_AUTH in both roles: our request, retransmitted,
//! sent again with a cookie when asked, and the answers read; the peer's
//! request answered (with a cookie demand under load), its IKE_AUTH
//! checked, and a repeated request answered from what was sent. Either
//! way ends in an established IKE SA with its first child SA, or in an
//! attempt that failed with a reason.

use super::events::{DownReason, Event, IKE_PORT, NAT_T_PORT, Transmit};
use super::state::{
    AuthPhase, Child, Established, IkeSa, Initiating, Responding, State, child_keys,
};
use super::window::{Deadline, Window};
use super::{COOKIE_ROTATION, Config, Session, fresh_nonce};
use crate::ike::auth::{
    AuthError, AuthParams, ChildSa, auth_request, read_auth_response, respond_auth,
};
use crate::ike::cookie::{CookieJar, Verdict};
use crate::ike::dh::{GROUP_CURVE25519, KeyPair};
use crate::ike::message::{Header, exchange};
use crate::ike::protected::Protected;
use crate::ike::sa_init::{Agreed, InitError, notify, read_response, refusal, request, respond};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Cookies an initiator sends back before it gives up on a responder
/// that keeps asking.
const COOKIE_ROUNDS: u32 = 3;

/// Our IKE_AUTH settings with our child SA's inbound `spi`.
fn auth_params(config: &Config, spi: u32) -> AuthParams<'_> {
    AuthParams {
        id: config.id,
        peer_id: config.peer_id,
        psk: &config.psk,
        local: config.local_ts,
        remote: config.remote_ts,
        ciphers: &config.ciphers,
        spi,
    }
}

/// What reading the peer's answer to our handshake leads to.
enum Step {
    /// Nothing (dropped, or sent on).
    Wait,
    /// The attempt failed; send the Delete, if any, of the peer's side.
    Failed(DownReason, Option<Transmit>),
    /// IKE_AUTH done.
    Done(Box<AuthPhase>, ChildSa),
}

impl Session {
    /// Idle → Initiating: a fresh SPI, nonce and key pair, IKE_SA_INIT
    /// sent to the peer's port 500.
    pub(super) fn start_handshake(&mut self, now: Instant) {
        let spi_i = self.rng.ike_spi();
        let (Ok(pair), Some(nonce)) = (KeyPair::generate(), fresh_nonce()) else {
            tracing::warn!("no randomness for a handshake; trying again later");
            self.state = State::Idle {
                start_at: Some(now + self.config.reconnect_initial),
            };
            return;
        };
        let local = SocketAddrV4::new(self.config.local, IKE_PORT);
        let remote = SocketAddrV4::new(self.config.remote, IKE_PORT);
        let sent = request(
            spi_i,
            &pair,
            &nonce,
            &self.config.ciphers,
            None,
            local,
            remote,
        );
        let mut window = Window::new(0, 0);
        let schedule = self.config.retransmit;
        let transmit = window.start(
            now,
            &schedule,
            schedule.tries,
            Transmit::ike(remote, IKE_PORT, &sent.bytes),
            (),
        );
        self.out.send(transmit);
        self.out.stats.attempts += 1;
        tracing::debug!(spi_i, "IKE_SA_INIT sent");
        self.state = State::Initiating(Box::new(Initiating {
            spi_i,
            pair,
            nonce,
            request: sent,
            cookie_rounds: 0,
            window,
            auth: None,
        }));
    }

    /// Our handshake request's deadline: sent again, or given up (→ Idle,
    /// the next attempt after the back-off).
    pub(super) fn on_handshake_deadline(&mut self, now: Instant) {
        let State::Initiating(init) = &mut self.state else {
            return;
        };
        match init.window.on_deadline(now, &self.config.retransmit) {
            Deadline::Waiting => {}
            Deadline::Resend(t) => {
                self.out.stats.retransmissions += 1;
                self.out.send(t);
            }
            Deadline::GaveUp(()) => {
                tracing::debug!("no answer to our handshake");
                self.failures += 1;
                self.state = State::Idle {
                    start_at: self.next_start(now),
                };
            }
        }
    }

    /// Initiating → Idle after a refusal, with the event saying why.
    fn attempt_failed(&mut self, now: Instant, reason: DownReason, delete: Option<Transmit>) {
        if let Some(delete) = delete {
            self.out.send(delete);
        }
        tracing::info!(?reason, "IKE SA not established");
        self.out.event(Event::IkeDown { reason });
        self.failures += 1;
        self.state = State::Idle {
            start_at: self.next_start(now),
        };
    }

    /// The responder's IKE_SA_INIT answer: IKE_AUTH sent (on port 4500
    /// behind the marker if a NAT was seen), or the request again with a
    /// cookie, or the attempt refused.
    pub(super) fn on_init_response(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        local_port: u16,
        message: &[u8],
        h: &Header,
    ) {
        let Session {
            state,
            config,
            rng,
            out,
            ..
        } = self;
        let State::Initiating(init) = state else {
            out.stats.unexpected += 1;
            return;
        };
        if init.auth.is_some() || h.spi_i != init.spi_i || !init.window.awaits(0) {
            out.stats.unexpected += 1;
            return;
        }
        let local = SocketAddrV4::new(config.local, local_port);
        let failed = match read_response(
            &init.request,
            message,
            &init.pair,
            &config.ciphers,
            from,
            local,
        ) {
            Ok(agreed) => {
                init.window.answered_by(0);
                let params = auth_params(config, rng.esp_spi());
                let Ok(sent) = auth_request(&agreed, &init.request.bytes, &params) else {
                    return self.attempt_failed(now, DownReason::Refused(0), None);
                };
                // A NAT in between: IKE (and ESP) move to port 4500.
                let (peer, port) = if agreed.nat {
                    (SocketAddrV4::new(*from.ip(), NAT_T_PORT), NAT_T_PORT)
                } else {
                    (from, local_port)
                };
                let schedule = config.retransmit;
                let transmit = init.window.start(
                    now,
                    &schedule,
                    schedule.tries,
                    Transmit::ike(peer, port, &sent.bytes),
                    (),
                );
                out.send(transmit);
                tracing::debug!(nat = agreed.nat, "IKE_AUTH sent");
                init.auth = Some(Box::new(AuthPhase {
                    agreed,
                    init_response: message.to_vec(),
                    request: sent,
                    peer,
                    local_port: port,
                }));
                return;
            }
            Err(InitError::Cookie(cookie)) if init.cookie_rounds < COOKIE_ROUNDS => {
                init.cookie_rounds += 1;
                let remote = SocketAddrV4::new(config.remote, IKE_PORT);
                init.request = request(
                    init.spi_i,
                    &init.pair,
                    &init.nonce,
                    &config.ciphers,
                    Some(&cookie),
                    SocketAddrV4::new(config.local, IKE_PORT),
                    remote,
                );
                let again = Transmit::ike(remote, IKE_PORT, &init.request.bytes);
                if let Some(t) = init.window.restart(now, &config.retransmit, again) {
                    out.send(t);
                }
                tracing::debug!("IKE_SA_INIT sent again with the responder's cookie");
                return;
            }
            Err(InitError::Cookie(_)) => DownReason::Refused(notify::COOKIE),
            Err(
                InitError::NoProposal
                | InitError::Refused(notify::NO_PROPOSAL_CHOSEN | notify::INVALID_KE_PAYLOAD),
            ) => DownReason::NoProposalChosen,
            Err(InitError::Refused(kind)) => DownReason::Refused(kind),
            Err(e) => {
                // Unauthenticated and malformed: perhaps not the peer's.
                out.stats.malformed += 1;
                tracing::trace!(error = %e, "IKE_SA_INIT answer dropped");
                return;
            }
        };
        self.attempt_failed(now, failed, None);
    }

    /// The responder's IKE_AUTH answer: Initiating → Established, or the
    /// attempt refused.
    pub(super) fn on_auth_response(&mut self, now: Instant, message: &[u8], h: &Header) {
        let step = {
            let Session {
                state, config, out, ..
            } = &mut *self;
            let State::Initiating(init) = state else {
                return;
            };
            match &init.auth {
                Some(auth) if h.is_response() && init.window.awaits(h.message_id) => {
                    let params = auth_params(config, auth.request.our_spi);
                    match read_auth_response(
                        &auth.agreed,
                        &auth.init_response,
                        &auth.request,
                        message,
                        &params,
                    ) {
                        Ok(child) => match init.auth.take() {
                            Some(auth) => Step::Done(auth, child),
                            None => Step::Wait,
                        },
                        Err(AuthError::Refused(notify::AUTHENTICATION_FAILED)) => {
                            Step::Failed(DownReason::AuthFailed, None)
                        }
                        Err(AuthError::Refused(notify::NO_PROPOSAL_CHOSEN)) => {
                            Step::Failed(DownReason::NoProposalChosen, delete_at_peer(auth))
                        }
                        Err(AuthError::Refused(kind)) => {
                            Step::Failed(DownReason::Refused(kind), delete_at_peer(auth))
                        }
                        Err(AuthError::Authentication) => {
                            Step::Failed(DownReason::AuthFailed, delete_at_peer(auth))
                        }
                        Err(AuthError::NoProposal) => {
                            Step::Failed(DownReason::NoProposalChosen, delete_at_peer(auth))
                        }
                        Err(AuthError::Sealed(_)) => {
                            out.stats.unauthenticated += 1;
                            Step::Wait
                        }
                        Err(e) => {
                            out.stats.malformed += 1;
                            tracing::trace!(error = %e, "IKE_AUTH answer dropped");
                            Step::Wait
                        }
                    }
                }
                _ => {
                    out.stats.unexpected += 1;
                    Step::Wait
                }
            }
        };
        match step {
            Step::Wait => {}
            Step::Failed(reason, delete) => self.attempt_failed(now, reason, delete),
            Step::Done(auth, child) => {
                let AuthPhase {
                    agreed,
                    peer,
                    local_port,
                    ..
                } = *auth;
                self.establish(
                    now,
                    agreed,
                    child,
                    true,
                    peer,
                    local_port,
                    Window::new(2, 0),
                );
            }
        }
    }

    /// Whether a responder should demand a cookie of a request at `now`.
    fn under_load(&mut self, now: Instant) -> bool {
        let Some(threshold) = self.config.cookie_threshold else {
            return false;
        };
        if now.saturating_duration_since(self.load.0) >= Duration::from_secs(1) {
            self.load = (now, 0);
        }
        self.load.1 = self.load.1.saturating_add(1);
        self.load.1 > threshold
    }

    /// A peer's IKE_SA_INIT request: answered (again, if it is the one
    /// answered last), with a cookie demand under load, or refused.
    pub(super) fn on_init_request(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        local_port: u16,
        message: &[u8],
        h: &Header,
    ) {
        if matches!(self.state, State::Closed) {
            self.out.stats.unexpected += 1;
            return;
        }
        let repeated = self
            .responding
            .as_ref()
            .filter(|r| r.request == message)
            .map(|r| r.response.clone())
            .or_else(|| {
                self.last_init
                    .as_ref()
                    .filter(|(request, _)| request == message)
                    .map(|(_, response)| response.clone())
            });
        if let Some(response) = repeated {
            self.out.stats.responses_resent += 1;
            self.out.send(Transmit::ike(from, local_port, &response));
            return;
        }
        if h.spi_r != 0 || h.message_id != 0 {
            self.out.stats.unexpected += 1;
            return;
        }
        if self.under_load(now) {
            if self.cookies.is_none() {
                self.cookies = CookieJar::new();
                self.cookie_rotate_at = Some(now + COOKIE_ROTATION);
            }
            if let Some(jar) = &self.cookies
                && let Verdict::Demand(cookie) = jar.check(message, from)
            {
                self.out.stats.cookies_demanded += 1;
                let demand = refusal(h, notify::COOKIE, &cookie);
                self.out.send(Transmit::ike(from, local_port, &demand));
                return;
            }
        }
        let spi_r = self.rng.ike_spi();
        let (Ok(pair), Some(nonce)) = (KeyPair::generate(), fresh_nonce()) else {
            tracing::warn!("no randomness to answer IKE_SA_INIT");
            return;
        };
        let local = SocketAddrV4::new(self.config.local, local_port);
        match respond(
            message,
            spi_r,
            &pair,
            &nonce,
            &self.config.ciphers,
            from,
            local,
        ) {
            Ok((answer, agreed)) => {
                self.out.send(Transmit::ike(from, local_port, &answer));
                tracing::debug!(spi_i = h.spi_i, nat = agreed.nat, "IKE_SA_INIT answered");
                self.responding = Some(Box::new(Responding {
                    request: message.to_vec(),
                    response: answer,
                    agreed,
                    expires: now + self.config.retire_wait(),
                    refused: None,
                }));
            }
            Err(InitError::NoProposal) => {
                let no = refusal(h, notify::NO_PROPOSAL_CHOSEN, &[]);
                self.out.send(Transmit::ike(from, local_port, &no));
                tracing::info!("a peer's IKE_SA_INIT offers nothing we take");
                self.out.event(Event::IkeDown {
                    reason: DownReason::NoProposalChosen,
                });
            }
            Err(InitError::KeyExchange) => {
                let group = GROUP_CURVE25519.to_be_bytes();
                let wrong = refusal(h, notify::INVALID_KE_PAYLOAD, &group);
                self.out.send(Transmit::ike(from, local_port, &wrong));
            }
            Err(e) => {
                self.out.stats.malformed += 1;
                tracing::trace!(error = %e, "IKE_SA_INIT request dropped");
            }
        }
    }

    /// A peer's IKE_AUTH request: answered and established (replacing any
    /// IKE SA before), or refused with an encrypted notify.
    pub(super) fn on_auth_request(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        local_port: u16,
        message: &[u8],
        h: &Header,
    ) {
        let Some(r) = self.responding.as_mut() else {
            return;
        };
        if let Some((request, answer)) = &r.refused {
            if request == message {
                self.out.stats.responses_resent += 1;
                self.out.send(answer.clone());
            } else {
                self.out.stats.unexpected += 1;
            }
            return;
        }
        if h.exchange != exchange::IKE_AUTH || h.is_response() || h.message_id != 1 {
            self.out.stats.unexpected += 1;
            return;
        }
        let params = auth_params(&self.config, self.rng.esp_spi());
        let refused = match respond_auth(&r.agreed, &r.request, &r.response, message, &params) {
            Ok((answer, child)) => {
                let transmit = Transmit::ike(from, local_port, &answer);
                self.out.send(transmit.clone());
                let mut window = Window::new(0, 0);
                window.respond(1, transmit);
                let Some(r) = self.responding.take() else {
                    return;
                };
                let Responding {
                    request,
                    response,
                    agreed,
                    ..
                } = *r;
                self.last_init = Some((request, response));
                return self.establish(now, agreed, child, false, from, local_port, window);
            }
            Err(AuthError::Authentication) => {
                (notify::AUTHENTICATION_FAILED, DownReason::AuthFailed)
            }
            Err(AuthError::NoProposal) => {
                (notify::NO_PROPOSAL_CHOSEN, DownReason::NoProposalChosen)
            }
            Err(AuthError::Refused(kind)) => (kind, DownReason::Refused(kind)),
            Err(AuthError::Sealed(_)) => {
                self.out.stats.unauthenticated += 1;
                return;
            }
            Err(e) => {
                self.out.stats.malformed += 1;
                tracing::trace!(error = %e, "IKE_AUTH request dropped");
                return;
            }
        };
        let (kind, reason) = refused;
        if let Ok(answer) = Protected::new(&r.agreed, false)
            .and_then(|mut ike| ike.error_response(exchange::IKE_AUTH, 1, kind))
        {
            let transmit = Transmit::ike(from, local_port, &answer);
            self.out.send(transmit.clone());
            r.refused = Some((message.to_vec(), transmit));
        }
        tracing::info!(?reason, "a peer's IKE_AUTH refused");
        self.out.event(Event::IkeDown { reason });
    }

    /// Any state → Established with the IKE SA of `agreed` (of which we
    /// are the original initiator or not) and its first child SA; an IKE
    /// SA up before is replaced.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn establish(
        &mut self,
        now: Instant,
        agreed: Agreed,
        child: ChildSa,
        initiator: bool,
        peer: SocketAddrV4,
        local_port: u16,
        window: Window<super::state::Purpose>,
    ) {
        if matches!(self.state, State::Established(_)) {
            self.down(now, DownReason::Replaced);
        }
        let nat = agreed.nat;
        let Some(ike) = IkeSa::new(
            agreed,
            initiator,
            window,
            peer,
            local_port,
            now,
            &self.config,
            &mut self.rng,
        ) else {
            return;
        };
        let (spi_i, spi_r) = ike.spis();
        let keys = child_keys(child, initiator, &ike);
        let mut first = Child::new(
            keys.inbound_spi,
            keys.outbound_spi,
            now,
            &self.config,
            &mut self.rng,
        );
        first.sending = true;
        tracing::info!(
            spi_i = format_args!("{spi_i:016x}"),
            spi_r = format_args!("{spi_r:016x}"),
            initiator,
            nat,
            "IKE SA established"
        );
        self.out.event(Event::IkeEstablished {
            spi_i,
            spi_r,
            initiator,
            nat,
        });
        let sending = Event::ChildSaSending {
            inbound_spi: first.inbound_spi,
            outbound_spi: first.outbound_spi,
        };
        self.out.event(Event::ChildSaInstalled(keys));
        self.out.event(sending);
        self.out.stats.established += 1;
        self.failures = 0;
        self.state = State::Established(Box::new(Established {
            ike,
            children: vec![first],
            wants: Default::default(),
            crossed: None,
            childless_until: None,
            new_child_at: None,
            liveness_at: now + self.config.dpd_interval,
        }));
    }
}

/// A Delete of the IKE SA of an IKE_AUTH under way, for when the peer's
/// side of it is up (only its child failed, or its AUTH did not verify
/// here); sent once.
fn delete_at_peer(auth: &AuthPhase) -> Option<Transmit> {
    let mut ike = Protected::new(&auth.agreed, true).ok()?;
    let message = ike.delete_ike(2).ok()?;
    Some(Transmit::ike(auth.peer, auth.local_port, &message))
}
