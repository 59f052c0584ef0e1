//! `storage-node`: the daemon a node operator runs on a disk, and the wire protocol gateways use
//! to talk to it.
//!
//! - [`store`]: the piece store (rocksdb index + piece files), behind the [`store::PieceStore`]
//!   trait, with an in-memory stand-in for tests.
//! - [`protocol`]: the versioned, size-limited, validated messages between gateway and node, and
//!   their framing on any byte stream. The gateway links this module.
//! - [`config`], [`identity`], [`units`]: the operator's configuration file, the node's ed25519
//!   identity, and human-friendly sizes and durations.

pub mod config;
pub mod identity;
pub mod protocol;
pub mod store;
pub mod units;
