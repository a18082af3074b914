//! What the controller knows, shared between the southbound sessions and the
//! management API: per switch, its connection state and a handle to send it
//! requests and await the replies.

use crate::topology::Topology;
use sdn_proto::southbound::{self as pb, controller_message::Body as ToSwitch};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// How long a management request waits for a switch's reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages to one switch.
pub type Outbound = mpsc::Sender<Result<pb::ControllerMessage, Status>>;

/// A way to talk to a connected switch.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Identifies the session (a reconnect makes a new one).
    pub generation: u64,
    tx: Outbound,
    xids: Arc<AtomicU64>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<pb::SwitchMessage>>>>,
    captures: Arc<Mutex<HashMap<u64, mpsc::Sender<pb::CaptureData>>>>,
}

impl SessionHandle {
    /// A handle over the session's outbound channel.
    pub fn new(generation: u64, tx: Outbound) -> SessionHandle {
        SessionHandle {
            generation,
            tx,
            xids: Arc::new(AtomicU64::new(1)),
            pending: Arc::default(),
            captures: Arc::default(),
        }
    }

    /// A fresh transaction id.
    pub fn next_xid(&self) -> u64 {
        self.xids.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a message without waiting for a reply.
    pub async fn send(&self, body: ToSwitch) -> Result<u64, Status> {
        let xid = self.next_xid();
        self.tx
            .send(Ok(pb::ControllerMessage {
                xid,
                body: Some(body),
            }))
            .await
            .map_err(|_| Status::unavailable("the switch disconnected"))?;
        Ok(xid)
    }

    /// Sends a request and waits for the reply with its xid.
    pub async fn request(&self, body: ToSwitch) -> Result<pb::SwitchMessage, Status> {
        let xid = self.next_xid();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(xid, tx);
        let sent = self
            .tx
            .send(Ok(pb::ControllerMessage {
                xid,
                body: Some(body),
            }))
            .await;
        if sent.is_err() {
            lock(&self.pending).remove(&xid);
            return Err(Status::unavailable("the switch disconnected"));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(Status::unavailable("the switch disconnected")),
            Err(_) => {
                lock(&self.pending).remove(&xid);
                Err(Status::deadline_exceeded(
                    "the switch did not answer within 5 s",
                ))
            }
        }
    }

    /// Hands a reply to whoever waits for its xid; returns whether someone did.
    pub fn deliver(&self, message: &pb::SwitchMessage) -> bool {
        match lock(&self.pending).remove(&message.xid) {
            Some(waiter) => {
                let _ = waiter.send(message.clone());
                true
            }
            None => false,
        }
    }

    /// Registers a capture; frames for `id` go to `tx`.
    pub fn add_capture(&self, id: u64, tx: mpsc::Sender<pb::CaptureData>) {
        lock(&self.captures).insert(id, tx);
    }

    /// Unregisters a capture.
    pub fn remove_capture(&self, id: u64) {
        lock(&self.captures).remove(&id);
    }

    /// Forwards captured frames to their capture; drops them if it is gone or slow.
    pub fn deliver_capture(&self, data: pb::CaptureData) {
        if let Some(tx) = lock(&self.captures).get(&data.capture_id) {
            let _ = tx.try_send(data);
        }
    }

    /// Queues a message without waiting (for use from `Drop`).
    pub fn try_send(&self, body: ToSwitch) {
        let xid = self.next_xid();
        let _ = self.tx.try_send(Ok(pb::ControllerMessage {
            xid,
            body: Some(body),
        }));
    }
}

/// What the controller knows of one switch.
#[derive(Debug, Clone, Default)]
pub struct SwitchInfo {
    /// Datapath id from the hello.
    pub datapath_id: u64,
    /// Ports from the hello.
    pub ports: Vec<pb::Port>,
    /// Fail mode from the hello.
    pub fail_mode: i32,
    /// The current session, if connected.
    pub session: Option<SessionHandle>,
    /// The desired flows are confirmed installed.
    pub synced: bool,
    /// When the current session started.
    pub connected_at: Option<Instant>,
    /// Entries believed installed.
    pub flow_count: u64,
    /// MACs learned.
    pub learned_macs: u64,
    /// Sessions so far.
    pub connections: u64,
    /// The last security policy generation the switch confirmed (barrier).
    pub policy_generation: u64,
}

/// The controller's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The lab.
    pub topology: Topology,
    /// When the controller started.
    pub started: Instant,
    /// Per switch name.
    pub switches: HashMap<String, SwitchInfo>,
    generations: u64,
    /// Bumped by every applied change of the security section; sessions
    /// watch it.
    pub policy: tokio::sync::watch::Sender<u64>,
    /// Writes denied connection attempts, if the lab asks for flow logs.
    pub flow_log: Option<crate::security::flow_log::FlowLog>,
}

impl Shared {
    /// State for a lab, every switch known and disconnected.
    pub fn new(topology: Topology) -> Shared {
        let switches = topology
            .switches
            .iter()
            .map(|s| (s.name.clone(), SwitchInfo::default()))
            .collect();
        Shared {
            topology,
            started: Instant::now(),
            switches,
            generations: 0,
            policy: tokio::sync::watch::Sender::new(0),
            flow_log: None,
        }
    }

    /// A number for a new session.
    pub fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }
}

/// The state as the server holds it.
pub type SharedState = Arc<Mutex<Shared>>;

/// Locks a mutex, taking the data even if a panicking thread poisoned it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
