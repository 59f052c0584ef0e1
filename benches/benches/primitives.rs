//! The building blocks, one core each: what every PUT and GET pays per byte.

#![allow(clippy::unwrap_used)]

use aws_lc_rs::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use benches::test_data;
use chunker::{Coder, Params};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use md5::{Digest, Md5};
use std::hint::black_box;
use std::time::Duration;

const MIB: usize = 1 << 20;

fn md5(c: &mut Criterion) {
    let data = test_data(8 * MIB, 1);
    let mut g = c.benchmark_group("md5");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("md-5 asm, 8 MiB", |b| {
        b.iter(|| {
            let mut h = Md5::new();
            for chunk in data.chunks(64 * 1024) {
                h.update(chunk);
            }
            black_box(h.finalize())
        })
    });
    g.finish();
}

fn aead(c: &mut Criterion) {
    let block = 64 * 1024 - 16;
    let mut data = test_data(64 * block, 2);
    let mut g = c.benchmark_group("aead 64 KiB blocks");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for (name, alg) in [
        ("aes-256-gcm", &AES_256_GCM),
        ("chacha20-poly1305", &CHACHA20_POLY1305),
    ] {
        let key = LessSafeKey::new(UnboundKey::new(alg, &[7; 32]).unwrap());
        g.bench_function(name, |b| {
            b.iter(|| {
                for (i, chunk) in data.chunks_mut(block).enumerate() {
                    let mut n = [0u8; 12];
                    n[8..].copy_from_slice(&(i as u32).to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(n),
                            Aad::empty(),
                            chunk,
                        )
                        .unwrap();
                    let _ = black_box(tag);
                }
            })
        });
    }
    g.finish();
}

/// What TLS 1.3 with AES-128-GCM (our transport's suite) costs per byte on each side of a
/// connection, with nothing else: sealing 16 KiB records in place, and opening them into another
/// buffer (decryption fused with the one copy a receiver needs). The floor under the transport
/// bench's TLS rows.
fn tls_records(c: &mut Criterion) {
    const RECORD: usize = 16 * 1024;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).unwrap());
    let nonce = |i: usize| {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&(i as u64).to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let mut data = test_data(MIB, 3);
    let mut g = c.benchmark_group("aes-128-gcm, 16 KiB TLS records");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("seal in place", |b| {
        b.iter(|| {
            for (i, record) in data.chunks_mut(RECORD).enumerate() {
                let tag = key
                    .seal_in_place_separate_tag(nonce(i), Aad::empty(), record)
                    .unwrap();
                let _ = black_box(tag);
            }
        })
    });
    let mut sealed = test_data(MIB, 3);
    let tags: Vec<_> = sealed
        .chunks_mut(RECORD)
        .enumerate()
        .map(|(i, record)| {
            key.seal_in_place_separate_tag(nonce(i), Aad::empty(), record)
                .unwrap()
        })
        .collect();
    let mut plain = vec![0u8; MIB];
    g.bench_function("open into another buffer", |b| {
        b.iter(|| {
            for (i, ((record, tag), out)) in sealed
                .chunks(RECORD)
                .zip(&tags)
                .zip(plain.chunks_mut(RECORD))
                .enumerate()
            {
                key.open_separate_gather(nonce(i), Aad::empty(), record, tag.as_ref(), out)
                    .unwrap();
            }
            black_box(&plain);
        })
    });
    g.finish();
}

fn blake3(c: &mut Criterion) {
    let data = test_data(MIB, 3);
    let mut g = c.benchmark_group("blake3");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("1 MiB piece", |b| b.iter(|| black_box(blake3::hash(&data))));
    g.finish();
}

fn reed_solomon(c: &mut Criterion) {
    let mut g = c.benchmark_group("reed-solomon encode, 1 MiB pieces");
    for (k, m) in [(4, 2), (8, 4), (16, 8)] {
        let params = Params::new(k, m, MIB as u64).unwrap();
        let coder = Coder::new(params);
        let mut buf = test_data((k + m) * MIB, 4);
        g.throughput(Throughput::Bytes((k * MIB) as u64));
        g.bench_function(format!("{k}+{m}"), |b| {
            b.iter(|| coder.encode(&mut buf, MIB))
        });
    }
    g.finish();
}

criterion_group! {
    name = primitives;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = md5, aead, tls_records, blake3, reed_solomon
}
criterion_main!(primitives);
