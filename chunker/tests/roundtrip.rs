//! Encode → lose pieces → decode, checked against the simplest possible oracle: the input itself,
//! cut naively into segment-sized slices.

#![allow(clippy::unwrap_used)]

use chunker::decoder::DecodeError;
use chunker::layout::SegmentLayout;
use chunker::{
    encode_all, DataKey, EncodedSegment, Params, PieceId, RangePlan, SegmentDecoder,
    SegmentEncoder, SegmentInfo,
};
use proptest::prelude::*;

fn data(len: usize, seed: u64) -> Vec<u8> {
    // xorshift: cheap, deterministic, not compressible into a pattern RS could hide bugs behind.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn info(seg: &EncodedSegment) -> SegmentInfo<'_> {
    SegmentInfo {
        stream: seg.stream(),
        index: seg.index(),
        layout: seg.layout(),
        ids: seg.ids(),
    }
}

/// Decodes every segment with the pieces in `lost(segment_index)` withheld.
fn decode_with_losses(
    params: Params,
    key: &DataKey,
    segments: &[EncodedSegment],
    lost: impl Fn(usize) -> Vec<usize>,
) -> Result<Vec<u8>, DecodeError> {
    let decoder = SegmentDecoder::new(params, key.clone());
    let mut out = Vec::new();
    for (s, seg) in segments.iter().enumerate() {
        let pieces: Vec<_> = seg.pieces().collect();
        let lost = lost(s);
        let have: Vec<Option<&[u8]>> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (!lost.contains(&i)).then_some(&p[..]))
            .collect();
        let decoded = decoder.decode(&info(seg), &have)?;
        assert!(decoded.rejected.is_empty());
        out.extend(decoded.plaintext);
    }
    Ok(out)
}

/// Every subset of `0..n` with at most `max` elements.
fn subsets_up_to(n: usize, max: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for i in 0..n {
        let mut more = Vec::new();
        for s in &out {
            if s.len() < max {
                let mut t = s.clone();
                t.push(i);
                more.push(t);
            }
        }
        out.extend(more);
    }
    out
}

fn binomial_sum(n: usize, max: usize) -> usize {
    let mut total = 0usize;
    let mut c = 1usize;
    for r in 0..=max {
        total += c;
        c = c * (n - r) / (r + 1);
    }
    total
}

/// A deterministic sample of loss patterns of 1 ..= m pieces out of k + m, plus the structured
/// extremes: none, the first m (all data when m ≥ k), the last m (all parity).
fn sampled_patterns(k: usize, m: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let n = k + m;
    let mut out = vec![vec![], (0..m).collect(), (n - m..n).collect()];
    let mut rng = data(8 * count + 64, seed).into_iter().cycle();
    for _ in 0..count {
        let size = 1 + rng.next().unwrap_or(0) as usize % m;
        let mut set = Vec::new();
        while set.len() < size {
            let i = rng.next().unwrap_or(0) as usize % n;
            if !set.contains(&i) {
                set.push(i);
            }
        }
        out.push(set);
    }
    out
}

/// Up to this many loss patterns per code are tried exhaustively (this covers every code up to
/// 16+4 and 10+6, and 8+4 in particular); larger codes get a sample.
const EXHAUSTIVE_LIMIT: usize = 20_000;

#[test]
fn every_k_and_m_survives_every_loss_of_up_to_m_pieces() {
    let key = DataKey::generate().unwrap();
    for k in 1..=16 {
        for m in 1..=8 {
            let params = Params::new(k, m, 1024).unwrap();
            let seg = params.segment_plaintext_len();
            // One full segment against every loss pattern (or a large sample of them).
            let patterns = if binomial_sum(k + m, m) <= EXHAUSTIVE_LIMIT {
                subsets_up_to(k + m, m)
            } else {
                sampled_patterns(k, m, 2000, (k * 31 + m) as u64)
            };
            let input = data(seg, (k * 100 + m) as u64);
            let segments = encode_all(params, &key, 0, &input).unwrap();
            for pattern in &patterns {
                let out = decode_with_losses(params, &key, &segments, |_| pattern.clone())
                    .unwrap_or_else(|e| panic!("k={k} m={m} lost {pattern:?}: {e}"));
                assert!(out == input, "k={k} m={m} lost {pattern:?}");
            }
            // Every boundary length, each segment losing a different sampled pattern.
            let few = sampled_patterns(k, m, 12, (k * 7 + m) as u64);
            for len in [0, 1, seg - 1, seg, seg + 1, 3 * seg + 7] {
                let input = data(len, (k * 100 + m + len) as u64);
                let segments = encode_all(params, &key, 0, &input).unwrap();
                // The naive oracle: segment lengths are the input cut into segment-sized slices.
                let expected: Vec<usize> = input.chunks(seg).map(|c| c.len()).collect();
                let got: Vec<usize> = segments.iter().map(|s| s.layout().plain_len()).collect();
                assert_eq!(got, expected, "k={k} m={m} len={len}");
                for shift in 0..few.len() {
                    let lost = |s: usize| few[(s + shift) % few.len()].clone();
                    let out = decode_with_losses(params, &key, &segments, lost)
                        .unwrap_or_else(|e| panic!("k={k} m={m} len={len} shift {shift}: {e}"));
                    assert!(out == input, "k={k} m={m} len={len} shift {shift}");
                }
            }
        }
    }
}

#[test]
fn losing_more_than_m_pieces_is_a_clear_error() {
    let key = DataKey::generate().unwrap();
    for (k, m) in [(1, 1), (4, 2), (8, 4), (16, 8)] {
        let params = Params::new(k, m, 1024).unwrap();
        let input = data(5000, 9);
        let segments = encode_all(params, &key, 0, &input).unwrap();
        let err = decode_with_losses(params, &key, &segments, |_| (0..=m).collect()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooFewPieces {
                needed: k,
                available: k - 1,
                rejected: vec![]
            }
        );
    }
}

#[test]
fn corrupt_pieces_are_rejected_never_decoded() {
    let key = DataKey::generate().unwrap();
    let params = Params::new(4, 2, 4096).unwrap();
    let input = data(10_000, 3);
    let segments = encode_all(params, &key, 0, &input).unwrap();
    let seg = &segments[0];
    let decoder = SegmentDecoder::new(params, key.clone());
    let original: Vec<Vec<u8>> = seg.pieces().map(|p| p.to_vec()).collect();
    for bad in 0..6 {
        for pos in [0, 1, original[bad].len() / 2, original[bad].len() - 1] {
            let mut pieces = original.clone();
            pieces[bad][pos] ^= 1;
            let have: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(&p[..])).collect();
            let out = decoder.decode(&info(seg), &have).unwrap();
            assert_eq!(out.plaintext, input[..seg.layout().plain_len()]);
            // A corrupt parity piece is only seen when parity is needed; data pieces always are.
            if bad < 4 {
                assert_eq!(out.rejected, vec![bad]);
            }
            // With the decode forced through parity, the corrupt piece is always caught.
            let mut have = have.clone();
            have[(bad + 1) % 4] = None;
            let out = decoder.decode(&info(seg), &have).unwrap();
            assert_eq!(out.plaintext, input[..seg.layout().plain_len()]);
            assert_eq!(out.rejected, vec![bad], "piece {bad} byte {pos}");
        }
    }
    // Three bad pieces out of 4+2: not enough left, and the error says which were rejected.
    let mut pieces = original.clone();
    for p in [0, 2, 5] {
        pieces[p][7] ^= 0x80;
    }
    let have: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(&p[..])).collect();
    let err = decoder.decode(&info(seg), &have).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooFewPieces {
            needed: 4,
            available: 3,
            rejected: vec![0, 2, 5]
        }
    );
    // A truncated piece is rejected the same way.
    let mut have: Vec<Option<&[u8]>> = original.iter().map(|p| Some(&p[..])).collect();
    have[1] = Some(&original[1][..10]);
    assert_eq!(decoder.decode(&info(seg), &have).unwrap().rejected, vec![1]);
}

#[test]
fn a_changed_ciphertext_byte_fails_authentication_even_with_matching_ids() {
    // If piece ids were forged to match tampered pieces, the AEAD still catches every change.
    let key = DataKey::generate().unwrap();
    let params = Params::new(2, 1, 1024).unwrap();
    let input = data(1500, 5);
    let seg = &encode_all(params, &key, 0, &input).unwrap()[0];
    let decoder = SegmentDecoder::new(params, key);
    let ct_len = seg.layout().ciphertext_len();
    let piece_len = seg.layout().piece_len();
    for pos in 0..ct_len {
        let mut pieces: Vec<Vec<u8>> = seg.pieces().map(|p| p.to_vec()).collect();
        pieces[pos / piece_len][pos % piece_len] ^= 0x01;
        let ids: Vec<PieceId> = pieces.iter().map(|p| PieceId::of(p)).collect();
        let have: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(&p[..])).collect();
        let info = SegmentInfo {
            ids: &ids,
            ..info(seg)
        };
        assert!(
            matches!(decoder.decode(&info, &have), Err(DecodeError::Crypto(_))),
            "byte {pos}"
        );
    }
    // The same segment claimed at another position (index or stream) fails too.
    let pieces: Vec<_> = seg.pieces().collect();
    let have: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(&p[..])).collect();
    for moved in [
        SegmentInfo {
            index: 1,
            ..info(seg)
        },
        SegmentInfo {
            stream: 7,
            ..info(seg)
        },
    ] {
        assert!(matches!(
            decoder.decode(&moved, &have),
            Err(DecodeError::Crypto(_))
        ));
    }
    let other_key = SegmentDecoder::new(params, DataKey::generate().unwrap());
    assert!(matches!(
        other_key.decode(&info(seg), &have),
        Err(DecodeError::Crypto(_))
    ));
}

#[test]
fn rebuild_restores_every_lost_piece_exactly() {
    let key = DataKey::generate().unwrap();
    let params = Params::new(4, 2, 2048).unwrap();
    let input = data(20_000, 11);
    let decoder = SegmentDecoder::new(params, key.clone());
    for seg in &encode_all(params, &key, 0, &input).unwrap() {
        let pieces: Vec<_> = seg.pieces().collect();
        for lost in subsets_up_to(6, 2) {
            let have: Vec<Option<&[u8]>> = pieces
                .iter()
                .enumerate()
                .map(|(i, p)| (!lost.contains(&i)).then_some(&p[..]))
                .collect();
            let rebuilt = decoder.rebuild(&info(seg), &have).unwrap();
            for (i, p) in pieces.iter().enumerate() {
                assert_eq!(rebuilt.piece(i), &p[..], "lost {lost:?}, piece {i}");
            }
        }
    }
}

#[test]
fn a_streamed_object_is_cut_as_soon_as_a_segment_fills() {
    let params = Params::new(3, 2, 1024).unwrap();
    let seg = params.segment_plaintext_len();
    let mut enc = SegmentEncoder::new(params, DataKey::generate().unwrap(), 0);
    let input = data(50 * seg + 17, 2);
    let (mut pushed, mut emitted) = (0usize, 0usize);
    for piece in input.chunks(333) {
        let mut rest = piece;
        while !rest.is_empty() {
            let before = rest.len();
            if let Some(s) = enc.push(&mut rest).unwrap() {
                emitted += s.layout().plain_len();
            }
            pushed += before - rest.len();
            // Bounded memory: never more than one segment of plaintext held back.
            assert!(pushed - emitted < seg, "holding {} bytes", pushed - emitted);
        }
    }
    emitted += enc.finish().unwrap().map_or(0, |s| s.layout().plain_len());
    assert_eq!(emitted, input.len());
}

#[test]
fn default_parameters_round_trip_a_multi_segment_object() {
    let key = DataKey::generate().unwrap();
    let params = Params::default();
    let input = data(2 * params.segment_plaintext_len() + 12345, 77);
    let segments = encode_all(params, &key, 0, &input).unwrap();
    assert_eq!(segments.len(), 3);
    assert_eq!(segments[0].layout().piece_len(), 1 << 20);
    let out = decode_with_losses(params, &key, &segments, |s| vec![s % 6, (s + 3) % 6]).unwrap();
    assert!(out == input);
}

/// Reads `range` of the object the way a healthy range GET does: only the data-piece slices the
/// plan names, decrypted block by block.
fn range_read(
    decoder: &SegmentDecoder,
    segments: &[EncodedSegment],
    seg_plain: usize,
    range: std::ops::Range<usize>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = range.start;
    while pos < range.end {
        let s = pos / seg_plain;
        let seg = &segments[s];
        let within = pos - s * seg_plain..(range.end - s * seg_plain).min(seg.layout().plain_len());
        let plan = RangePlan::new(&seg.layout(), within.clone()).unwrap();
        let mut ciphertext = Vec::new();
        for slice in &plan.slices {
            ciphertext.extend_from_slice(&seg.piece(slice.piece)[slice.range.clone()]);
        }
        out.extend(
            decoder
                .decrypt_range(&info(seg), &plan, ciphertext)
                .unwrap(),
        );
        pos = s * seg_plain + within.end;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_objects_round_trip(k in 1usize..=16, m in 1usize..=8, kib in 1u64..=8, len in 0usize..200_000, seed: u64, lost_seed: u64) {
        let params = Params::new(k, m, kib * 1024).unwrap();
        let key = DataKey::generate().unwrap();
        let input = data(len, seed);
        let segments = encode_all(params, &key, 0, &input).unwrap();
        let out = decode_with_losses(params, &key, &segments, |s| {
            let mut lost: Vec<usize> = Vec::new();
            let mut x = lost_seed.wrapping_add(s as u64) | 1;
            while lost.len() < m {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                let i = (x % (k + m) as u64) as usize;
                if !lost.contains(&i) { lost.push(i); }
            }
            lost
        }).unwrap();
        prop_assert!(out == input);
    }

    #[test]
    fn range_reads_match_slicing(k in 1usize..=6, m in 1usize..=3, big in any::<bool>(), len in 1usize..400_000, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        // Both small pieces (blocks straddle pieces) and 64 KiB pieces (blocks align with pieces).
        let params = Params::new(k, m, if big { 64 * 1024 } else { 3 * 1024 }).unwrap();
        let key = DataKey::generate().unwrap();
        let input = data(len, len as u64);
        let segments = encode_all(params, &key, 0, &input).unwrap();
        let (x, y) = (a.index(len), b.index(len));
        let range = x.min(y)..x.max(y) + 1;
        let decoder = SegmentDecoder::new(params, key);
        let got = range_read(&decoder, &segments, params.segment_plaintext_len(), range.clone());
        prop_assert!(got == input[range.clone()], "range {:?}", range);
    }
}

#[test]
fn range_plans_are_refused_when_they_do_not_fit() {
    let params = Params::new(2, 1, 1024).unwrap();
    let key = DataKey::generate().unwrap();
    let seg = &encode_all(params, &key, 0, &data(1000, 1)).unwrap()[0];
    let layout: SegmentLayout = seg.layout();
    assert!(RangePlan::new(&layout, 0..1001).is_err());
    assert!(RangePlan::new(&layout, 10..10).is_err());
    let decoder = SegmentDecoder::new(params, key);
    let plan = RangePlan::new(&layout, 0..10).unwrap();
    assert!(matches!(
        decoder.decrypt_range(&info(seg), &plan, vec![0; 3]),
        Err(DecodeError::CiphertextLength { .. })
    ));
    let mut forged = plan.clone();
    forged.plain = 0..900;
    forged.blocks = 0..0;
    assert!(decoder.decrypt_range(&info(seg), &forged, vec![]).is_err());
}
