//! The controller's gRPC server: the southbound service switches connect to
//! and the management service the `sdn` CLI uses, on one Unix socket or TCP
//! address.

mod drain;
mod lb_api;
mod routing_api;
pub mod security_api;
pub mod session;
pub mod state;
mod vlan_status;

use crate::plan;
use crate::topology::Topology;
use sdn_proto::management::{self as mgmt, management_server::Management};
use sdn_proto::southbound::{
    self as pb, controller_message::Body as ToSwitch, southbound_server::Southbound,
};
use state::{SharedState, lock};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Largest message either side sends (a full flow table dump, a batch of captures).
pub const MAX_MESSAGE: usize = 64 << 20;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(std::net::SocketAddr),
}

struct SouthboundService {
    state: SharedState,
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Southbound for SouthboundService {
    type ControlStream = ControlStream;

    async fn control(
        &self,
        request: Request<Streaming<pb::SwitchMessage>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(session::run(self.state.clone(), request.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct ManagementService {
    state: SharedState,
    capture_ids: Arc<AtomicU64>,
}

impl ManagementService {
    fn session(&self, switch: &str) -> Result<state::SessionHandle, Status> {
        let shared = lock(&self.state);
        let info = shared.switches.get(switch).ok_or_else(|| {
            Status::not_found(format!(
                "no switch named {switch} in lab {}",
                shared.topology.name
            ))
        })?;
        info.session
            .clone()
            .ok_or_else(|| Status::unavailable(format!("switch {switch} is not connected")))
    }
}

/// Stops a capture on the switch when the CLI goes away.
struct CaptureGuard {
    handle: state::SessionHandle,
    id: u64,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        self.handle.remove_capture(self.id);
        self.handle.try_send(ToSwitch::CaptureStop(pb::CaptureStop {
            capture_id: self.id,
        }));
    }
}

type CaptureStream = Pin<Box<dyn Stream<Item = Result<mgmt::CaptureChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Management for ManagementService {
    async fn status(
        &self,
        _: Request<mgmt::StatusRequest>,
    ) -> Result<Response<mgmt::StatusReply>, Status> {
        let (mut reply, plans) = {
            let shared = lock(&self.state);
            let mut plans = Vec::new();
            let mut switches: Vec<mgmt::SwitchStatus> = Vec::new();
            for (name, info) in &shared.switches {
                switches.push(mgmt::SwitchStatus {
                    name: name.clone(),
                    datapath_id: info.datapath_id,
                    connected: info.session.is_some(),
                    synced: info.synced,
                    ports: info.ports.clone(),
                    fail_mode: info.fail_mode,
                    connected_for_s: info.connected_at.map_or(0, |t| t.elapsed().as_secs()),
                    flow_count: info.flow_count,
                    learned_macs: info.learned_macs,
                    connections: info.connections,
                    ..Default::default()
                });
                if let Some(plan) = plan::plan(&shared.topology, name).filter(|p| p.vlan_aware) {
                    plans.push((name.clone(), plan, info.session.clone()));
                }
            }
            switches.sort_by(|a, b| a.name.cmp(&b.name));
            let reply = mgmt::StatusReply {
                lab: shared.topology.name.clone(),
                controller_id: format!("sdn-controller/{}", shared.topology.name),
                uptime_s: shared.started.elapsed().as_secs(),
                switches,
            };
            (reply, plans)
        };
        for (name, plan, session) in plans {
            let drops = match &session {
                Some(handle) => vlan_status::read_drops(handle).await,
                None => None,
            };
            if let Some(status) = reply.switches.iter_mut().find(|s| s.name == name) {
                let reported = vlan_status::reported_vtep(&status.ports);
                status.port_vlans = vlan_status::port_vlans(&plan, drops.as_ref());
                status.vtep = vlan_status::vtep(&plan, reported, drops.as_ref());
            }
        }
        Ok(Response::new(reply))
    }

    async fn dump_flows(
        &self,
        request: Request<mgmt::DumpFlowsRequest>,
    ) -> Result<Response<mgmt::DumpFlowsReply>, Status> {
        let request = request.into_inner();
        let handle = self.session(&request.switch)?;
        let reply = handle
            .request(ToSwitch::FlowStatsRequest(pb::FlowStatsRequest {
                table_id: request.table_id,
                ..Default::default()
            }))
            .await?;
        match reply.body {
            Some(pb::switch_message::Body::FlowStatsReply(r)) => {
                Ok(Response::new(mgmt::DumpFlowsReply { flows: r.flows }))
            }
            Some(pb::switch_message::Body::Error(e)) => Err(Status::internal(e.message)),
            _ => Err(Status::internal("unexpected reply from the switch")),
        }
    }

    async fn port_stats(
        &self,
        request: Request<mgmt::PortStatsRequest>,
    ) -> Result<Response<mgmt::PortStatsReply>, Status> {
        let handle = self.session(&request.into_inner().switch)?;
        let reply = handle
            .request(ToSwitch::PortStatsRequest(pb::PortStatsRequest { port: 0 }))
            .await?;
        match reply.body {
            Some(pb::switch_message::Body::PortStatsReply(r)) => {
                Ok(Response::new(mgmt::PortStatsReply {
                    ports: r.ports,
                    datapath: r.datapath,
                }))
            }
            Some(pb::switch_message::Body::Error(e)) => Err(Status::internal(e.message)),
            _ => Err(Status::internal("unexpected reply from the switch")),
        }
    }

    async fn apply(
        &self,
        request: Request<mgmt::ApplyRequest>,
    ) -> Result<Response<mgmt::ApplyReply>, Status> {
        security_api::apply(&self.state, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn conntrack(
        &self,
        request: Request<mgmt::ConntrackRequest>,
    ) -> Result<Response<mgmt::ConntrackReply>, Status> {
        let request = request.into_inner();
        let handle = self.session(&request.switch)?;
        security_api::conntrack(&self.state, handle, request)
            .await
            .map(Response::new)
    }

    async fn rules(
        &self,
        request: Request<mgmt::RulesRequest>,
    ) -> Result<Response<mgmt::RulesReply>, Status> {
        let request = request.into_inner();
        let handle = self.session(&request.switch)?;
        security_api::rules(&self.state, handle, request)
            .await
            .map(Response::new)
    }

    async fn routes(
        &self,
        request: Request<mgmt::RoutesRequest>,
    ) -> Result<Response<mgmt::RoutesReply>, Status> {
        let request = request.into_inner();
        let handle = self.session(&request.switch)?;
        routing_api::routes(&self.state, handle, request)
            .await
            .map(Response::new)
    }

    async fn lb_status(
        &self,
        _request: Request<mgmt::LbStatusRequest>,
    ) -> Result<Response<mgmt::LbStatusReply>, Status> {
        lb_api::lb_status(&self.state, |switch| self.session(switch).ok())
            .await
            .map(Response::new)
    }

    type CaptureStream = CaptureStream;

    async fn capture(
        &self,
        request: Request<mgmt::CaptureRequest>,
    ) -> Result<Response<Self::CaptureStream>, Status> {
        let request = request.into_inner();
        let handle = self.session(&request.switch)?;
        let port = {
            let shared = lock(&self.state);
            let ports = shared
                .switches
                .get(&request.switch)
                .map(|i| i.ports.clone())
                .unwrap_or_default();
            let found = ports
                .iter()
                .find(|p| p.name == request.port || p.number.to_string() == request.port)
                .map(|p| p.number);
            found.ok_or_else(|| {
                let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
                Status::not_found(format!(
                    "switch {} has no port {} (ports: {})",
                    request.switch,
                    request.port,
                    names.join(", ")
                ))
            })?
        };
        let id = self.capture_ids.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<pb::CaptureData>(256);
        handle.add_capture(id, tx);
        handle
            .send(ToSwitch::CaptureStart(pb::CaptureStart {
                capture_id: id,
                port,
                snaplen: request.snaplen,
            }))
            .await?;
        let guard = CaptureGuard { handle, id };
        let stream = async_stream(
            move |out: mpsc::Sender<Result<mgmt::CaptureChunk, Status>>| async move {
                let _guard = guard;
                while let Some(data) = rx.recv().await {
                    let chunk = mgmt::CaptureChunk {
                        frames: data.frames,
                        dropped: data.dropped,
                    };
                    if out.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
            },
        );
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task; the task ends when the stream's reader goes away.
fn async_stream<F, Fut>(body: F) -> CaptureStream
where
    F: FnOnce(mpsc::Sender<Result<mgmt::CaptureChunk, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(ReceiverStream::new(rx))
}

/// Serves the lab's controller until `shutdown` resolves.
pub async fn serve(
    topology: Topology,
    listen: ListenAddress,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut shared = state::Shared::new(topology);
    shared.flow_log = security_api::flow_log_for(&shared.topology);
    let state: SharedState = Arc::new(std::sync::Mutex::new(shared));
    let southbound = pb::southbound_server::SouthboundServer::new(SouthboundService {
        state: state.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let management = mgmt::management_server::ManagementServer::new(ManagementService {
        state,
        capture_ids: Arc::new(AtomicU64::new(1)),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .add_service(southbound)
        .add_service(management);
    match listen {
        ListenAddress::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("remove the stale socket {}", path.display()))?;
            }
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("listen on {}", path.display()))?;
            tracing::info!(socket = %path.display(), "controller listening");
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    shutdown,
                )
                .await
                .context("serve")?;
        }
        ListenAddress::Tcp(addr) => {
            tracing::info!(%addr, "controller listening");
            router
                .serve_with_shutdown(addr, shutdown)
                .await
                .with_context(|| format!("serve on {addr}"))?;
        }
    }
    Ok(())
}
