//! `storage-node`: the daemon a node operator runs on a disk.
//!
//! Planned (see ARCHITECTURE.md): a rocksdb piece store, the node side of the wire protocol over
//! libp2p, storage proofs answered with `chunker::proof`, and the operator CLI
//! (`init`, `run`, `status`, `id`). Until then the binary only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "storage-node {}: the node daemon is not built yet; this release ships the chunker \
         library only (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
