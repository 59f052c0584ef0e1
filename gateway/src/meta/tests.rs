use std::collections::BTreeMap;

use chunker::manifest::{Body, PieceLocation};
use chunker::{MasterKey, ObjectManifest, Params, PieceId, SegmentRecord};

use super::*;

fn open() -> (tempfile::TempDir, Meta) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open(dir.path()).unwrap();
    (dir, meta)
}

fn node(i: u8) -> NodeId {
    NodeId::new(vec![i; 8]).unwrap()
}

fn piece(i: u8) -> PieceId {
    PieceId::of(&[i])
}

fn manifest(pieces: &[(u8, u8)]) -> ObjectManifest {
    let master = MasterKey::from_bytes(&[7; 32]).unwrap();
    let key = chunker::DataKey::generate().unwrap();
    let params = Params::new(1, 1, 1024).unwrap();
    let segments = pieces
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| SegmentRecord {
            stream: 0,
            index: i as u32,
            plain_len: 10,
            params,
            pieces: pair
                .iter()
                .map(|&(n, p)| PieceLocation {
                    id: piece(p),
                    node: Some(node(n)),
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    ObjectManifest {
        size: 10 * segments.len() as u64,
        etag: "e".into(),
        content_type: None,
        user_metadata: BTreeMap::new(),
        checksums: Vec::new(),
        created_ms: 1,
        wrapped_key: master.wrap(&key).unwrap(),
        parts: Vec::new(),
        body: Body::Segments(segments),
        headers: BTreeMap::new(),
        tags: BTreeMap::new(),
    }
}

fn refs(pairs: &[(u8, u8)]) -> Vec<PieceRef> {
    pairs
        .iter()
        .map(|&(n, p)| PieceRef {
            node: node(n),
            piece: piece(p),
        })
        .collect()
}

fn queued(meta: &Meta) -> Vec<(NodeId, Vec<PieceId>)> {
    let mut out: Vec<_> = meta
        .gc_nodes()
        .unwrap()
        .into_iter()
        .map(|(n, _)| {
            let mut b = meta.gc_due(&n, None, 100, u64::MAX, 0).unwrap();
            b.sort();
            (n, b)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn buckets_are_created_once_and_removed_only_when_empty() {
    let (_d, meta) = open();
    meta.create_bucket("b", 5, None).unwrap();
    assert!(matches!(
        meta.create_bucket("b", 6, None),
        Err(MetaError::BucketExists)
    ));
    assert_eq!(meta.bucket("b").unwrap().unwrap().created_ms, 5);
    meta.commit_object(
        "b",
        "k",
        &manifest(&[(1, 1), (2, 2)]),
        &[0; 16],
        &Expect::Anything,
    )
    .unwrap();
    assert!(matches!(
        meta.delete_bucket("b"),
        Err(MetaError::BucketNotEmpty)
    ));
    // A bucket whose name extends this one's does not count as its content.
    meta.create_bucket("bb", 5, None).unwrap();
    meta.delete_object("b", "k").unwrap();
    meta.delete_bucket("b").unwrap();
    assert!(matches!(
        meta.delete_bucket("b"),
        Err(MetaError::NoSuchBucket)
    ));
    assert_eq!(meta.buckets().unwrap().len(), 1);
}

#[test]
fn commit_queues_what_it_replaces_and_what_the_upload_did_not_use() {
    let (_d, meta) = open();
    meta.create_bucket("b", 0, None).unwrap();
    let upload = [1; 16];
    // Three pieces sent; the manifest uses two (the third was a straggler).
    meta.add_pending(&upload, &refs(&[(1, 1), (2, 2), (3, 3)]))
        .unwrap();
    meta.commit_object(
        "b",
        "k",
        &manifest(&[(1, 1), (2, 2)]),
        &upload,
        &Expect::Anything,
    )
    .unwrap();
    assert_eq!(queued(&meta), vec![(node(3), vec![piece(3)])]);
    meta.gc_done(&node(3), &[piece(3)]).unwrap();

    // Overwrite: the old version's pieces become garbage in the same write.
    let upload2 = [2; 16];
    meta.add_pending(&upload2, &refs(&[(4, 4), (5, 5)]))
        .unwrap();
    meta.commit_object(
        "b",
        "k",
        &manifest(&[(4, 4), (5, 5)]),
        &upload2,
        &Expect::Anything,
    )
    .unwrap();
    assert_eq!(
        queued(&meta),
        vec![(node(1), vec![piece(1)]), (node(2), vec![piece(2)])]
    );
    // Nothing is left pending: a restart abandons nothing.
    assert_eq!(meta.abandon_all_uploads().unwrap(), 0);
}

#[test]
fn abandoned_uploads_become_deletions_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let meta = Meta::open(dir.path()).unwrap();
        meta.add_pending(&[9; 16], &refs(&[(1, 1), (2, 2)]))
            .unwrap();
        meta.add_pending(&[8; 16], &refs(&[(1, 3)])).unwrap();
        meta.abandon_upload(&[8; 16]).unwrap();
        assert_eq!(queued(&meta), vec![(node(1), vec![piece(3)])]);
    } // the process "dies" with upload 9 in flight
    let meta = Meta::open(dir.path()).unwrap();
    assert_eq!(meta.abandon_all_uploads().unwrap(), 2);
    let mut want = vec![
        (node(1), vec![piece(1), piece(3)]),
        (node(2), vec![piece(2)]),
    ];
    want[0].1.sort();
    assert_eq!(queued(&meta), want);
}

#[test]
fn scans_are_in_byte_order_within_one_bucket() {
    let (_d, meta) = open();
    meta.create_bucket("a", 0, None).unwrap();
    meta.create_bucket("ab", 0, None).unwrap();
    let m = manifest(&[(1, 1), (2, 2)]);
    for key in ["b", "a/2", "a/1", "é", "Z", "a"] {
        meta.commit_object("a", key, &m, &[0; 16], &Expect::Anything)
            .unwrap();
    }
    meta.commit_object("ab", "x", &m, &[0; 16], &Expect::Anything)
        .unwrap();
    let mut keys = Vec::new();
    meta.scan_objects("a", "", b"", |o| {
        keys.push(o.key);
        Ok(true)
    })
    .unwrap();
    assert_eq!(keys, ["Z", "a", "a/1", "a/2", "b", "é"]);
    let mut under = Vec::new();
    meta.scan_objects("a", "a/", b"a/1\0", |o| {
        under.push(o.key);
        Ok(true)
    })
    .unwrap();
    assert_eq!(under, ["a/2"]);
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    assert!(decode::<BucketRecord>("bucket", &[]).is_err());
    assert!(decode::<BucketRecord>("bucket", &[9, 1]).is_err());
    assert!(decode::<BucketRecord>("bucket", &[RECORD_FORMAT, 1, 2, 3]).is_err());
    assert!(parse_node_piece(&[200, 1, 2]).is_none());
    assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
    assert_eq!(prefix_successor(&[b'a', 0xff]), Some(b"b".to_vec()));
    assert_eq!(prefix_successor(&[0xff]), None);
}

#[test]
fn conditional_commits_check_the_current_version_atomically() {
    let (_d, meta) = open();
    meta.create_bucket("b", 0, None).unwrap();
    let m = manifest(&[(1, 1), (2, 2)]);
    meta.commit_object("b", "k", &m, &[1; 16], &Expect::Absent)
        .unwrap();
    let again = meta.commit_object("b", "k", &m, &[2; 16], &Expect::Absent);
    assert!(matches!(again, Err(MetaError::PreconditionFailed)));
    let wrong = meta.commit_object("b", "k", &m, &[3; 16], &Expect::ETag("other".into()));
    assert!(matches!(wrong, Err(MetaError::PreconditionFailed)));
    meta.commit_object("b", "k", &m, &[4; 16], &Expect::ETag(m.etag.clone()))
        .unwrap();
    assert!(matches!(
        meta.commit_object("b", "new", &m, &[5; 16], &Expect::Present),
        Err(MetaError::PreconditionFailed)
    ));
}

#[test]
fn a_tag_change_queues_only_tags_until_a_write_makes_it_a_full_copy() {
    let (_d, meta) = open();
    meta.create_bucket("b", 0, None).unwrap();
    let record = RemoteRecord {
        queue_writes: true,
        queue_deletes: true,
        config: Vec::new(),
    };
    meta.set_remote("b", &record, false).unwrap();
    let v1 = manifest(&[(1, 1), (2, 2)]);
    meta.commit_object("b", "k", &v1, &[1; 16], &Expect::Anything)
        .unwrap();
    let written = meta.mirror_entry("b", "k").unwrap().unwrap();
    assert!(!written.tags_only);
    meta.mirror_done("b", "k", written.seq).unwrap();

    // Tags alone: the entry says so, twice over.
    let mut v2 = v1.clone();
    v2.tags.insert("team".into(), "blue".into());
    assert!(meta.commit_attributes("b", "k", &v1, &v2).unwrap());
    let mut v3 = v2.clone();
    v3.tags.insert("year".into(), "2026".into());
    assert!(meta.commit_attributes("b", "k", &v2, &v3).unwrap());
    let tags = meta.mirror_entry("b", "k").unwrap().unwrap();
    assert!(tags.tags_only);

    // New bytes while the tag change waits: the remote needs the whole object, and the entry
    // keeps the age of the first change.
    meta.commit_object(
        "b",
        "k",
        &manifest(&[(3, 3), (4, 4)]),
        &[2; 16],
        &Expect::Anything,
    )
    .unwrap();
    let merged = meta.mirror_entry("b", "k").unwrap().unwrap();
    assert!(!merged.tags_only);
    assert_eq!(merged.queued_ms, tags.queued_ms);
    let mut v4 = meta.object("b", "k").unwrap().unwrap();
    let v5 = {
        let mut m = v4.clone();
        m.tags.clear();
        m
    };
    assert!(meta.commit_attributes("b", "k", &v4, &v5).unwrap());
    v4 = meta.object("b", "k").unwrap().unwrap();
    assert_eq!(v4, v5);
    assert!(!meta.mirror_entry("b", "k").unwrap().unwrap().tags_only);
}

#[test]
fn mirror_entries_written_before_tags_only_existed_read_as_full_copies() {
    #[derive(Serialize)]
    struct Old {
        seq: u64,
        queued_ms: u64,
        attempts: u32,
        next_ms: u64,
        last_error: String,
    }
    let (_d, meta) = open();
    meta.create_bucket("b", 0, None).unwrap();
    let old = Old {
        seq: 9,
        queued_ms: 5,
        attempts: 2,
        next_ms: 0,
        last_error: "refused".into(),
    };
    meta.db
        .put_cf(
            meta.cf(hybrid::CF_MIRROR),
            object_key("b", "k"),
            encode(&old),
        )
        .unwrap();
    let entry = meta.mirror_entry("b", "k").unwrap().unwrap();
    assert_eq!(
        (entry.seq, entry.queued_ms, entry.attempts, entry.tags_only),
        (9, 5, 2, false)
    );
    assert_eq!(meta.mirror_due(1, None, &|_| false, 10).unwrap().len(), 1);
    // Bytes that are neither shape are still an error, not a guess.
    meta.db
        .put_cf(
            meta.cf(hybrid::CF_MIRROR),
            object_key("b", "k"),
            [RECORD_FORMAT, 1],
        )
        .unwrap();
    assert!(meta.mirror_entry("b", "k").is_err());
}

#[test]
fn pieces_once_readable_wait_out_the_grace_and_the_rest_go_at_once() {
    let (_d, meta) = open();
    meta.create_bucket("b", 0, None).unwrap();
    meta.add_pending(&[1; 16], &refs(&[(1, 1), (2, 2), (3, 3)]))
        .unwrap();
    meta.commit_object(
        "b",
        "k",
        &manifest(&[(1, 1), (2, 2)]),
        &[1; 16],
        &Expect::Anything,
    )
    .unwrap();
    meta.delete_object("b", "k").unwrap();
    let now = crate::time::now_ms();
    let grace = 60_000;
    let due = |n: u8, at: u64| meta.gc_due(&node(n), None, 100, at, grace).unwrap();
    // The straggler was never readable; the deleted object's pieces were.
    assert_eq!(due(3, now), vec![piece(3)]);
    assert!(due(1, now).is_empty() && due(2, now).is_empty());
    assert_eq!(due(1, now + grace + 1000), vec![piece(1)]);
    // Paging resumes after the last piece returned.
    assert!(meta
        .gc_due(&node(3), Some(&piece(3)), 100, now, grace)
        .unwrap()
        .is_empty());
}

#[test]
fn a_commit_that_references_a_queued_piece_takes_it_off_the_queue() {
    let (_d, meta) = open();
    meta.create_bucket("b", 0, None).unwrap();
    // A failed attempt queued (1, 1) and (2, 2) for deletion ...
    meta.add_pending(&[1; 16], &refs(&[(1, 1), (2, 2)]))
        .unwrap();
    meta.abandon_upload(&[1; 16]).unwrap();
    assert_eq!(queued(&meta).len(), 2);
    // ... and a commit that places the same pieces makes them live again.
    meta.add_pending(&[2; 16], &refs(&[(1, 1), (2, 2)]))
        .unwrap();
    meta.commit_object(
        "b",
        "k",
        &manifest(&[(1, 1), (2, 2)]),
        &[2; 16],
        &Expect::Anything,
    )
    .unwrap();
    assert_eq!(queued(&meta), vec![]);
    assert!(meta.is_held(&refs(&[(1, 1)])[0]).unwrap());
}

fn upload_record(master: &MasterKey) -> UploadRecord {
    UploadRecord {
        created_ms: 1,
        content_type: None,
        user_metadata: BTreeMap::new(),
        checksum: None,
        wrapped_key: master.wrap(&chunker::DataKey::generate().unwrap()).unwrap(),
        headers: BTreeMap::new(),
        tags: BTreeMap::new(),
        attempts: 0,
    }
}

fn part(number: u32, pieces: &[(u8, u8)]) -> StoredPart {
    let Body::Segments(segments) = manifest(pieces).body else {
        unreachable!()
    };
    StoredPart {
        number,
        size: 10 * segments.len() as u64,
        md5: [number as u8; 16],
        checksums: Vec::new(),
        created_ms: 1,
        segments,
    }
}

#[test]
fn every_part_attempt_gets_a_stream_of_its_own_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::from_bytes(&[7; 32]).unwrap();
    let id = [5; 16];
    let mut seen = Vec::new();
    {
        let meta = Meta::open(dir.path()).unwrap();
        meta.create_bucket("b", 0, None).unwrap();
        meta.create_upload("b", "k", &id, &upload_record(&master))
            .unwrap();
        for _ in 0..3 {
            seen.push(meta.next_part_stream("b", "k", &id).unwrap());
        }
    }
    let meta = Meta::open(dir.path()).unwrap();
    seen.push(meta.next_part_stream("b", "k", &id).unwrap());
    assert_eq!(seen, [10_001, 10_002, 10_003, 10_004]);
    assert!(matches!(
        meta.next_part_stream("b", "k", &[6; 16]),
        Err(MetaError::NoSuchUpload)
    ));
}

#[test]
fn completing_with_a_part_replaced_meanwhile_commits_nothing() {
    let (_d, meta) = open();
    let master = MasterKey::from_bytes(&[7; 32]).unwrap();
    let id = [5; 16];
    meta.create_bucket("b", 0, None).unwrap();
    meta.create_upload("b", "k", &id, &upload_record(&master))
        .unwrap();
    let first = part(1, &[(1, 1), (2, 2)]);
    meta.commit_part("b", "k", &id, &first, &[1; 16]).unwrap();
    // Complete read `first`; an UploadPart of number 1 commits before Complete's write.
    let second = part(1, &[(3, 3), (4, 4)]);
    meta.commit_part("b", "k", &id, &second, &[2; 16]).unwrap();
    let stitched = ObjectManifest {
        body: Body::Segments(first.segments.clone()),
        ..manifest(&[(1, 1), (2, 2)])
    };
    assert!(matches!(
        meta.complete_upload("b", "k", &id, &[&first], &stitched, &Expect::Anything),
        Err(MetaError::PartReplaced { number: 1 })
    ));
    assert!(meta.object("b", "k").unwrap().is_none());
    assert!(meta.upload("b", "k", &id).unwrap().is_some());
    // With the part as stored now, it completes.
    let stitched = ObjectManifest {
        body: Body::Segments(second.segments.clone()),
        ..manifest(&[(3, 3), (4, 4)])
    };
    meta.complete_upload("b", "k", &id, &[&second], &stitched, &Expect::Anything)
        .unwrap();
    assert!(meta.object("b", "k").unwrap().is_some());
}
