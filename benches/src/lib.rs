//! Benchmarks: `cargo bench -p benches` runs the criterion benches in `benches/benches/`:
//! - `primitives`: the building blocks in isolation (MD5 for ETags, AES-256-GCM against
//!   ChaCha20-Poly1305, BLAKE3, Reed-Solomon striped and whole-piece);
//! - `chunker`: the encode pipeline (encrypt + code + hash), decoding healthy and degraded, and
//!   storage proofs.
//!
//! The end-to-end load bench against a running network comes with the gateway's benchmarks.
//! Test data comes from the `tests` crate's generator, so both sides agree on it.

pub use tests::test_bytes as test_data;
