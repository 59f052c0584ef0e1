//! A tour of the chunker on a file of yours (or 32 MiB of generated data):
//! encrypt, segment and code it, lose `m` pieces of every segment, decode it back, check the bytes,
//! and audit one piece with a storage proof.
//!
//! ```text
//! cargo run --release -p chunker --example demo -- [FILE] [--k 4] [--m 2] [--piece-kib 1024]
//! ```
//!
//! The pieces are kept in memory for the decode step, so use it on files that fit.

#![allow(clippy::print_stdout)]

use std::io::Read;
use std::time::Instant;

use chunker::proof::{prove, verify};
use chunker::{Challenge, DataKey, MasterKey, Params, SegmentDecoder, SegmentEncoder, SegmentInfo};

struct Args {
    file: Option<String>,
    k: usize,
    m: usize,
    piece_kib: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        file: None,
        k: 4,
        m: 2,
        piece_kib: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or(format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match a.as_str() {
            "--k" => args.k = value("--k")? as usize,
            "--m" => args.m = value("--m")? as usize,
            "--piece-kib" => args.piece_kib = value("--piece-kib")?,
            "-h" | "--help" => {
                return Err("usage: demo [FILE] [--k 4] [--m 2] [--piece-kib 1024]".into())
            }
            f if !f.starts_with('-') && args.file.is_none() => args.file = Some(f.to_string()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let params = Params::new(args.k, args.m, args.piece_kib * 1024)?;
    let mut source: Box<dyn Read> = match &args.file {
        Some(path) => Box::new(std::fs::File::open(path)?),
        None => Box::new(Generated(0x9e3779b97f4a7c15).take(32 << 20)),
    };

    let master = MasterKey::from_bytes(&MasterKey::generate_bytes()?)?;
    let key = DataKey::generate()?;
    let wrapped = master.wrap(&key)?;
    println!(
        "code {}+{}, {} KiB pieces, {} plaintext bytes per segment",
        params.k(),
        params.m(),
        args.piece_kib,
        params.segment_plaintext_len()
    );

    // Encode while reading, 256 KiB at a time.
    let started = Instant::now();
    let mut encoder = SegmentEncoder::new(params, key.clone(), 0);
    let mut segments = Vec::new();
    let mut input_hash = blake3::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        input_hash.update(&buf[..n]);
        size += n as u64;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            segments.extend(encoder.push(&mut rest)?);
        }
    }
    segments.extend(encoder.finish()?);
    let encode_time = started.elapsed();
    let stored: usize = segments
        .iter()
        .map(|s| s.layout().piece_len() * params.total())
        .sum();
    println!(
        "encoded {size} bytes into {} segments, {} pieces, {stored} bytes stored ({:.2}x) in {:.0?}",
        segments.len(),
        segments.len() * params.total(),
        stored as f64 / size.max(1) as f64,
        encode_time
    );

    // Lose m pieces of every segment (a different m each time), then decode.
    let started = Instant::now();
    let decoder = SegmentDecoder::new(params, master.unwrap(&wrapped)?);
    let mut output_hash = blake3::Hasher::new();
    for seg in &segments {
        let pieces: Vec<_> = seg.pieces().collect();
        let first_lost = seg.index() as usize % params.total();
        let have: Vec<Option<&[u8]>> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let lost = (i + params.total() - first_lost) % params.total() < params.m();
                (!lost).then_some(&p[..])
            })
            .collect();
        let info = SegmentInfo {
            stream: 0,
            index: seg.index(),
            layout: seg.layout(),
            ids: seg.ids(),
        };
        output_hash.update(&decoder.decode(&info, &have)?.plaintext);
    }
    let same = input_hash.finalize() == output_hash.finalize();
    println!(
        "decoded with {} of {} pieces lost per segment in {:.0?}: {}",
        params.m(),
        params.total(),
        started.elapsed(),
        if same { "bytes identical" } else { "MISMATCH" }
    );

    // Audit the first parity piece of the first segment.
    if let Some(seg) = segments.first() {
        let piece = seg.piece(params.k());
        let id = seg.ids()[params.k()];
        let challenge = Challenge::random(id, piece.len() as u64, 4)?;
        let proof = prove(&challenge, &piece)?;
        let size = postcard::to_stdvec(&proof)?.len();
        verify(&challenge, &proof)?;
        println!(
            "audit of piece {id}: chunks {:?} proven with a {size}-byte proof, verified from the id alone",
            challenge.indices()
        );
    }
    if same {
        Ok(())
    } else {
        Err("decoded bytes differ".into())
    }
}

/// An endless stream of pseudo-random bytes.
struct Generated(u64);

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
        Ok(buf.len())
    }
}
