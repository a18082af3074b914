//! The switch's side of the control channel: connects to the controller (Unix
//! socket or TCP), says hello with the switch's features, turns controller
//! messages into datapath commands and datapath events into switch messages,
//! keeps the channel alive with echoes, reconnects with backoff, and applies
//! the fail mode while the controller is gone.

use crate::datapath::{
    CapturedFrame, Command, ControllerState, DatapathHandle, Event, PortDescription,
};
use crate::flow::convert::{ConvertError, actions_from_pb};
use crate::flow::{FlowMod, Match};
use crate::pipeline::{PacketInReason, RemovedReason};
use crate::wire::{GsoType, VnetRepr, vnet_hdr};
use sdn_proto::southbound::{
    self as pb, controller_message::Body as In, switch_message::Body as Out,
};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

/// Where the controller listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerAddress {
    /// A Unix socket path (reachable from every network namespace).
    Unix(std::path::PathBuf),
    /// A TCP address, `host:port`.
    Tcp(String),
}

impl fmt::Display for ControllerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            ControllerAddress::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl FromStr for ControllerAddress {
    type Err = String;

    /// `unix:/path`, `tcp:host:port` or `host:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(ControllerAddress::Unix(path.into()));
        }
        let addr = s.strip_prefix("tcp:").unwrap_or(s);
        if !addr.contains(':') {
            return Err(format!("{s:?} is neither unix:/path nor host:port"));
        }
        Ok(ControllerAddress::Tcp(addr.to_string()))
    }
}

/// What happens to forwarding while the controller is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Keep the installed flows; drop what would go to the controller.
    Secure,
    /// After `fail_open_after`, forward as a MAC-learning switch.
    Standalone,
}

impl FromStr for FailMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "secure" => Ok(FailMode::Secure),
            "standalone" => Ok(FailMode::Standalone),
            other => Err(format!("fail mode {other:?}: want secure or standalone")),
        }
    }
}

/// Settings of the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Switch name.
    pub name: String,
    /// Datapath id.
    pub datapath_id: u64,
    /// Controller address.
    pub controller: ControllerAddress,
    /// Fail mode.
    pub fail_mode: FailMode,
    /// How long without a controller before a standalone switch fails open.
    pub fail_open_after: Duration,
    /// Interval of echo requests; the channel is dead after three without answer.
    pub echo_interval: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl AgentConfig {
    /// Defaults: standalone fails open after 3 s, echo every 5 s, backoff up to 5 s.
    pub fn new(
        name: &str,
        datapath_id: u64,
        controller: ControllerAddress,
        fail_mode: FailMode,
    ) -> AgentConfig {
        AgentConfig {
            name: name.to_string(),
            datapath_id,
            controller,
            fail_mode,
            fail_open_after: Duration::from_secs(3),
            echo_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The process is stopping.
    Shutdown,
    /// The channel failed; reconnect.
    Lost(String),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    ports: Vec<PortDescription>,
    datapath: DatapathHandle,
    mut events: UnboundedReceiver<Event>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    let mut disconnected_since = Instant::now();
    let mut failed_open = false;
    loop {
        let attempt = tokio::select! {
            _ = &mut shutdown => return,
            result = connect(&config.controller) => result,
        };
        match attempt {
            Ok(channel) => {
                backoff = Duration::from_millis(100);
                match session(
                    &config,
                    &ports,
                    &datapath,
                    &mut events,
                    channel,
                    &mut shutdown,
                )
                .await
                {
                    SessionEnd::Shutdown => return,
                    SessionEnd::Lost(reason) => {
                        warn!(controller = %config.controller, %reason, "controller connection lost");
                        datapath.send(Command::Controller(ControllerState::Disconnected));
                        disconnected_since = Instant::now();
                        failed_open = false;
                    }
                }
            }
            Err(err) => {
                debug!(controller = %config.controller, error = %err, "cannot reach controller")
            }
        }
        // Wait before retrying, dropping datapath events nobody can take.
        let jitter = Duration::from_millis(u64::from(std::process::id() % 50));
        let wake = tokio::time::sleep(backoff + jitter);
        tokio::pin!(wake);
        loop {
            let fail_open_at = disconnected_since + config.fail_open_after;
            let fail_open_timer = tokio::time::sleep_until(fail_open_at.into());
            tokio::select! {
                _ = &mut shutdown => return,
                _ = &mut wake => break,
                _ = fail_open_timer, if config.fail_mode == FailMode::Standalone && !failed_open => {
                    info!("no controller: failing open as a learning switch (fail-mode standalone)");
                    datapath.send(Command::Controller(ControllerState::FailOpen));
                    failed_open = true;
                }
                Some(event) = events.recv() => discard(&datapath, event),
            }
        }
        backoff = (backoff * 2).min(config.max_backoff);
    }
}

fn discard(datapath: &DatapathHandle, event: Event) {
    if matches!(event, Event::PacketIn { .. } | Event::Capture { .. }) {
        datapath.consumed();
    }
}

async fn connect(
    address: &ControllerAddress,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let endpoint = match address {
        ControllerAddress::Unix(path) => {
            tonic::transport::Endpoint::from_shared(format!("unix:{}", path.display()))?
        }
        ControllerAddress::Tcp(addr) => {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        }
    };
    endpoint
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
}

async fn session(
    config: &AgentConfig,
    ports: &[PortDescription],
    datapath: &DatapathHandle,
    events: &mut UnboundedReceiver<Event>,
    channel: tonic::transport::Channel,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> SessionEnd {
    let (tx, rx) = mpsc::channel::<pb::SwitchMessage>(1024);
    let hello = pb::SwitchMessage {
        xid: 0,
        body: Some(Out::Hello(pb::Hello {
            version: pb::VERSION,
            datapath_id: config.datapath_id,
            name: config.name.clone(),
            ports: ports.iter().map(port_to_pb).collect(),
            n_tables: u32::from(crate::pipeline::N_TABLES),
            fail_mode: match config.fail_mode {
                FailMode::Secure => pb::FailMode::Secure,
                FailMode::Standalone => pb::FailMode::Standalone,
            } as i32,
            software: format!("vswitchd {}", env!("CARGO_PKG_VERSION")),
        })),
    };
    if tx.send(hello).await.is_err() {
        return SessionEnd::Lost("stream closed before hello".into());
    }
    let mut client = pb::southbound_client::SouthboundClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let response = tokio::select! {
        _ = shutdown.as_mut() => return SessionEnd::Shutdown,
        r = client.control(ReceiverStream::new(rx)) => r,
    };
    let mut inbound = match response {
        Ok(r) => r.into_inner(),
        Err(status) => return SessionEnd::Lost(format!("controller refused the stream: {status}")),
    };
    let mut echo = tokio::time::interval(config.echo_interval);
    echo.tick().await;
    let mut last_heard = Instant::now();
    let mut greeted = false;
    let mut xid = 1u64;
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return SessionEnd::Shutdown,
            message = inbound.next() => {
                let message = match message {
                    Some(Ok(m)) => m,
                    Some(Err(status)) => return SessionEnd::Lost(status.to_string()),
                    None => return SessionEnd::Lost("controller closed the stream".into()),
                };
                last_heard = Instant::now();
                if let Some(In::Hello(hello)) = &message.body {
                    if hello.version != pb::VERSION {
                        let _ = tx.send(error_message(message.xid, pb::ErrorType::HelloFailed,
                            format!("controller speaks version {}, this switch {}", hello.version, pb::VERSION))).await;
                        return SessionEnd::Lost(format!("version mismatch: controller {}", hello.version));
                    }
                    info!(controller = %config.controller, id = %hello.controller_id, "connected to controller");
                    greeted = true;
                    datapath.send(Command::Controller(ControllerState::Connected));
                    continue;
                }
                if !greeted {
                    continue;
                }
                if let Some(reply) = handle_message(message, datapath)
                    && tx.send(reply).await.is_err()
                {
                    return SessionEnd::Lost("stream closed".into());
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return SessionEnd::Shutdown };
                let bounded = matches!(event, Event::PacketIn { .. } | Event::Capture { .. });
                let message = event_to_pb(event, &mut xid);
                if bounded {
                    datapath.consumed();
                }
                if greeted && tx.send(message).await.is_err() {
                    return SessionEnd::Lost("stream closed".into());
                }
            }
            _ = echo.tick() => {
                if last_heard.elapsed() > config.echo_interval * 3 {
                    return SessionEnd::Lost("no answer to echo requests".into());
                }
                xid += 1;
                let request = pb::SwitchMessage { xid, body: Some(Out::EchoRequest(pb::Echo { data: Default::default() })) };
                if tx.send(request).await.is_err() {
                    return SessionEnd::Lost("stream closed".into());
                }
            }
        }
    }
}

fn error_message(xid: u64, kind: pb::ErrorType, message: String) -> pb::SwitchMessage {
    pb::SwitchMessage {
        xid,
        body: Some(Out::Error(pb::Error {
            r#type: kind as i32,
            message,
        })),
    }
}

fn port_to_pb(p: &PortDescription) -> pb::Port {
    pb::Port {
        number: p.number,
        name: p.info.name.clone(),
        hw_addr: p.info.hw_addr.0.to_vec().into(),
        link_up: true,
        mtu: p.info.mtu,
        offloads: p.info.offloads,
    }
}

fn vnet_from_pb(o: Option<&pb::Offload>) -> Result<VnetRepr, ConvertError> {
    let Some(o) = o else {
        return Ok(VnetRepr::PLAIN);
    };
    let narrow = |field: &'static str, v: u32| {
        u16::try_from(v).map_err(|_| ConvertError::OutOfRange {
            field,
            value: u64::from(v),
        })
    };
    Ok(VnetRepr {
        flags: if o.needs_checksum {
            vnet_hdr::FLAG_NEEDS_CSUM
        } else {
            0
        },
        gso_type: GsoType::from(u8::try_from(o.gso_type).map_err(|_| {
            ConvertError::OutOfRange {
                field: "offload.gso_type",
                value: u64::from(o.gso_type),
            }
        })?),
        hdr_len: 0,
        gso_size: narrow("offload.gso_size", o.gso_size)?,
        csum_start: narrow("offload.checksum_start", o.checksum_start)?,
        csum_offset: narrow("offload.checksum_offset", o.checksum_offset)?,
    })
}

fn vnet_to_pb(v: &VnetRepr) -> Option<pb::Offload> {
    (*v != VnetRepr::PLAIN).then(|| pb::Offload {
        gso_type: u32::from(u8::from(v.gso_type)),
        gso_size: u32::from(v.gso_size),
        needs_checksum: v.needs_checksum(),
        checksum_start: u32::from(v.csum_start),
        checksum_offset: u32::from(v.csum_offset),
    })
}

/// Turns a controller message into a datapath command, or answers it directly.
fn handle_message(
    message: pb::ControllerMessage,
    datapath: &DatapathHandle,
) -> Option<pb::SwitchMessage> {
    let xid = message.xid;
    let bad = |e: ConvertError| Some(error_message(xid, pb::ErrorType::BadRequest, e.to_string()));
    let command = match message.body? {
        In::Hello(_) => return None,
        In::EchoRequest(echo) => {
            return Some(pb::SwitchMessage {
                xid,
                body: Some(Out::EchoReply(echo)),
            });
        }
        In::EchoReply(_) => return None,
        In::FlowMod(fm) => match FlowMod::try_from(&fm) {
            Ok(flow_mod) => Command::FlowMod { xid, flow_mod },
            Err(e) => return bad(e),
        },
        In::BarrierRequest(_) => Command::Barrier { xid },
        In::PacketOut(po) => {
            let actions = match actions_from_pb(&po.actions) {
                Ok(a) => a,
                Err(e) => return bad(e),
            };
            let vnet = match vnet_from_pb(po.offload.as_ref()) {
                Ok(v) => v,
                Err(e) => return bad(e),
            };
            Command::PacketOut {
                xid,
                in_port: po.in_port,
                actions,
                data: po.data.to_vec(),
                vnet,
            }
        }
        In::FlowStatsRequest(req) => {
            let filter = match req.r#match.as_ref().map(Match::try_from).transpose() {
                Ok(m) => m.unwrap_or_default(),
                Err(e) => return bad(e),
            };
            let table = match req.table_id.map(u8::try_from).transpose() {
                Ok(t) => t,
                Err(_) => {
                    return bad(ConvertError::OutOfRange {
                        field: "table_id",
                        value: u64::from(req.table_id.unwrap_or(0)),
                    });
                }
            };
            Command::FlowStats {
                xid,
                table,
                filter,
                cookie: req.cookie,
                cookie_mask: req.cookie_mask,
            }
        }
        In::PortStatsRequest(_) => Command::PortStats { xid },
        In::CaptureStart(c) => Command::CaptureStart {
            id: c.capture_id,
            port: c.port,
            snaplen: c.snaplen,
        },
        In::CaptureStop(c) => Command::CaptureStop { id: c.capture_id },
    };
    if datapath.send(command) {
        None
    } else {
        Some(error_message(
            xid,
            pb::ErrorType::BadRequest,
            "datapath stopped".into(),
        ))
    }
}

fn captured_to_pb(f: CapturedFrame) -> pb::CapturedFrame {
    pb::CapturedFrame {
        timestamp_ns: f.timestamp_ns,
        original_len: f.original_len,
        data: f.data.into(),
        direction: if f.inbound {
            pb::CaptureDirection::In
        } else {
            pb::CaptureDirection::Out
        } as i32,
    }
}

fn event_to_pb(event: Event, xid: &mut u64) -> pb::SwitchMessage {
    let mut unsolicited = || {
        *xid += 1;
        *xid
    };
    match event {
        Event::PacketIn {
            in_port,
            request,
            total_len,
            data,
            vnet,
        } => pb::SwitchMessage {
            xid: unsolicited(),
            body: Some(Out::PacketIn(pb::PacketIn {
                in_port,
                reason: match request.reason {
                    PacketInReason::Action => pb::PacketInReason::Action,
                    PacketInReason::NoMatch => pb::PacketInReason::NoMatch,
                } as i32,
                table_id: u32::from(request.table),
                cookie: request.cookie,
                total_len,
                data: data.into(),
                offload: vnet_to_pb(&vnet),
            })),
        },
        Event::FlowRemoved(removed) => {
            let stats = pb::FlowStats::from(&removed.stats);
            pb::SwitchMessage {
                xid: unsolicited(),
                body: Some(Out::FlowRemoved(pb::FlowRemoved {
                    reason: match removed.reason {
                        RemovedReason::IdleTimeout => pb::FlowRemovedReason::IdleTimeout,
                        RemovedReason::HardTimeout => pb::FlowRemovedReason::HardTimeout,
                        RemovedReason::Delete => pb::FlowRemovedReason::Delete,
                    } as i32,
                    table_id: stats.table_id,
                    priority: stats.priority,
                    r#match: stats.r#match,
                    cookie: stats.cookie,
                    duration_ms: stats.duration_ms,
                    packet_count: stats.packet_count,
                    byte_count: stats.byte_count,
                })),
            }
        }
        Event::BarrierReply { xid } => pb::SwitchMessage {
            xid,
            body: Some(Out::BarrierReply(pb::BarrierReply {})),
        },
        Event::FlowStats { xid, flows } => pb::SwitchMessage {
            xid,
            body: Some(Out::FlowStatsReply(pb::FlowStatsReply {
                flows: flows.iter().map(pb::FlowStats::from).collect(),
            })),
        },
        Event::PortStats {
            xid,
            ports,
            datapath,
        } => pb::SwitchMessage {
            xid,
            body: Some(Out::PortStatsReply(pb::PortStatsReply {
                ports: ports
                    .into_iter()
                    .map(|(d, c)| pb::PortStats {
                        port: d.number,
                        name: d.info.name,
                        rx_packets: c.rx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_packets: c.tx_packets,
                        tx_bytes: c.tx_bytes,
                        rx_dropped: c.rx_dropped,
                        tx_dropped: c.tx_dropped,
                        rx_errors: c.rx_errors,
                        tx_errors: c.tx_errors,
                    })
                    .collect(),
                datapath: Some(pb::DatapathStats {
                    packet_in_sent: datapath.packet_in_sent,
                    packet_in_dropped: datapath.packet_in_dropped,
                    cache_hits: datapath.pipeline.cache_hits,
                    cache_misses: datapath.pipeline.cache_misses,
                    segmented_frames: datapath.segmented_frames,
                }),
            })),
        },
        Event::Error { xid, message } => error_message(xid, pb::ErrorType::FlowModFailed, message),
        Event::Capture {
            id,
            frames,
            dropped,
        } => pb::SwitchMessage {
            xid: unsolicited(),
            body: Some(Out::CaptureData(pb::CaptureData {
                capture_id: id,
                frames: frames.into_iter().map(captured_to_pb).collect(),
                dropped,
            })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "unix:/run/sdn/x.sock".parse::<ControllerAddress>().unwrap(),
            ControllerAddress::Unix("/run/sdn/x.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:6653".parse::<ControllerAddress>().unwrap(),
            ControllerAddress::Tcp("127.0.0.1:6653".into())
        );
        assert_eq!(
            "127.0.0.1:6653"
                .parse::<ControllerAddress>()
                .unwrap()
                .to_string(),
            "tcp:127.0.0.1:6653"
        );
        assert!("unix:".parse::<ControllerAddress>().is_err());
        assert!("localhost".parse::<ControllerAddress>().is_err());
        assert_eq!(
            "standalone".parse::<FailMode>().unwrap(),
            FailMode::Standalone
        );
        assert!("open".parse::<FailMode>().is_err());
    }

    #[test]
    fn offload_metadata_round_trip_and_bad_values() {
        let v = VnetRepr {
            flags: vnet_hdr::FLAG_NEEDS_CSUM,
            gso_type: GsoType::TcpV4,
            hdr_len: 0,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(vnet_from_pb(vnet_to_pb(&v).as_ref()).unwrap(), v);
        assert_eq!(vnet_to_pb(&VnetRepr::PLAIN), None);
        let bad = pb::Offload {
            gso_size: 70_000,
            ..Default::default()
        };
        assert!(vnet_from_pb(Some(&bad)).is_err());
    }
}
