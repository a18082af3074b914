//! One switch's control session, from hello to disconnect: version check,
//! full re-sync (read the switch's tables, adopt what the L2 application
//! learned before, push the difference, barrier), then learning from
//! packet-ins and flow-removed messages, pushing only differences.

use super::state::{Outbound, SessionHandle, SharedState, lock};
use crate::app::App;
use crate::reconcile::{FlowId, Reconciler};
use crate::routing::switch::Router;
use crate::security::compile::COOKIE_FIREWALL;
use crate::security::flow_log;
use crate::security::switch::Firewall;
use crate::tables;
use crate::topology::Topology;
use sdn_proto::southbound::{
    self as pb, controller_message::Body as ToSwitch, switch_message::Body as FromSwitch,
};
use sdn_vswitch::flow::{FlowMod, FlowSpec, FlowStats, Match};
use sdn_vswitch::pipeline::TunnelMeta;
use sdn_vswitch::pipeline::balance::GroupSpec;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::Streaming;
use tracing::{debug, info, warn};

/// Interval of the controller's echo requests; three unanswered end the session.
const ECHO_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitFlowDump(u64),
    AwaitBarrier(u64),
    Synced,
}

struct Session {
    state: SharedState,
    tx: Outbound,
    name: String,
    handle: Option<SessionHandle>,
    phase: Phase,
    reconciler: Reconciler,
    app: App,
    firewall: Firewall,
    router: Router,
    aging: Duration,
    /// Generations of the security section.
    policy: watch::Receiver<u64>,
    /// The barrier that confirms a policy generation.
    policy_barrier: Option<(u64, u64)>,
    /// The policy generation the last full re-sync installed.
    synced_generation: u64,
    /// The load-balancing groups sent to the switch (as sent, but for the
    /// version), and the last version.
    groups_sent: std::collections::BTreeMap<u32, GroupSpec>,
    group_version: u64,
    /// The probes sent to the switch.
    probes_sent: Option<Vec<sdn_vswitch::probe::ProbeSpec>>,
    /// What the switch's probes last said of each (probe, backend).
    probe_health: std::collections::BTreeMap<(u32, u32), pb::ProbeHealth>,
}

/// Runs a session over the switch's stream until it ends.
pub async fn run(state: SharedState, inbound: Streaming<pb::SwitchMessage>, tx: Outbound) {
    let (aging, policy) = {
        let shared = lock(&state);
        (
            shared.topology.controller.mac_aging,
            shared.policy.subscribe(),
        )
    };
    let mut session = Session {
        state,
        tx,
        name: String::new(),
        handle: None,
        phase: Phase::AwaitHello,
        reconciler: Reconciler::new(),
        app: App::Plain(crate::l2::L2Switch::new(aging, crate::l2::DEFAULT_CAPACITY)),
        firewall: Firewall::default(),
        router: Router::default(),
        aging,
        policy,
        policy_barrier: None,
        synced_generation: 0,
        groups_sent: Default::default(),
        group_version: 0,
        probes_sent: None,
        probe_health: Default::default(),
    };
    let reason = session.serve(inbound).await;
    session.close(&reason);
}

impl Session {
    async fn serve(&mut self, mut inbound: Streaming<pb::SwitchMessage>) -> String {
        let mut echo = tokio::time::interval(ECHO_INTERVAL);
        echo.tick().await;
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                message = inbound.next() => {
                    let message = match message {
                        Some(Ok(m)) => m,
                        Some(Err(status)) => return format!("stream error: {}", status.message()),
                        None => return "the switch closed the stream".into(),
                    };
                    last_heard = Instant::now();
                    if let Err(reason) = self.handle_message(message).await {
                        return reason;
                    }
                }
                changed = self.policy.changed() => {
                    if changed.is_err() {
                        return "the controller is stopping".into();
                    }
                    if self.phase == Phase::Synced
                        && let Err(reason) = self.apply_policy().await
                    {
                        return reason;
                    }
                }
                _ = echo.tick() => {
                    if last_heard.elapsed() > ECHO_INTERVAL * 3 {
                        return "no answer to echo requests".into();
                    }
                    if self.phase != Phase::AwaitHello
                        && self.send(ToSwitch::EchoRequest(pb::Echo::default())).await.is_err()
                    {
                        return "the switch went away".into();
                    }
                }
            }
        }
    }

    fn close(&mut self, reason: &str) {
        let Some(handle) = &self.handle else {
            debug!(%reason, "session ended before hello");
            return;
        };
        let mut shared = lock(&self.state);
        if let Some(info) = shared.switches.get_mut(&self.name)
            && info
                .session
                .as_ref()
                .is_some_and(|s| s.generation == handle.generation)
        {
            info.session = None;
            info.synced = false;
            info.connected_at = None;
        }
        info!(switch = %self.name, %reason, "switch disconnected");
    }

    async fn send(&self, body: ToSwitch) -> Result<(), String> {
        match &self.handle {
            Some(handle) => handle
                .send(body)
                .await
                .map(|_| ())
                .map_err(|s| s.message().to_string()),
            None => Err("no session".into()),
        }
    }

    /// Installs the router's load-balancing groups that changed since they
    /// were last sent (each replaced whole, with a version above any sent
    /// before, also by an earlier controller), its members healthy as their
    /// probes last said (a member a probe has not yet reported on takes no
    /// new connections), and deletes those sent before that it no longer
    /// has.
    async fn push_groups(&mut self) -> Result<(), String> {
        let groups = self.router.compiled().groups.clone();
        let wanted: std::collections::BTreeSet<u32> = groups.iter().map(|g| g.spec.group).collect();
        for group in groups {
            let mut spec = group.spec;
            if let Some(probe) = group.probe {
                for backend in &mut spec.backends {
                    backend.healthy = self.probe_health.get(&(probe, backend.id))
                        == Some(&pb::ProbeHealth::Healthy);
                }
            }
            if self.groups_sent.get(&spec.group) == Some(&spec) {
                continue;
            }
            self.groups_sent.insert(spec.group, spec.clone());
            let clock = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            self.group_version = clock.max(self.group_version + 1);
            spec.version = self.group_version;
            self.send(ToSwitch::GroupMod(sdn_vswitch::agent::group_to_pb(&spec)))
                .await?;
        }
        let gone: Vec<u32> = self
            .groups_sent
            .keys()
            .filter(|g| !wanted.contains(g))
            .copied()
            .collect();
        for group in gone {
            self.groups_sent.remove(&group);
            self.send(ToSwitch::GroupMod(pb::GroupMod {
                group,
                delete: true,
                ..Default::default()
            }))
            .await?;
        }
        Ok(())
    }

    /// Sends the router's probes to the switch (replacing its own) if they
    /// changed since last sent; the switch answers with every backend's
    /// state.
    async fn push_probes(&mut self) -> Result<(), String> {
        let probes = self.router.compiled().probes.clone();
        if self.probes_sent.as_ref() == Some(&probes) {
            return Ok(());
        }
        let message = pb::ProbeMod {
            probes: probes.iter().map(sdn_vswitch::agent::probe_to_pb).collect(),
        };
        self.probes_sent = Some(probes);
        self.send(ToSwitch::ProbeMod(message)).await
    }

    /// Health changes from the switch's probes: the groups follow them.
    async fn on_probe_status(&mut self, status: pb::ProbeStatus) -> Result<(), String> {
        let mut changed = false;
        for r in status.results {
            let health = pb::ProbeHealth::try_from(r.health).unwrap_or(pb::ProbeHealth::Unknown);
            let before = self.probe_health.insert((r.probe, r.backend), health);
            changed |= before != Some(health);
            info!(switch = %self.name, probe = r.probe, backend = %Ipv4Addr::from(r.backend), health = ?health, "probe result");
        }
        if changed {
            self.push_groups().await?;
        }
        Ok(())
    }

    async fn push(&self, mods: Vec<FlowMod>) -> Result<(), String> {
        for flow_mod in &mods {
            self.send(ToSwitch::FlowMod(pb::FlowMod::from(flow_mod)))
                .await?;
        }
        Ok(())
    }

    fn publish(&self) {
        let mut shared = lock(&self.state);
        if let Some(info) = shared.switches.get_mut(&self.name) {
            info.flow_count = self.reconciler.installed_count() as u64;
            info.learned_macs = self.app.learned() as u64;
            info.synced = self.phase == Phase::Synced;
        }
    }

    async fn handle_message(&mut self, message: pb::SwitchMessage) -> Result<(), String> {
        let Some(body) = message.body.clone() else {
            return Ok(());
        };
        if self.phase == Phase::AwaitHello {
            return match body {
                FromSwitch::Hello(hello) => self.hello(hello).await,
                _ => Err("the switch spoke before saying hello".into()),
            };
        }
        // Replies to management requests go to their waiters.
        let is_reply = matches!(
            body,
            FromSwitch::FlowStatsReply(_)
                | FromSwitch::PortStatsReply(_)
                | FromSwitch::BarrierReply(_)
                | FromSwitch::ConntrackReply(_)
                | FromSwitch::LbStatsReply(_)
                | FromSwitch::Error(_)
        );
        if is_reply
            && let Some(handle) = &self.handle
            && handle.deliver(&message)
        {
            return Ok(());
        }
        match body {
            FromSwitch::Hello(_) => Err("a second hello".into()),
            FromSwitch::EchoRequest(echo) => self.send(ToSwitch::EchoReply(echo)).await,
            FromSwitch::EchoReply(_) => Ok(()),
            FromSwitch::ProbeStatus(status) => self.on_probe_status(status).await,
            FromSwitch::FlowStatsReply(reply)
                if self.phase == Phase::AwaitFlowDump(message.xid) =>
            {
                self.resync(reply).await
            }
            FromSwitch::BarrierReply(_)
                if self
                    .policy_barrier
                    .is_some_and(|(xid, _)| xid == message.xid) =>
            {
                if let Some((_, generation)) = self.policy_barrier.take() {
                    self.confirm_policy(generation);
                    info!(switch = %self.name, generation, flows = self.reconciler.installed_count(), "security rules applied");
                }
                Ok(())
            }
            FromSwitch::BarrierReply(_) if self.phase == Phase::AwaitBarrier(message.xid) => {
                self.phase = Phase::Synced;
                self.confirm_policy(self.synced_generation);
                self.publish();
                info!(switch = %self.name, flows = self.reconciler.installed_count(), macs = self.app.learned(), "switch synced");
                // Rules applied while the re-sync was under way.
                if *self.policy.borrow() != self.synced_generation {
                    self.apply_policy().await?;
                }
                Ok(())
            }
            FromSwitch::PacketIn(packet_in) if packet_in.cookie >> 48 == COOKIE_FIREWALL >> 48 => {
                self.log_denied(&packet_in);
                Ok(())
            }
            FromSwitch::PacketIn(packet_in) => {
                if self.phase == Phase::Synced {
                    let tunnel = tunnel_of(&packet_in);
                    let ids = self.app.on_packet_in(
                        packet_in.in_port,
                        &packet_in.data,
                        tunnel,
                        &mut self.reconciler,
                    );
                    self.push_ids(&ids).await?;
                }
                Ok(())
            }
            FromSwitch::FlowRemoved(removed) => {
                let Ok(matcher) = removed.r#match.as_ref().map(Match::try_from).transpose() else {
                    warn!(switch = %self.name, "flow-removed with a bad match");
                    return Ok(());
                };
                let id = FlowId {
                    table: u8::try_from(removed.table_id).unwrap_or(u8::MAX),
                    priority: u16::try_from(removed.priority).unwrap_or(u16::MAX),
                    matcher: matcher.unwrap_or_default(),
                };
                // A removal of an entry since replaced (another cookie) is stale.
                if let Some(installed) = self.reconciler.installed(&id).cloned()
                    && installed.cookie == removed.cookie
                {
                    let ids = self.app.on_flow_removed(&installed, &mut self.reconciler);
                    self.push_ids(&ids).await?;
                }
                Ok(())
            }
            FromSwitch::PortStatus(status) => {
                if let Some(port) = status.port {
                    let mut shared = lock(&self.state);
                    if let Some(info) = shared.switches.get_mut(&self.name) {
                        info.ports.retain(|p| p.number != port.number);
                        if status.reason != pb::PortStatusReason::Delete as i32 {
                            info.ports.push(port);
                        }
                    }
                }
                Ok(())
            }
            FromSwitch::Error(error) => {
                warn!(switch = %self.name, xid = message.xid, kind = error.r#type, message = %error.message, "switch reported an error");
                Ok(())
            }
            FromSwitch::CaptureData(data) => {
                if let Some(handle) = &self.handle {
                    handle.deliver_capture(data);
                }
                Ok(())
            }
            FromSwitch::FlowStatsReply(_)
            | FromSwitch::PortStatsReply(_)
            | FromSwitch::ConntrackReply(_)
            | FromSwitch::LbStatsReply(_)
            | FromSwitch::BarrierReply(_) => Ok(()),
        }
    }

    async fn push_ids(&mut self, ids: &[FlowId]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        let mods = self.reconciler.sync_ids(ids);
        self.push(mods).await?;
        self.publish();
        Ok(())
    }

    async fn hello(&mut self, hello: pb::Hello) -> Result<(), String> {
        if hello.version != pb::VERSION {
            let _ = self
                .tx
                .send(Ok(pb::ControllerMessage {
                    xid: 0,
                    body: Some(ToSwitch::Hello(pb::ControllerHello {
                        version: pb::VERSION,
                        controller_id: String::new(),
                    })),
                }))
                .await;
            return Err(format!(
                "switch speaks protocol version {}, controller {}",
                hello.version,
                pb::VERSION
            ));
        }
        let (handle, lab) = {
            let mut shared = lock(&self.state);
            let generation = shared.next_generation();
            let lab = shared.topology.name.clone();
            let Some(info) = shared.switches.get_mut(&hello.name) else {
                return Err(format!("switch {:?} is not part of lab {lab}", hello.name));
            };
            let handle = SessionHandle::new(generation, self.tx.clone());
            info.datapath_id = hello.datapath_id;
            info.ports = hello.ports.clone();
            info.fail_mode = hello.fail_mode;
            info.session = Some(handle.clone());
            info.synced = false;
            info.connected_at = Some(Instant::now());
            info.connections += 1;
            (handle, lab)
        };
        self.name = hello.name.clone();
        self.handle = Some(handle);
        info!(switch = %self.name, datapath_id = format_args!("{:#x}", hello.datapath_id), ports = hello.ports.len(), software = %hello.software, "switch connected");
        self.send(ToSwitch::Hello(pb::ControllerHello {
            version: pb::VERSION,
            controller_id: format!("sdn-controller/{lab}"),
        }))
        .await?;
        // Re-sync: read what the switch holds before changing anything.
        let Some(handle) = &self.handle else {
            return Err("no session".into());
        };
        let xid = handle
            .send(ToSwitch::FlowStatsRequest(pb::FlowStatsRequest::default()))
            .await
            .map_err(|s| s.message().to_string())?;
        self.phase = Phase::AwaitFlowDump(xid);
        Ok(())
    }

    /// Records that the switch enforces policy `generation`.
    fn confirm_policy(&self, generation: u64) {
        let mut shared = lock(&self.state);
        if let Some(info) = shared.switches.get_mut(&self.name) {
            info.policy_generation = info.policy_generation.max(generation);
        }
    }

    /// Tells the switch how many connections it may track, if the lab says.
    async fn set_conntrack_limit(&self, topology: &Topology) -> Result<(), String> {
        let Some(max) = topology.security.conntrack_max else {
            return Ok(());
        };
        self.send(ToSwitch::ConntrackRequest(pb::ConntrackRequest {
            set_capacity: Some(max),
            ..Default::default()
        }))
        .await
    }

    /// Brings the firewall flows to the topology's current security section,
    /// then confirms with a barrier.
    async fn apply_policy(&mut self) -> Result<(), String> {
        let generation = *self.policy.borrow_and_update();
        let topology = lock(&self.state).topology.clone();
        let next = Firewall::for_switch(&topology, &self.name);
        let mut ids = self.firewall.replace(next, &mut self.reconciler);
        let next = Router::for_switch(&topology, &self.name);
        ids.extend(self.router.replace(next, &mut self.reconciler));
        let mods = self.reconciler.sync_ids(&ids);
        info!(switch = %self.name, generation, changes = mods.len(), "applying security rules and routes");
        self.push_groups().await?;
        self.push_probes().await?;
        self.push(mods).await?;
        self.set_conntrack_limit(&topology).await?;
        let xid = self
            .send_for_xid(ToSwitch::BarrierRequest(pb::BarrierRequest {}))
            .await?;
        self.policy_barrier = Some((xid, generation));
        self.publish();
        Ok(())
    }

    async fn send_for_xid(&self, body: ToSwitch) -> Result<u64, String> {
        match &self.handle {
            Some(handle) => handle.send(body).await.map_err(|s| s.message().to_string()),
            None => Err("no session".into()),
        }
    }

    /// Writes a denied packet the firewall sent up to the flow log.
    fn log_denied(&self, packet_in: &pb::PacketIn) {
        let Some(denied) = flow_log::describe(
            &self.name,
            self.firewall.compiled(),
            packet_in,
            &self.port_name(packet_in.in_port),
        ) else {
            return;
        };
        if let Some(log) = lock(&self.state).flow_log.as_mut() {
            log.record(&denied);
        }
    }

    fn port_name(&self, number: u32) -> String {
        let shared = lock(&self.state);
        shared
            .switches
            .get(&self.name)
            .and_then(|i| i.ports.iter().find(|p| p.number == number))
            .map_or_else(|| number.to_string(), |p| p.name.clone())
    }

    async fn resync(&mut self, reply: pb::FlowStatsReply) -> Result<(), String> {
        let installed: Vec<FlowSpec> = reply
            .flows
            .iter()
            .filter_map(|f| match FlowStats::try_from(f) {
                Ok(stats) => Some(stats.spec),
                Err(e) => {
                    warn!(switch = %self.name, error = %e, "unreadable flow in the switch's table");
                    None
                }
            })
            .collect();
        self.reconciler = Reconciler::new();
        self.synced_generation = *self.policy.borrow_and_update();
        let topology = lock(&self.state).topology.clone();
        self.firewall = Firewall::for_switch(&topology, &self.name);
        self.app = App::for_switch(&topology, &self.name, self.aging);
        for spec in tables::skeleton() {
            self.reconciler.want(spec);
        }
        self.app.want_base(&mut self.reconciler);
        self.firewall.want(&mut self.reconciler);
        self.router = Router::for_switch(&topology, &self.name);
        self.router.want(&mut self.reconciler);
        self.set_conntrack_limit(&topology).await?;
        self.app.adopt(&installed, &mut self.reconciler);
        let had = installed.len();
        self.reconciler.set_installed(installed);
        let mods = self.reconciler.sync_all();
        info!(switch = %self.name, installed = had, changes = mods.len(), adopted_macs = self.app.learned(), "re-syncing switch");
        self.push_groups().await?;
        self.push_probes().await?;
        self.push(mods).await?;
        let Some(handle) = &self.handle else {
            return Err("no session".into());
        };
        let xid = handle
            .send(ToSwitch::BarrierRequest(pb::BarrierRequest {}))
            .await
            .map_err(|s| s.message().to_string())?;
        self.phase = Phase::AwaitBarrier(xid);
        self.publish();
        Ok(())
    }
}

/// The tunnel a packet-in's frame arrived through, if any.
fn tunnel_of(packet_in: &pb::PacketIn) -> Option<TunnelMeta> {
    let vni = packet_in.tunnel_id?;
    let src: [u8; 4] = packet_in.tunnel_src[..].try_into().ok()?;
    Some(TunnelMeta {
        vni,
        src: Ipv4Addr::from(src),
    })
}
