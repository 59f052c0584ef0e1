//! Benchmarks: `cargo bench -p benches` runs the criterion benches in `benches/benches/`:
//! - `primitives`: the building blocks in isolation (MD5 for ETags, AES-256-GCM against
//!   ChaCha20-Poly1305, BLAKE3, Reed-Solomon striped and whole-piece);
//! - `chunker`: the encode pipeline (encrypt + code + hash), decoding healthy and degraded, and
//!   storage proofs.
//!
//! The end-to-end load bench against a running network lands with the gateway.

/// Deterministic incompressible test data.
pub fn test_data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
