//! Manifests: round trips, validation, and no panic on any input.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chunker::manifest::{
    Body, Checksum, ChecksumAlgorithm, ManifestError, NodeId, PartRecord, PieceLocation,
    MANIFEST_FORMAT,
};
use chunker::{encode_all, DataKey, MasterKey, ObjectManifest, Params, SegmentRecord};
use proptest::prelude::*;

fn sample(size: usize) -> ObjectManifest {
    let params = Params::new(4, 2, 4096).unwrap();
    let key = DataKey::generate().unwrap();
    let master = MasterKey::from_bytes(&[1; 32]).unwrap();
    let segments = encode_all(params, &key, 0, &vec![5u8; size]).unwrap();
    let records = segments
        .iter()
        .map(|s| SegmentRecord {
            stream: s.stream(),
            index: s.index(),
            plain_len: s.layout().plain_len() as u64,
            params,
            pieces: s
                .ids()
                .iter()
                .enumerate()
                .map(|(i, id)| PieceLocation {
                    id: *id,
                    node: (i != 3).then(|| NodeId::new(vec![i as u8; 38]).unwrap()),
                })
                .collect(),
        })
        .collect();
    ObjectManifest {
        size: size as u64,
        etag: "\"9e107d9d372bb6826bd81d3542a419d6\"".into(),
        content_type: Some("text/plain; charset=utf-8".into()),
        user_metadata: BTreeMap::from([("färg".into(), "grön ✓".into())]),
        checksums: vec![Checksum {
            algorithm: ChecksumAlgorithm::Crc64Nvme,
            composite: false,
            value: vec![1, 2, 3, 4, 5, 6, 7, 8],
        }],
        created_ms: 1_795_000_000_000,
        wrapped_key: master.wrap(&key).unwrap(),
        parts: vec![PartRecord {
            number: 1,
            size: size as u64,
            etag: "\"x\"".into(),
        }],
        body: Body::Segments(records),
        headers: BTreeMap::from([("cache-control".into(), "max-age=60".into())]),
        tags: BTreeMap::from([("project".into(), "blue".into())]),
    }
}

#[test]
fn manifests_round_trip() {
    for size in [1, 4000, 50_000] {
        let m = sample(size);
        let bytes = m.encode();
        assert_eq!(bytes[0], MANIFEST_FORMAT);
        assert_eq!(ObjectManifest::decode(&bytes).unwrap(), m);
    }
    let inline = ObjectManifest {
        size: 3,
        body: Body::Inline {
            ciphertext: vec![0; 3 + 16],
        },
        ..sample(1)
    };
    assert_eq!(ObjectManifest::decode(&inline.encode()).unwrap(), inline);
}

#[test]
fn format_1_manifests_still_decode() {
    // Format 1 is format 2 without its last two fields (headers and tags): with both empty,
    // format 2's body is format 1's plus two zero-length maps.
    let m = ObjectManifest {
        headers: BTreeMap::new(),
        tags: BTreeMap::new(),
        ..sample(4000)
    };
    let v2 = m.encode();
    assert_eq!(&v2[v2.len() - 2..], &[0, 0]);
    let mut v1 = vec![1];
    v1.extend_from_slice(&v2[1..v2.len() - 2]);
    assert_eq!(ObjectManifest::decode(&v1).unwrap(), m);
}

#[test]
fn inconsistent_manifests_are_refused() {
    assert_eq!(ObjectManifest::decode(&[]), Err(ManifestError::Empty));
    assert_eq!(
        ObjectManifest::decode(&[99, 1, 2]),
        Err(ManifestError::UnknownFormat { found: 99 })
    );
    let mut bytes = sample(100).encode();
    bytes.push(0);
    assert_eq!(
        ObjectManifest::decode(&bytes),
        Err(ManifestError::TrailingBytes { len: 1 })
    );

    let mut m = sample(50_000);
    m.size += 1;
    assert!(matches!(
        ObjectManifest::decode(&m.encode()),
        Err(ManifestError::SizeMismatch { .. })
    ));

    let mut m = sample(50_000);
    if let Body::Segments(s) = &mut m.body {
        s[0].pieces.pop();
    }
    assert!(matches!(
        ObjectManifest::decode(&m.encode()),
        Err(ManifestError::PieceCount { segment: 0, .. })
    ));

    let mut m = sample(50_000);
    if let Body::Segments(s) = &mut m.body {
        s[0].plain_len = 1 << 40;
    }
    assert!(matches!(
        ObjectManifest::decode(&m.encode()),
        Err(ManifestError::Segment { segment: 0, .. })
    ));

    let inline = ObjectManifest {
        size: 3,
        body: Body::Inline {
            ciphertext: vec![0; 5],
        },
        ..sample(1)
    };
    assert!(matches!(
        ObjectManifest::decode(&inline.encode()),
        Err(ManifestError::InlineLength { .. })
    ));
    assert!(NodeId::new(vec![]).is_err());
    assert!(NodeId::new(vec![0; 129]).is_err());
}

#[test]
fn segments_in_maps_object_ranges_to_segments() {
    let m = sample(50_000);
    let seg = Params::new(4, 2, 4096).unwrap().segment_plaintext_len();
    let spans = m.segments_in(0..50_000);
    assert_eq!(spans.len(), 50_000usize.div_ceil(seg));
    assert_eq!(spans[0].range, 0..seg);
    let spans = m.segments_in(seg as u64 - 1..seg as u64 + 1);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].range, seg - 1..seg);
    assert_eq!(spans[1].range, 0..1);
    assert!(m.segments_in(10..10).is_empty());
    assert!(m.segments_in(60_000..70_000).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = ObjectManifest::decode(&bytes);
        let mut with_format = vec![MANIFEST_FORMAT];
        with_format.extend(&bytes);
        let _ = ObjectManifest::decode(&with_format);
    }

    #[test]
    fn decoding_damaged_manifests_never_panics(pos in any::<prop::sample::Index>(), byte: u8, cut in any::<prop::sample::Index>()) {
        let bytes = sample(9000).encode();
        let mut flipped = bytes.clone();
        flipped[pos.index(bytes.len())] = byte;
        if let Ok(m) = ObjectManifest::decode(&flipped) {
            // Whatever decodes has passed validation.
            prop_assert!(m.validate().is_ok());
        }
        let _ = ObjectManifest::decode(&bytes[..cut.index(bytes.len())]);
    }
}
