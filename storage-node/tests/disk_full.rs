//! A real full disk (ENOSPC from a small tmpfs, not the configured capacity): puts are refused
//! as `DiskFull` and leave nothing behind, acknowledged pieces stay readable, and once space is
//! freed the store takes pieces again, also after a reopen. Needs permission to mount (root);
//! elsewhere it says so and passes.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;

use chunker::PieceId;
use storage_node::store::{DiskStore, DiskStoreOptions, NodeCounters, PieceStore, StoreError};

fn piece(len: usize, seed: u8) -> (PieceId, Vec<u8>) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    (PieceId::of(&data), data)
}

/// A mounted tmpfs, unmounted on drop.
struct SmallDisk<'a>(&'a Path);

impl SmallDisk<'_> {
    fn mount<'a>(dir: &'a Path, size: &str) -> Option<SmallDisk<'a>> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk(dir)),
            Ok(out) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for SmallDisk<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).output();
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_full_disk_refuses_cleanly_and_recovers_when_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("disk");
    let Some(_disk) = SmallDisk::mount(&root, "48m") else {
        return;
    };
    // Capacity far above the disk: only the disk can be what is full.
    let store = DiskStore::open(&root, DiskStoreOptions::new(1 << 30)).unwrap();
    let kept: Vec<(PieceId, Vec<u8>)> = (0..4)
        .map(|i| piece(if i % 2 == 0 { 600_000 } else { 2_000 }, i))
        .collect();
    for (id, data) in &kept {
        store.put(*id, data).unwrap();
    }

    // Someone else fills the filesystem to the last byte.
    let filler = root.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);

    let (large, large_data) = piece(900_000, 10);
    match store.put(large, &large_data) {
        Err(StoreError::DiskFull) => {}
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert_eq!(store.info(&large).unwrap(), None);
    assert_eq!(
        files_in(&root.join("tmp")),
        0,
        "no half-written piece is left"
    );
    // A small piece (it would go to the index) is refused the same way.
    let (small, small_data) = piece(3_000, 11);
    match store.put(small, &small_data) {
        Err(StoreError::DiskFull) => {}
        other => panic!("expected DiskFull, got {other:?}"),
    }
    // Writes that reach the index itself (the node's counters) with no byte free: once the
    // last page of rocksdb's log is used up it cannot append and stops taking writes; that
    // too is DiskFull.
    let mut counters = NodeCounters::default();
    let refused = (0..10_000).find_map(|i| {
        counters.audits_answered = i;
        store.save_counters(&counters).err()
    });
    assert!(matches!(refused, Some(StoreError::DiskFull)), "{refused:?}");
    for (id, data) in &kept {
        assert_eq!(&store.get(id, None).unwrap(), data);
    }

    // Space freed: the store reopens its index and takes pieces again, large and small.
    std::fs::remove_file(&filler).unwrap();
    store.put(large, &large_data).unwrap();
    store.put(small, &small_data).unwrap();
    assert_eq!(store.get(&large, None).unwrap(), large_data);
    assert_eq!(store.get(&small, None).unwrap(), small_data);

    // And everything acknowledged is there after a reopen.
    drop(store);
    let store = DiskStore::open(&root, DiskStoreOptions::new(1 << 30)).unwrap();
    for (id, data) in kept
        .iter()
        .chain([&(large, large_data), &(small, small_data)])
    {
        assert_eq!(&store.get(id, None).unwrap(), data);
    }
}
