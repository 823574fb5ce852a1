//! Journal format, recovery, group commit and failure handling.

use super::*;
use std::sync::mpsc::channel;

fn sync_append(s: &Store, records: Vec<Vec<u8>>) -> Result<(), StoreError> {
    let (tx, rx) = channel();
    s.append(records, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap()
}

fn recs(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record-{i}").into_bytes()).collect()
}

#[test]
fn round_trip_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (s, rec) = Store::open(dir.path(), true).unwrap();
    assert!(rec.snapshot.is_none() && rec.records.is_empty());
    sync_append(&s, recs(3)).unwrap();
    sync_append(&s, vec![b"x".to_vec()]).unwrap();
    s.close();
    let (s, rec) = Store::open(dir.path(), true).unwrap();
    let mut want = recs(3);
    want.push(b"x".to_vec());
    assert_eq!(rec.records, want);
    let (tx, rx) = channel();
    s.checkpoint(b"SNAP".to_vec(), Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    assert_eq!(s.journal_len(), 8);
    sync_append(&s, vec![b"after".to_vec()]).unwrap();
    drop(s);
    let (_s, rec) = Store::open(dir.path(), true).unwrap();
    assert_eq!(rec.snapshot.as_deref(), Some(&b"SNAP"[..]));
    assert_eq!(rec.records, vec![b"after".to_vec()]);
}

#[test]
fn a_second_open_is_refused_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Store::open(dir.path(), true).unwrap();
    assert!(matches!(
        Store::open(dir.path(), true),
        Err(StoreError::Locked { .. })
    ));
    s.close();
    assert!(Store::open(dir.path(), true).is_ok());
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Store::open(dir.path(), true).unwrap();
    sync_append(&s, recs(5)).unwrap();
    let before_last = s.journal_len();
    sync_append(&s, vec![b"the last record".to_vec()]).unwrap();
    s.close();
    let path = dir.path().join("journal");
    let full = std::fs::read(&path).unwrap();
    for cut in before_last as usize..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let (s, rec) = Store::open(dir.path(), true).unwrap();
        assert_eq!(rec.records, recs(5), "cut at {cut}");
        if cut > before_last as usize {
            assert_eq!(
                rec.torn_tail,
                Some(TornTail {
                    offset: before_last,
                    dropped: (cut - before_last as usize) as u64
                })
            );
        }
        // The torn bytes are gone: appending works and survives.
        sync_append(&s, vec![b"again".to_vec()]).unwrap();
        s.close();
        let (s, rec) = Store::open(dir.path(), true).unwrap();
        assert_eq!(rec.records.len(), 6, "cut at {cut}");
        s.close();
    }
    // A last record whose bytes were overwritten (checksum fails at the end).
    let mut bad = full.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let (_s, rec) = Store::open(dir.path(), true).unwrap();
    assert_eq!(rec.records, recs(5));
    assert!(rec.torn_tail.is_some());
}

#[test]
fn corruption_in_the_middle_is_an_error_with_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Store::open(dir.path(), true).unwrap();
    sync_append(&s, recs(3)).unwrap();
    s.close();
    let path = dir.path().join("journal");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8 + 8 + 2] ^= 0x55; // inside the first record's payload
    std::fs::write(&path, &bytes).unwrap();
    match Store::open(dir.path(), true) {
        Err(StoreError::Corrupt { offset, what, .. }) => {
            assert_eq!(offset, 8);
            assert_eq!(what, "record checksum mismatch");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    std::fs::write(&path, b"NOTAJOURNAL").unwrap();
    let e = Store::open(dir.path(), true).err().unwrap();
    assert!(e.to_string().contains("bad magic"), "{e}");
}

#[test]
fn group_commit_syncs_less_than_it_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Store::open(dir.path(), true).unwrap();
    let s = Arc::new(s);
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..50 {
                    let (tx, rx) = channel();
                    let d = done.clone();
                    s.append(
                        vec![format!("{t}-{i}").into_bytes()],
                        Box::new(move |r| {
                            r.unwrap();
                            d.fetch_add(1, Ordering::Relaxed);
                            tx.send(()).unwrap();
                        }),
                    );
                    rx.recv().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 400);
    let syncs = s.stats().syncs.load(Ordering::Relaxed);
    assert_eq!(s.stats().records.load(Ordering::Relaxed), 400);
    assert!(syncs < 400, "{syncs} syncs for 400 appends");
}
#[test]
fn a_group_commit_interval_puts_what_comes_within_it_in_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Store::open(dir.path(), true).unwrap();
    // Long enough that the ten appends below are queued before it ends,
    // however slow the machine.
    s.set_group_commit(std::time::Duration::from_secs(2));
    // An idle store syncs at once: the first append does not wait.
    sync_append(&s, vec![b"first".to_vec()]).unwrap();
    assert_eq!(s.stats().syncs.load(Ordering::Relaxed), 1);
    // Appends within the interval after it wait for its end and share a sync.
    let (tx, rx) = channel();
    for i in 0..10 {
        let tx = tx.clone();
        s.append(
            vec![format!("r{i}").into_bytes()],
            Box::new(move |r| tx.send(r).unwrap()),
        );
    }
    for _ in 0..10 {
        rx.recv().unwrap().unwrap();
    }
    assert_eq!(s.stats().syncs.load(Ordering::Relaxed), 2);
    assert_eq!(s.stats().records.load(Ordering::Relaxed), 11);
    s.close();
    let (_s, rec) = Store::open(dir.path(), true).unwrap();
    assert_eq!(rec.records.len(), 11);
}

#[test]
fn a_failed_write_fails_its_batches_until_reset_and_keeps_what_was_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(dir.path(), true).unwrap();
    sync_append(&s, recs(2)).unwrap();
    // Swap the committer's journal for /dev/full (ENOSPC on every write).
    s.stop();
    let (tx, rx) = mpsc::channel();
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let committer = Committer {
        journal: Journal::File(FileJournal {
            dir: dir.path().to_path_buf(),
            journal_path: PathBuf::from("/dev/full"),
            file: full,
            good: 0,
        }),
        failed: false,
        sync: true,
        interval: Duration::ZERO,
        last_commit: None,
        stats: s.stats.clone(),
    };
    s.tx = tx;
    s.thread = Some(std::thread::spawn(move || committer.run(rx)));
    let e = sync_append(&s, recs(1)).unwrap_err();
    assert!(e.to_string().contains("/dev/full: write failed"), "{e}");
    assert!(matches!(sync_append(&s, recs(1)), Err(StoreError::Failed)));
    s.close();
    // What was durable before the failure is intact.
    let (_s, rec) = Store::open(dir.path(), true).unwrap();
    assert_eq!(rec.records, recs(2));
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = Store::open(&file.join("data"), true).err().unwrap();
    assert!(e.to_string().contains("create directory failed"), "{e}");
}

#[test]
fn redb_backend_round_trip_checkpoint_lock_and_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (s, rec) = Store::open_with(dir.path(), true, Backend::Redb).unwrap();
    assert!(rec.snapshot.is_none() && rec.records.is_empty());
    assert!(matches!(
        Store::open_with(dir.path(), true, Backend::Redb),
        Err(StoreError::Locked { .. })
    ));
    sync_append(&s, recs(3)).unwrap();
    sync_append(&s, vec![b"x".to_vec()]).unwrap();
    assert!(s.journal_len() > 0);
    s.close();
    let (s, rec) = Store::open_with(dir.path(), true, Backend::Redb).unwrap();
    let mut want = recs(3);
    want.push(b"x".to_vec());
    assert_eq!(rec.records, want);
    let (tx, rx) = channel();
    s.checkpoint(b"SNAP".to_vec(), Box::new(move |r| tx.send(r).unwrap()));
    rx.recv().unwrap().unwrap();
    assert_eq!(s.journal_len(), 0);
    sync_append(&s, vec![b"after".to_vec()]).unwrap();
    // Many appenders at once: one transaction covers several batches.
    let s = Arc::new(s);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    sync_append(&s, vec![format!("{t}-{i}").into_bytes()]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(s.stats().syncs.load(Ordering::Relaxed) < 161);
    drop(s);
    let (_s, rec) = Store::open_with(dir.path(), true, Backend::Redb).unwrap();
    assert_eq!(rec.snapshot.as_deref(), Some(&b"SNAP"[..]));
    assert_eq!(rec.records.len(), 161);
    assert_eq!(rec.records[0], b"after".to_vec());
}

#[test]
fn a_damaged_redb_file_is_refused_not_started_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Store::open_with(dir.path(), true, Backend::Redb).unwrap();
    sync_append(&s, recs(3)).unwrap();
    s.close();
    std::fs::write(
        dir.path().join("facd.redb"),
        b"this is not a database at all",
    )
    .unwrap();
    let e = Store::open_with(dir.path(), true, Backend::Redb)
        .err()
        .expect("a damaged database must not open");
    assert!(e.to_string().contains("facd.redb"), "{e}");
}
