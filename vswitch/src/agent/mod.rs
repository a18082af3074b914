//! The switch's side of the control channel: connects to the controller (Unix
//! socket or TCP), says hello with the switch's features, turns controller
//! messages into datapath commands and datapath events into switch messages,
//! keeps the channel alive with echoes, reconnects with backoff, and applies
//! the fail mode while the controller is gone.

mod translate;

pub use translate::{group_from_pb, group_to_pb, probe_from_pb, probe_to_pb};

use crate::datapath::{Command, ControllerState, DatapathHandle, Event, PortDescription};
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
use translate::{error_message, event_to_pb, handle_message, port_to_pb};

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
}
