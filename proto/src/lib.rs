//! Generated gRPC code for the southbound (switch ↔ controller) and management
//! (CLI → controller) protocols. No logic lives here; conversions to domain
//! types live with the domain types.

/// Generated modules, nested as the proto packages are.
pub mod sdn {
    /// `sdn.southbound.*`.
    pub mod southbound {
        /// `sdn.southbound.v1`.
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("sdn.southbound.v1");
        }
    }
    /// `sdn.management.*`.
    pub mod management {
        /// `sdn.management.v1`.
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("sdn.management.v1");
        }
    }
}

/// The switch protocol, version 1 (`sdn.southbound.v1`).
pub mod southbound {
    pub use crate::sdn::southbound::v1::*;

    /// The protocol version this build speaks.
    pub const VERSION: u32 = ProtocolVersion::ProtocolVersion1 as u32;
}

/// The management API, version 1 (`sdn.management.v1`).
pub mod management {
    pub use crate::sdn::management::v1::*;
}
