//! Connecting to a lab's controller from the CLI and tests.

use anyhow::{Context, Result};
use sdn_proto::management::management_client::ManagementClient;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Opens the management API of the controller at `address`
/// (`unix:/path` or `tcp:host:port`).
pub async fn connect(address: &str) -> Result<ManagementClient<Channel>> {
    let endpoint = match address.strip_prefix("tcp:") {
        Some(addr) => Endpoint::from_shared(format!("http://{addr}"))?,
        None => Endpoint::from_shared(address.to_string())?,
    };
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .with_context(|| format!("cannot reach the controller at {address}"))?;
    Ok(ManagementClient::new(channel)
        .max_decoding_message_size(crate::server::MAX_MESSAGE)
        .max_encoding_message_size(crate::server::MAX_MESSAGE))
}
