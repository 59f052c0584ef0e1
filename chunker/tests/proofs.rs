//! Storage proofs: every chunk position proves and verifies, and every kind of tampering is
//! rejected. The oracle for the tree itself is `blake3::hash`.

#![allow(clippy::unwrap_used)]

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use chunker::proof::{
    chunk_count, prove, transcript_hash, verify, ChallengeError, ProofError, CHUNK_LEN,
    MAX_CHALLENGE_CHUNKS,
};
use chunker::{Challenge, Outboard, PieceId, Proof};
use proptest::prelude::*;

fn piece(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// A naive recursive BLAKE3 tree, written from the paper's rule (left subtree = largest power of
/// two chunks strictly below the total). If it agrees with `blake3::hash`, the tree shape our
/// proofs assume is BLAKE3's.
fn naive_root(data: &[u8]) -> blake3::Hash {
    fn cv(data: &[u8], offset: u64) -> ChainingValue {
        let chunks = data.len().div_ceil(CHUNK_LEN).max(1);
        if chunks == 1 {
            return blake3::Hasher::new()
                .set_input_offset(offset)
                .update(data)
                .finalize_non_root();
        }
        let left = chunks.next_power_of_two() / 2 * CHUNK_LEN;
        merge_subtrees_non_root(
            &cv(&data[..left], offset),
            &cv(&data[left..], offset + left as u64),
            Mode::Hash,
        )
    }
    let chunks = data.len().div_ceil(CHUNK_LEN).max(1);
    if chunks == 1 {
        return blake3::hash(data);
    }
    let left = chunks.next_power_of_two() / 2 * CHUNK_LEN;
    merge_subtrees_root(
        &cv(&data[..left], 0),
        &cv(&data[left..], left as u64),
        Mode::Hash,
    )
}

const LENGTHS: &[usize] = &[
    1,
    100,
    1023,
    1024,
    1025,
    2048,
    3000,
    16 * 1024 - 1,
    16 * 1024,
    16 * 1024 + 1,
    17 * 1024 + 5,
    32 * 1024,
    100_000,
    (1 << 20) - 3,
    1 << 20,
];

#[test]
fn the_naive_tree_is_blake3() {
    for &len in LENGTHS {
        let p = piece(len);
        assert_eq!(naive_root(&p), blake3::hash(&p), "len {len}");
    }
}

#[test]
fn every_chunk_of_every_shape_proves_and_verifies() {
    for &len in LENGTHS {
        let p = piece(len);
        let id = PieceId::of(&p);
        let n = chunk_count(len as u64) as u32;
        for i in 0..n {
            let c = Challenge::new(id, len as u64, vec![i], [9; 32]).unwrap();
            let proof = prove(&c, &p).unwrap();
            assert_eq!(verify(&c, &proof), Ok(()), "len {len} chunk {i}");
        }
        // Several chunks at once: first, middle, last.
        let mut idx = vec![0, n / 2, n - 1];
        idx.dedup();
        let c = Challenge::new(id, len as u64, idx, [1; 32]).unwrap();
        verify(&c, &prove(&c, &p).unwrap()).unwrap();
    }
}

#[test]
fn the_outboard_proves_the_same_as_the_whole_piece() {
    for &len in LENGTHS {
        let p = piece(len);
        let id = PieceId::of(&p);
        let ob = Outboard::new(&p);
        if len > 16 * 1024 {
            assert_eq!(ob.root(), Some(id), "len {len}");
        }
        let stored = Outboard::from_bytes(len as u64, &ob.to_bytes()).unwrap();
        assert_eq!(stored, ob);
        assert!(Outboard::from_bytes(len as u64, &[0; 31]).is_err() || len <= 16 * 1024);
        let c = Challenge::random(id, len as u64, 8).unwrap();
        let mut reads = Vec::new();
        let proof = ob
            .prove(&c, |r| {
                reads.push(r.clone());
                Ok::<_, ()>(p[r.start as usize..r.end as usize].to_vec())
            })
            .unwrap()
            .unwrap();
        assert_eq!(proof, prove(&c, &p).unwrap());
        verify(&c, &proof).unwrap();
        // Only the 16 KiB blocks around the challenged chunks are read.
        assert!(reads.iter().all(|r| r.end - r.start <= 16 * 1024));
    }
}

#[test]
fn a_one_mib_piece_proves_one_chunk_in_under_2_kib() {
    let p = piece(1 << 20);
    let c = Challenge::random(PieceId::of(&p), 1 << 20, 1).unwrap();
    let proof = prove(&c, &p).unwrap();
    let size = postcard::to_stdvec(&proof).unwrap().len();
    assert!(size <= 2048, "{size} bytes");
    assert_eq!(proof.chunks[0].siblings.len(), 10);
}

fn challenge_and_proof(len: usize, idx: Vec<u32>) -> (Vec<u8>, Challenge, Proof) {
    let p = piece(len);
    let c = Challenge::new(PieceId::of(&p), len as u64, idx, [3; 32]).unwrap();
    let proof = prove(&c, &p).unwrap();
    (p, c, proof)
}

#[test]
fn any_flipped_byte_in_a_proof_is_rejected() {
    for len in [700, 1024, 5000, 40_000] {
        let n = chunk_count(len as u64) as u32;
        let mut idx = vec![0, n - 1];
        idx.dedup();
        let (_, c, proof) = challenge_and_proof(len, idx);
        for (ci, chunk) in proof.chunks.iter().enumerate() {
            for pos in 0..chunk.data.len() {
                let mut bad = proof.clone();
                bad.chunks[ci].data[pos] ^= 0x20;
                assert_eq!(
                    verify(&c, &bad),
                    Err(ProofError::RootMismatch { index: chunk.index }),
                    "len {len} data byte {pos}"
                );
            }
            for s in 0..chunk.siblings.len() {
                for pos in [0, 13, 31] {
                    let mut bad = proof.clone();
                    bad.chunks[ci].siblings[s][pos] ^= 1;
                    assert!(verify(&c, &bad).is_err(), "len {len} sibling {s}");
                }
            }
        }
    }
}

#[test]
fn malformed_proofs_are_rejected_with_the_reason() {
    let (p, c, proof) = challenge_and_proof(40_000, vec![2, 30]);
    // Wrong root.
    let other = Challenge::new(PieceId::of(b"x"), 40_000, vec![2, 30], [3; 32]).unwrap();
    assert!(matches!(
        verify(&other, &proof),
        Err(ProofError::RootMismatch { .. })
    ));
    // Proof of other chunks than asked.
    let (_, _, wrong) = challenge_and_proof(40_000, vec![2, 31]);
    assert!(matches!(
        verify(&c, &wrong),
        Err(ProofError::WrongIndex { position: 1, .. })
    ));
    // Chunks swapped.
    let mut swapped = proof.clone();
    swapped.chunks.swap(0, 1);
    assert!(matches!(
        verify(&c, &swapped),
        Err(ProofError::WrongIndex { .. })
    ));
    // Relabelled: right bytes, wrong index claim.
    let mut relabelled = proof.clone();
    relabelled.chunks[0].index = 3;
    assert!(verify(&c, &relabelled).is_err());
    // Missing and extra chunk entries.
    let mut short = proof.clone();
    short.chunks.pop();
    assert!(matches!(
        verify(&c, &short),
        Err(ProofError::ChunkCount { .. })
    ));
    let mut long = proof.clone();
    long.chunks.push(proof.chunks[0].clone());
    assert!(matches!(
        verify(&c, &long),
        Err(ProofError::ChunkCount { .. })
    ));
    // Missing, extra and truncated data.
    let mut fewer = proof.clone();
    fewer.chunks[0].siblings.pop();
    assert!(matches!(
        verify(&c, &fewer),
        Err(ProofError::SiblingCount { .. })
    ));
    let mut more = proof.clone();
    more.chunks[0].siblings.push([0; 32]);
    assert!(matches!(
        verify(&c, &more),
        Err(ProofError::SiblingCount { .. })
    ));
    let mut cut = proof.clone();
    cut.chunks[1].data.truncate(100);
    assert!(matches!(
        verify(&c, &cut),
        Err(ProofError::ChunkLength { .. })
    ));
    // The length is bound through the last chunk: a proof that includes it fails for any other
    // length. (Inner chunks sit at the same offset under the same root whatever the length.)
    let (_, last, last_proof) = challenge_and_proof(40_000, vec![2, 39]);
    verify(&last, &last_proof).unwrap();
    for len in [39_937, 39_999, 40_001, 41_000, 80_000] {
        let other = Challenge::new(PieceId::of(&p), len, vec![2, 39], [3; 32]).unwrap();
        assert!(verify(&other, &last_proof).is_err(), "len {len}");
    }
    let longer = Challenge::new(PieceId::of(&p), 41_000, vec![2, 30], [3; 32]).unwrap();
    // The whole piece in memory but a challenge for another length.
    assert!(matches!(
        prove(&longer, &p),
        Err(ProofError::PieceLength { .. })
    ));
}

#[test]
fn challenges_are_validated() {
    let id = PieceId::of(b"p");
    assert_eq!(
        Challenge::new(id, 0, vec![0], [0; 32]),
        Err(ChallengeError::PieceLength { len: 0 })
    );
    assert!(Challenge::new(id, u64::MAX, vec![0], [0; 32]).is_err());
    assert_eq!(
        Challenge::new(id, 2048, vec![], [0; 32]),
        Err(ChallengeError::ChunkCount { count: 0 })
    );
    assert_eq!(
        Challenge::new(id, 2048, vec![2], [0; 32]),
        Err(ChallengeError::IndexOutOfRange {
            index: 2,
            chunks: 2
        })
    );
    assert_eq!(
        Challenge::new(id, 4096, vec![1, 1], [0; 32]),
        Err(ChallengeError::Unsorted)
    );
    assert_eq!(
        Challenge::new(id, 4096, vec![2, 1], [0; 32]),
        Err(ChallengeError::Unsorted)
    );
    let many: Vec<u32> = (0..=MAX_CHALLENGE_CHUNKS as u32).collect();
    assert!(Challenge::new(id, 1 << 20, many, [0; 32]).is_err());
    // Decoding goes through the same checks.
    let good = Challenge::new(id, 4096, vec![1, 3], [0; 32]).unwrap();
    let mut bytes = postcard::to_stdvec(&good).unwrap();
    assert_eq!(postcard::from_bytes::<Challenge>(&bytes).unwrap(), good);
    let last_index_pos = 32 + 2 + 1 + 1; // id, varint len 4096, vec len, first index
    bytes[last_index_pos] = 9;
    assert!(postcard::from_bytes::<Challenge>(&bytes).is_err());
}

#[test]
fn random_challenges_are_fresh_and_in_range() {
    let id = PieceId::of(b"p");
    let a = Challenge::random(id, 1 << 20, 4).unwrap();
    let b = Challenge::random(id, 1 << 20, 4).unwrap();
    assert_ne!(a.nonce(), b.nonce());
    assert_eq!(a.indices().len(), 4);
    assert!(a.indices().windows(2).all(|w| w[0] < w[1]));
    // Fewer chunks than asked: all of them.
    let small = Challenge::random(id, 3000, 8).unwrap();
    assert_eq!(small.indices(), &[0, 1, 2]);
    // Every chunk of a small piece gets picked eventually (uniform draw, no stuck index).
    let mut seen = [false; 8];
    for _ in 0..400 {
        let c = Challenge::random(id, 8 * 1024, 1).unwrap();
        seen[c.indices()[0] as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn the_transcript_hash_binds_challenge_and_proof() {
    let (_, c, proof) = challenge_and_proof(5000, vec![1]);
    let h = transcript_hash(&c, &proof);
    let other_nonce = Challenge::new(c.piece_id(), 5000, vec![1], [4; 32]).unwrap();
    assert_ne!(h, transcript_hash(&other_nonce, &proof));
    let mut other_proof = proof.clone();
    other_proof.chunks[0].data[0] ^= 1;
    assert_ne!(h, transcript_hash(&c, &other_proof));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_pieces_prove_random_chunks(len in 1usize..300_000, picks in prop::collection::vec(any::<prop::sample::Index>(), 1..6)) {
        let p = piece(len);
        let n = chunk_count(len as u64) as usize;
        let mut idx: Vec<u32> = picks.iter().map(|i| i.index(n) as u32).collect();
        idx.sort_unstable();
        idx.dedup();
        let c = Challenge::new(PieceId::of(&p), len as u64, idx, [5; 32]).unwrap();
        let proof = prove(&c, &p).unwrap();
        prop_assert_eq!(verify(&c, &proof), Ok(()));
        // A proof made from a piece differing in one byte never verifies against the original id.
        let mut q = p.clone();
        let flip = len / 2;
        q[flip] ^= 0x10;
        let chunk_of_flip = (flip / CHUNK_LEN) as u32;
        if c.indices().contains(&chunk_of_flip) {
            let forged = prove(&Challenge::new(PieceId::of(&q), len as u64, c.indices().to_vec(), [5; 32]).unwrap(), &q).unwrap();
            prop_assert!(verify(&c, &forged).is_err());
        }
    }
}

#[test]
fn spans_verify_against_the_outboard_and_catch_rot() {
    for len in [100, 16 * 1024, 16 * 1024 + 1, 50_000, 1 << 20] {
        let p = piece(len);
        let id = PieceId::of(&p);
        let ob = Outboard::new(&p);
        for range in [
            0..1,
            0..len as u64,
            len as u64 / 3..len as u64 / 2 + 1,
            len as u64 - 1..len as u64,
        ] {
            let span = ob.covering_blocks(range.clone());
            assert!(
                span.start <= range.start && span.end >= range.end,
                "len {len} {range:?}"
            );
            let bytes = &p[span.start as usize..span.end as usize];
            ob.verify_span(&id, span.start, bytes).unwrap();
            let mut rotten = bytes.to_vec();
            let at = rotten.len() / 2;
            rotten[at] ^= 4;
            assert!(
                ob.verify_span(&id, span.start, &rotten).is_err(),
                "len {len} {range:?}"
            );
        }
        if len > 16 * 1024 {
            // Not starting on a block boundary, or running past the piece.
            assert!(ob.verify_span(&id, 5, &p[5..16 * 1024]).is_err());
            assert!(ob.verify_span(&id, 0, &[0; 17]).is_err());
        } else {
            assert!(ob.verify_span(&id, 0, &p[..len - 1]).is_err());
        }
    }
}

#[test]
fn a_verified_outboard_accepts_only_the_named_piece() {
    for &len in LENGTHS {
        let p = piece(len);
        let id = PieceId::of(&p);
        assert_eq!(
            Outboard::verified(&id, &p).unwrap(),
            Outboard::new(&p),
            "len {len}"
        );
        let mut q = p.clone();
        q[len / 2] ^= 1;
        let err = Outboard::verified(&id, &q).unwrap_err();
        assert_eq!(
            (err.expected, err.actual),
            (id, PieceId::of(&q)),
            "len {len}"
        );
    }
}
