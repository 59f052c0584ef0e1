//! `storage-node`: the daemon a node operator runs on a disk, and the wire protocol gateways use
//! to talk to it.
//!
//! - [`store`]: the piece store (rocksdb index + piece files), behind the [`store::PieceStore`]
//!   trait, with an in-memory stand-in for tests.
//! - [`protocol`]: the versioned, size-limited, validated messages between gateway and node, and
//!   their framing on any byte stream. The gateway links this module.
//! - [`net`]: the libp2p host (TCP, TLS or Noise, Yamux) owned by one task, with a handle.
//! - [`node`]: the node side: serving authorized gateways, keeping registered with them.
//! - [`metrics`]: `/metrics` (Prometheus) and `/health` on `metrics_listen`.
//! - [`scrub`]: the background re-hash of every piece; rot is reported to the gateway.
//! - [`daemon`]: `storage-node run`, the composition root.
//! - [`ledger`]: the usage ledger: the node's signed receipts of what it did for a gateway, and
//!   the statements the gateway countersigns.
//! - [`client`]: the gateway side: pooled calls to nodes, accepting registrations.
//! - [`progress`]: the progress line of long operator commands.
//! - [`config`], [`identity`], [`units`]: the operator's configuration file, the node's ed25519
//!   identity, and human-friendly sizes and durations.

pub mod client;
pub mod config;
pub mod daemon;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod net;
pub mod node;
pub mod progress;
pub mod protocol;
pub mod scrub;
pub mod store;
pub mod units;
