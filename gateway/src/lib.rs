//! `gateway`: the S3 endpoint that keeps objects encrypted, erasure-coded and spread over
//! storage nodes.
//!
//! The layers, top to bottom (see `ARCHITECTURE.md`):
//! - [`s3`]: the S3 protocol adapter (s3s: SigV4, aws-chunked bodies, XML) over
//! - [`objects`]: the object service (PUT and GET pipelines, listings), which uses
//! - [`meta`] (rocksdb: buckets, manifests, keys, nodes, piece queues), [`nodes`] (who is
//!   online, with what space), [`placement`] (which nodes get a segment's pieces) and
//!   [`pieces`] (piece transfers over libp2p, behind a trait).
//! - [`gc`]: the worker that deletes pieces nothing references any more.
//! - [`audit`], [`reputation`], [`repair`]: challenges and verdicts, node scores and states, and
//!   the rebuilding of what is lost (see `docs/audits.md`).
//! - [`hybrid`], [`mirror`], [`tier`]: buckets paired with a bucket on another S3 service
//!   (mirror, fallback, tier), the worker that keeps mirrors up to date and the one that moves
//!   objects to their remote by policy (see `docs/hybrid.md`); [`worker`]: the loop they share.
//! - [`ledger`]: the usage ledger: what each node stored, served and proved per period, signed
//!   by the node and countersigned here.
//! - [`admin`]: `/health`, `/metrics` ([`metrics`]) and the token-protected admin API
//!   (`gateway status` reads it).
//! - [`server`]: the composition root; [`serve`]: HTTP listeners with connection limits and
//!   request-head deadlines; [`dev`]: a whole local network in one command.
//! - [`config`], [`secrets`], [`keys`]: configuration, the master key and identity, access keys.

pub mod admin;
pub mod audit;
pub mod census;
pub mod config;
pub mod dev;
pub mod digest;
pub mod gc;
pub mod hybrid;
pub mod keys;
pub mod ledger;
pub mod meta;
pub mod metrics;
pub mod mirror;
pub mod nodes;
pub mod objects;
pub mod pieces;
pub mod placement;
pub mod repair;
pub mod reputation;
pub mod s3;
pub mod secrets;
pub mod serve;
pub mod server;
pub mod tier;
pub mod time;
pub mod worker;
