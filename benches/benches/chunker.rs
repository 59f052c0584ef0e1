//! The chunker's pipelines on one core: encode (encrypt + Reed-Solomon + BLAKE3 piece ids),
//! decode (healthy and with m pieces lost), and storage proofs.

#![allow(clippy::unwrap_used)]

use benches::test_data;
use chunker::proof::{prove, verify};
use chunker::{
    Challenge, DataKey, Outboard, Params, PieceId, SegmentDecoder, SegmentEncoder, SegmentInfo,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const CODES: [(usize, usize); 3] = [(4, 2), (8, 4), (16, 8)];

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode pipeline, 1 MiB pieces");
    for (k, m) in CODES {
        let params = Params::new(k, m, MIB).unwrap();
        let input = test_data(params.segment_plaintext_len(), 5);
        let key = DataKey::generate().unwrap();
        let mut enc = SegmentEncoder::new(params, key, 0);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(format!("{k}+{m}"), |b| {
            b.iter(|| {
                let mut rest = &input[..];
                black_box(enc.push(&mut rest).unwrap().unwrap())
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode segment, 1 MiB pieces");
    for (k, m) in CODES {
        let params = Params::new(k, m, MIB).unwrap();
        let input = test_data(params.segment_plaintext_len(), 6);
        let key = DataKey::generate().unwrap();
        let seg = chunker::encode_all(params, &key, 0, &input)
            .unwrap()
            .remove(0);
        let pieces: Vec<_> = seg.pieces().collect();
        let info = SegmentInfo {
            stream: 0,
            index: 0,
            layout: seg.layout(),
            ids: seg.ids(),
        };
        let decoder = SegmentDecoder::new(params, key);
        g.throughput(Throughput::Bytes(input.len() as u64));
        let healthy: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(&p[..])).collect();
        g.bench_function(format!("{k}+{m} healthy"), |b| {
            b.iter(|| black_box(decoder.decode(&info, &healthy).unwrap()))
        });
        // The worst case: m data pieces lost, rebuilt from parity.
        let mut degraded = healthy.clone();
        for p in degraded.iter_mut().take(m) {
            *p = None;
        }
        g.bench_function(format!("{k}+{m} {m} data pieces lost"), |b| {
            b.iter(|| black_box(decoder.decode(&info, &degraded).unwrap()))
        });
    }
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let piece = test_data(MIB as usize, 7);
    let id = PieceId::of(&piece);
    let outboard = Outboard::new(&piece);
    let challenge = Challenge::random(id, MIB, 1).unwrap();
    let proof = prove(&challenge, &piece).unwrap();
    let mut g = c.benchmark_group("proof, 1 chunk of a 1 MiB piece");
    g.throughput(Throughput::Elements(1));
    g.bench_function("prove with outboard", |b| {
        b.iter(|| {
            let read = |r: std::ops::Range<u64>| {
                Ok::<_, ()>(piece[r.start as usize..r.end as usize].to_vec())
            };
            black_box(outboard.prove(&challenge, read).unwrap().unwrap())
        })
    });
    g.bench_function("prove from the piece alone", |b| {
        b.iter(|| black_box(prove(&challenge, &piece).unwrap()))
    });
    g.bench_function("verify", |b| b.iter(|| verify(&challenge, &proof).unwrap()));
    g.finish();
}

criterion_group! {
    name = chunker;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = encode, decode, proofs
}
criterion_main!(chunker);
