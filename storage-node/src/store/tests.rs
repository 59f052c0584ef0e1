//! The store conformance suite: every check runs against every [`PieceStore`], then the disk
//! store's own failure cases (rot, truncation, restarts, crash leftovers).

use std::path::Path;

use chunker::proof::verify;
use chunker::{Challenge, PieceId};
use tempfile::TempDir;

use super::*;

fn piece(len: usize, seed: u8) -> (PieceId, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed)
        .collect();
    (PieceId::of(&data), data)
}

fn disk(dir: &Path, capacity: u64) -> DiskStore {
    DiskStore::open(dir, DiskStoreOptions::new(capacity)).unwrap()
}

/// Runs one check against a fresh store of each kind.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[test] fn $name() { super::$name(&super::MemoryStore::new(8 << 20)); })*
        }
        mod disk_store {
            $(#[test] fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::disk(dir.path(), 8 << 20));
            })*
        }
    };
}

conformance!(
    round_trips_every_size,
    puts_are_idempotent,
    refuses_bytes_that_do_not_match_the_id,
    serves_ranges,
    deletes,
    enforces_capacity,
    lists_in_id_order,
    proves_challenges,
    scrubs,
);

const SIZES: &[usize] = &[
    1,
    1000,
    1024,
    16 * 1024,
    32 * 1024,
    32 * 1024 + 1,
    100_000,
    1 << 20,
];

fn round_trips_every_size(store: &dyn PieceStore) {
    for (i, &len) in SIZES.iter().enumerate() {
        let (id, data) = piece(len, i as u8);
        assert_eq!(store.put(id, &data).unwrap(), PutOutcome::Stored);
        assert_eq!(store.get(&id, None).unwrap(), data, "len {len}");
        let info = store.info(&id).unwrap().unwrap();
        assert_eq!((info.id, info.len), (id, len as u64));
    }
    let stats = store.stats();
    assert_eq!(stats.pieces, SIZES.len() as u64);
    assert_eq!(stats.used_bytes, SIZES.iter().sum::<usize>() as u64);
}

fn puts_are_idempotent(store: &dyn PieceStore) {
    let (id, data) = piece(50_000, 1);
    assert_eq!(store.put(id, &data).unwrap(), PutOutcome::Stored);
    assert_eq!(store.put(id, &data).unwrap(), PutOutcome::AlreadyStored);
    assert_eq!(store.stats().pieces, 1);
    assert_eq!(store.stats().used_bytes, 50_000);
}

fn refuses_bytes_that_do_not_match_the_id(store: &dyn PieceStore) {
    let (id, mut data) = piece(70_000, 2);
    data[123] ^= 1;
    assert!(matches!(
        store.put(id, &data),
        Err(StoreError::IdMismatch { expected, .. }) if expected == id
    ));
    assert!(matches!(
        store.put(PieceId::of(&[]), &[]),
        Err(StoreError::PieceLength { len: 0 })
    ));
    assert_eq!(store.info(&id).unwrap(), None);
    assert_eq!(
        store.stats(),
        StoreStats {
            capacity_bytes: store.stats().capacity_bytes,
            ..StoreStats::default()
        }
    );
    assert!(matches!(
        store.get(&id, None),
        Err(StoreError::NotFound { .. })
    ));
}

fn serves_ranges(store: &dyn PieceStore) {
    for (i, &len) in [1000usize, 40_000, 1 << 20].iter().enumerate() {
        let (id, data) = piece(len, 10 + i as u8);
        store.put(id, &data).unwrap();
        let l = len as u64;
        for r in [0..1, 0..l, l - 1..l, l / 3..l / 2, 5..l - 5] {
            let got = store.get(&id, Some(r.clone())).unwrap();
            assert_eq!(
                got,
                &data[r.start as usize..r.end as usize],
                "len {len} {r:?}"
            );
        }
        #[allow(clippy::reversed_empty_ranges)]
        let bad_ranges = [0..0, 5..5, l..l + 1, 0..l + 1, 10..5];
        for bad in bad_ranges {
            assert!(
                matches!(
                    store.get(&id, Some(bad.clone())),
                    Err(StoreError::Range { .. })
                ),
                "len {len} {bad:?}"
            );
        }
    }
}

fn deletes(store: &dyn PieceStore) {
    let (small, small_data) = piece(100, 3);
    let (large, large_data) = piece(200_000, 4);
    store.put(small, &small_data).unwrap();
    store.put(large, &large_data).unwrap();
    assert!(store.delete(&small).unwrap());
    assert!(store.delete(&large).unwrap());
    assert!(!store.delete(&large).unwrap());
    assert!(matches!(
        store.get(&large, None),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.stats().pieces, 0);
    assert_eq!(store.stats().used_bytes, 0);
    // Stored again after a delete.
    assert_eq!(store.put(large, &large_data).unwrap(), PutOutcome::Stored);
    assert_eq!(store.get(&large, None).unwrap(), large_data);
}

fn enforces_capacity(store: &dyn PieceStore) {
    let capacity = store.stats().capacity_bytes;
    let (a, a_data) = piece(capacity as usize - 1000, 5);
    store.put(a, &a_data).unwrap();
    let (b, b_data) = piece(1001, 6);
    match store.put(b, &b_data) {
        Err(StoreError::CapacityFull {
            needed,
            free,
            capacity: c,
        }) => {
            assert_eq!((needed, free, c), (1001, 1000, capacity));
        }
        other => panic!("expected CapacityFull, got {other:?}"),
    }
    assert_eq!(store.info(&b).unwrap(), None);
    let (c, c_data) = piece(1000, 7);
    store.put(c, &c_data).unwrap();
    assert_eq!(store.stats().used_bytes, capacity);
    store.delete(&a).unwrap();
    store.put(b, &b_data).unwrap();
}

fn lists_in_id_order(store: &dyn PieceStore) {
    let mut ids: Vec<PieceId> = (0..25)
        .map(|i| {
            let (id, data) = piece(500 + i * 700, i as u8);
            store.put(id, &data).unwrap();
            id
        })
        .collect();
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after, 7).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().map(|p| p.id);
        seen.extend(page.into_iter().map(|p| p.id));
    }
    assert_eq!(seen, ids);
}

fn proves_challenges(store: &dyn PieceStore) {
    for (i, &len) in [500usize, 20_000, 1 << 20].iter().enumerate() {
        let (id, data) = piece(len, 20 + i as u8);
        store.put(id, &data).unwrap();
        for _ in 0..5 {
            let c = Challenge::random(id, len as u64, 4).unwrap();
            let proof = store.prove(&c).unwrap();
            verify(&c, &proof).unwrap();
        }
        let wrong_len = Challenge::new(id, len as u64 + 1, vec![0], [0; 32]).unwrap();
        assert!(matches!(
            store.prove(&wrong_len),
            Err(StoreError::Challenge { .. })
        ));
    }
    let unknown = Challenge::random(PieceId::of(b"nothing"), 7, 1).unwrap();
    assert!(matches!(
        store.prove(&unknown),
        Err(StoreError::NotFound { .. })
    ));
}

fn scrubs(store: &dyn PieceStore) {
    let (id, data) = piece(60_000, 30);
    store.put(id, &data).unwrap();
    let before = store.info(&id).unwrap().unwrap().verified_ms;
    assert_eq!(
        store.scrub(&id, before + 5000).unwrap(),
        ScrubResult::Intact
    );
    assert_eq!(store.info(&id).unwrap().unwrap().verified_ms, before + 5000);
    assert_eq!(
        store.scrub(&PieceId::of(b"x"), 0).unwrap(),
        ScrubResult::Missing
    );
}

#[test]
fn memory_store_reports_rot() {
    let store = MemoryStore::new(1 << 20);
    let (id, data) = piece(40_000, 1);
    store.put(id, &data).unwrap();
    assert!(store.corrupt(&id, 20_000));
    assert!(matches!(
        store.get(&id, None),
        Err(StoreError::Corrupt { rot: Rot::Hash, .. })
    ));
    assert!(matches!(
        store.get(&id, Some(16_384..20_001)),
        Err(StoreError::Corrupt {
            rot: Rot::Block { block: 1 },
            ..
        })
    ));
    assert_eq!(store.get(&id, Some(0..100)).unwrap(), data[..100]);
    assert_eq!(
        store.scrub(&id, 1).unwrap(),
        ScrubResult::Corrupt(Rot::Hash)
    );
}

fn piece_file(dir: &Path, id: &PieceId) -> std::path::PathBuf {
    let hex = id.to_string();
    dir.join("pieces")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(hex)
}

#[test]
fn disk_store_detects_rot_truncation_and_missing_files() {
    let dir = TempDir::new().unwrap();
    let store = disk(dir.path(), 16 << 20);
    let (id, data) = piece(100_000, 1);
    store.put(id, &data).unwrap();
    let path = piece_file(dir.path(), &id);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50_000] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        store.get(&id, None),
        Err(StoreError::Corrupt { rot: Rot::Hash, .. })
    ));
    // The rotten block is refused; ranges elsewhere are still served, verified.
    assert!(matches!(
        store.get(&id, Some(49_000..51_000)),
        Err(StoreError::Corrupt {
            rot: Rot::Block { block: 3 },
            ..
        })
    ));
    assert_eq!(store.get(&id, Some(0..1000)).unwrap(), data[..1000]);
    assert_eq!(
        store.scrub(&id, 1).unwrap(),
        ScrubResult::Corrupt(Rot::Hash)
    );
    // A proof from rotten bytes does not verify.
    let c = Challenge::new(id, 100_000, vec![48], [0; 32]).unwrap();
    assert!(verify(&c, &store.prove(&c).unwrap()).is_err());

    std::fs::write(&path, &data[..99_000]).unwrap();
    assert!(matches!(
        store.get(&id, Some(0..10)),
        Err(StoreError::Corrupt {
            rot: Rot::Length {
                expected: 100_000,
                found: 99_000
            },
            ..
        })
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        store.get(&id, None),
        Err(StoreError::Corrupt {
            rot: Rot::FileMissing,
            ..
        })
    ));
    assert_eq!(
        store.scrub(&id, 1).unwrap(),
        ScrubResult::Corrupt(Rot::FileMissing)
    );
    // A deleted piece whose file is already gone deletes cleanly.
    assert!(store.delete(&id).unwrap());
}

#[test]
fn disk_store_keeps_everything_across_a_reopen() {
    let dir = TempDir::new().unwrap();
    let mut held = Vec::new();
    {
        let store = disk(dir.path(), 16 << 20);
        for (i, &len) in SIZES.iter().enumerate() {
            let (id, data) = piece(len, 40 + i as u8);
            store.put(id, &data).unwrap();
            held.push((id, data));
        }
        store.delete(&held[0].0).unwrap();
    }
    let store = disk(dir.path(), 16 << 20);
    assert!(store.info(&held[0].0).unwrap().is_none());
    for (id, data) in &held[1..] {
        assert_eq!(&store.get(id, None).unwrap(), data);
    }
    assert_eq!(store.stats().pieces, SIZES.len() as u64 - 1);
    assert_eq!(
        store.stats().used_bytes,
        SIZES[1..].iter().sum::<usize>() as u64
    );
}

#[test]
fn disk_store_removes_crash_leftovers_on_open() {
    let dir = TempDir::new().unwrap();
    let (kept, kept_data) = piece(80_000, 1);
    {
        let store = disk(dir.path(), 16 << 20);
        store.put(kept, &kept_data).unwrap();
    }
    // A half-written temp file and a renamed file whose record was never written.
    std::fs::write(dir.path().join("tmp").join("junk.123"), b"half").unwrap();
    let (orphan, orphan_data) = piece(90_000, 2);
    let path = piece_file(dir.path(), &orphan);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &orphan_data).unwrap();

    let store = disk(dir.path(), 16 << 20);
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(store.get(&kept, None).unwrap(), kept_data);
    assert_eq!(store.stats().pieces, 1);
    // The orphan was never acknowledged: storing it now works normally.
    assert_eq!(store.put(orphan, &orphan_data).unwrap(), PutOutcome::Stored);
}

#[test]
fn disk_store_serves_concurrent_puts_of_one_piece_once() {
    let dir = TempDir::new().unwrap();
    let store = std::sync::Arc::new(disk(dir.path(), 16 << 20));
    let (id, data) = piece(300_000, 9);
    let data = std::sync::Arc::new(data);
    let outcomes: Vec<PutOutcome> = (0..8)
        .map(|_| {
            let (store, data) = (store.clone(), data.clone());
            std::thread::spawn(move || store.put(id, &data).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == PutOutcome::Stored)
            .count(),
        1
    );
    assert_eq!(store.stats().used_bytes, 300_000);
}

#[test]
fn inspect_reads_a_store_that_is_open_elsewhere() {
    let dir = TempDir::new().unwrap();
    let store = disk(dir.path(), 16 << 20);
    let (id, data) = piece(100_000, 1);
    store.put(id, &data).unwrap();
    let counters = NodeCounters {
        audits_answered: 7,
        ..NodeCounters::default()
    };
    store.save_counters(&counters).unwrap();
    // The store is still open (and locked) here.
    let seen = DiskStore::inspect(dir.path()).unwrap();
    assert_eq!((seen.pieces, seen.used_bytes), (1, 100_000));
    assert_eq!(seen.counters, counters);
    assert_eq!(store.counters().unwrap(), counters);
}
