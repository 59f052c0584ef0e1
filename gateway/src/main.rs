//! `gateway`: the S3 endpoint that encrypts, erasure-codes and spreads objects over storage nodes.
//!
//! Planned (see ARCHITECTURE.md): the S3 API (axum + s3s), object metadata in rocksdb, placement,
//! the put/get pipelines on `chunker`, audits, repair and hybrid backends, and `gateway dev`, which
//! starts a whole local network. Until then the binary only says so.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "gateway {}: the gateway is not built yet; this release ships the chunker library only \
         (try `cargo run --release -p chunker --example demo`, see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
