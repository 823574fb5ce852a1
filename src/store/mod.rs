//! The durable store (SPEC §7): an append-only journal of opaque records
//! with group commit, plus snapshots that let the journal be truncated.
//!
//! Files in the storage directory:
//! - `LOCK`: held with `flock(LOCK_EX)` while facd runs; a second facd on the
//!   same directory is refused.
//! - `journal`: `FACDJ001`, then records `[len u32 LE][crc32 u32 LE][payload]`.
//! - `snapshot`: `FACDS001` and one record; written to `snapshot.tmp`,
//!   fsynced, renamed, and the directory fsynced.
//!
//! One committer thread owns the files. It takes every batch queued while the
//! previous sync ran, writes them with one `write`, calls `fdatasync` once,
//! then reports each batch (group commit). With a group-commit interval
//! ([`Store::set_group_commit`], `storage.group_commit_ms`) a sync starts no
//! sooner than that after the previous one started: under load each
//! `fdatasync` then covers every change of the interval, so their number per
//! second is bounded whatever the disk's speed (PostgreSQL's `commit_delay`,
//! MySQL's `binlog_group_commit_sync_delay`); an idle store syncs at once.
//! The caller answers success only
//! after its batch is reported durable. A failed write is reported to every
//! batch it covered; the store then refuses appends until [`Store::reset`]
//! (after the caller has rolled its state back) truncates the journal to its
//! last good length.
//!
//! Recovery: a torn last record (short, or failing its CRC at the very end)
//! is dropped with a warning; a bad record followed by more data is a
//! corruption and `open` fails with the file and offset, never starting empty.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use tracing::{error, warn};

pub use crate::config::Backend;

pub mod postgres;
mod redb_backend;

use redb_backend::RedbJournal;

const JOURNAL_MAGIC: &[u8; 8] = b"FACDJ001";
const SNAPSHOT_MAGIC: &[u8; 8] = b"FACDS001";
/// A record larger than this is taken as corruption.
const MAX_RECORD: usize = 64 << 20;

/// What went wrong, with the file and what was being done.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    /// Another process holds the directory.
    #[error("{dir}: another facd is using this storage directory (lock held)")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// An I/O error.
    #[error("{path}: {op} failed: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        message: String,
    },
    /// The files are damaged in a way recovery must not paper over.
    #[error("{path}: corrupt at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        what: String,
    },
    /// An earlier write failed and the caller has not reset the store yet.
    #[error("the journal is unavailable after a failed write")]
    Failed,
    /// The committer thread is gone.
    #[error("the store is closed")]
    Closed,
    /// PostgreSQL (`storage.backend = "postgres"`) refused or is unreachable.
    #[error("postgres: {0}")]
    Database(String),
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl Fn(std::io::Error) -> StoreError + 'a {
    move |e| StoreError::Io {
        path: path.to_path_buf(),
        op,
        message: e.to_string(),
    }
}

/// A torn tail dropped at recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the last good record ended.
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped: u64,
}

/// What `open` found on disk.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The snapshot's payload, if any.
    pub snapshot: Option<Vec<u8>>,
    /// The journal records after the snapshot, in order.
    pub records: Vec<Vec<u8>>,
    /// A torn last record that was dropped.
    pub torn_tail: Option<TornTail>,
}

/// Called on the committer thread with the outcome of a batch.
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Cmd {
    Append(Vec<Vec<u8>>, Done),
    GroupCommit(Duration),
    Checkpoint(Vec<u8>, Done),
    Reset,
    Close,
}

/// Counters, for tests, logs and `GET /metrics`.
#[derive(Debug)]
pub struct StoreStats {
    /// fdatasync calls on the journal.
    pub syncs: AtomicU64,
    /// Records made durable.
    pub records: AtomicU64,
    /// Bytes in the journal now.
    pub journal_bytes: AtomicU64,
    /// Seconds each group commit's `write` took (redb: the whole commit).
    pub write_seconds: Histogram,
    /// Seconds each `fdatasync` took.
    pub sync_seconds: Histogram,
    /// Records per group commit.
    pub batch_records: Histogram,
}

impl Default for StoreStats {
    fn default() -> Self {
        // 10 µs to about 1.3 s for I/O; 1 to 4096 records per group.
        let latency = || Histogram::new(exponential_buckets(1e-5, 2.0, 18));
        Self {
            syncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
            write_seconds: latency(),
            sync_seconds: latency(),
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

/// The store. Dropping it without [`Store::close`] stops the committer too.
pub struct Store {
    tx: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<StoreStats>,
    _lock: File,
}

impl Store {
    /// Opens (creating) `dir` with the file journal, takes the lock, and
    /// recovers. `sync = false` skips fdatasync (benchmarks only: not durable).
    pub fn open(dir: &Path, sync: bool) -> Result<(Self, Recovered), StoreError> {
        Self::open_with(dir, sync, Backend::Journal)
    }

    /// Like [`Store::open`], with the journal in `backend`.
    pub fn open_with(
        dir: &Path,
        sync: bool,
        backend: Backend,
    ) -> Result<(Self, Recovered), StoreError> {
        if backend == Backend::Postgres {
            return Err(StoreError::Database(
                "PostgreSQL is not a local journal (see store::postgres)".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(io(dir, "create directory"))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "open"))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked {
                dir: dir.to_path_buf(),
            });
        }
        if backend == Backend::Redb {
            let (journal, snapshot, records) = RedbJournal::open(dir, sync)?;
            let stats = Arc::new(StoreStats::default());
            stats.journal_bytes.store(journal.len(), Ordering::Relaxed);
            let recovered = Recovered {
                snapshot,
                records,
                torn_tail: None,
            };
            return Self::start(dir, Journal::Redb(journal), sync, stats, lock, recovered);
        }
        let snap_path = dir.join("snapshot");
        let snapshot = match std::fs::read(&snap_path) {
            Ok(bytes) => Some(read_snapshot(&snap_path, &bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&snap_path, "read")(e)),
        };
        let journal_path = dir.join("journal");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&journal_path)
            .map_err(io(&journal_path, "open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io(&journal_path, "read"))?;
        let (records, good, torn_tail) = if bytes.is_empty() {
            file.write_all(JOURNAL_MAGIC)
                .map_err(io(&journal_path, "write"))?;
            file.sync_all().map_err(io(&journal_path, "fsync"))?;
            (Vec::new(), JOURNAL_MAGIC.len() as u64, None)
        } else {
            read_journal(&journal_path, &bytes)?
        };
        if let Some(t) = &torn_tail {
            warn!(path = %journal_path.display(), offset = t.offset, dropped = t.dropped, "journal: torn last record dropped");
            file.set_len(good).map_err(io(&journal_path, "truncate"))?;
            file.sync_all().map_err(io(&journal_path, "fsync"))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(good))
                .map_err(io(&journal_path, "seek"))?;
            if good == 0 {
                file.write_all(JOURNAL_MAGIC)
                    .map_err(io(&journal_path, "write"))?;
                file.sync_all().map_err(io(&journal_path, "fsync"))?;
            }
        }
        let good = good.max(JOURNAL_MAGIC.len() as u64);
        let stats = Arc::new(StoreStats::default());
        stats.journal_bytes.store(good, Ordering::Relaxed);
        let journal = Journal::File(FileJournal {
            dir: dir.to_path_buf(),
            journal_path,
            file,
            good,
        });
        let recovered = Recovered {
            snapshot,
            records,
            torn_tail,
        };
        Self::start(dir, journal, sync, stats, lock, recovered)
    }

    fn start(
        dir: &Path,
        journal: Journal,
        sync: bool,
        stats: Arc<StoreStats>,
        lock: File,
        recovered: Recovered,
    ) -> Result<(Self, Recovered), StoreError> {
        let (tx, rx) = mpsc::channel();
        let committer = Committer {
            journal,
            failed: false,
            sync,
            interval: Duration::ZERO,
            last_commit: None,
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("facd-store".into())
            .spawn(move || committer.run(rx))
            .map_err(io(dir, "start the committer thread"))?;
        Ok((
            Self {
                tx,
                thread: Some(thread),
                stats,
                _lock: lock,
            },
            recovered,
        ))
    }

    /// Queues `records`; `done` runs once they are durable (or failed).
    pub fn append(&self, records: Vec<Vec<u8>>, done: Done) {
        if let Err(mpsc::SendError(Cmd::Append(_, done))) = self.tx.send(Cmd::Append(records, done))
        {
            done(Err(StoreError::Closed));
        }
    }

    /// Replaces everything journaled so far by `snapshot` (ordered with appends).
    pub fn checkpoint(&self, snapshot: Vec<u8>, done: Done) {
        if let Err(mpsc::SendError(Cmd::Checkpoint(_, done))) =
            self.tx.send(Cmd::Checkpoint(snapshot, done))
        {
            done(Err(StoreError::Closed));
        }
    }

    /// Syncs start at least `interval` apart (see the module documentation);
    /// zero, the default, syncs as soon as the previous sync has ended.
    pub fn set_group_commit(&self, interval: Duration) {
        let _ = self.tx.send(Cmd::GroupCommit(interval));
    }

    /// After a failure: drop what was not made durable and accept appends again.
    pub fn reset(&self) {
        let _ = self.tx.send(Cmd::Reset);
    }

    /// Bytes in the journal (for the snapshot policy).
    pub fn journal_len(&self) -> u64 {
        self.stats.journal_bytes.load(Ordering::Relaxed)
    }

    /// The counters, shared (for `GET /metrics`).
    pub fn shared_stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Flushes and stops the committer; every earlier `done` has run.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.tx.send(Cmd::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn read_snapshot(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |offset: u64, what: &str| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what: what.to_string(),
    };
    if !bytes.starts_with(SNAPSHOT_MAGIC) {
        return Err(corrupt(0, "not a facd snapshot (bad magic)"));
    }
    match next_record(bytes, SNAPSHOT_MAGIC.len()) {
        Some(Ok((payload, end))) if end == bytes.len() => Ok(payload.to_vec()),
        Some(Ok(_)) => Err(corrupt(8, "trailing bytes after the snapshot record")),
        Some(Err(what)) => Err(corrupt(8, what)),
        None => Err(corrupt(8, "truncated snapshot")),
    }
}

/// One record at `at`: `None` if it runs past the end, `Err` if its CRC fails.
fn next_record(bytes: &[u8], at: usize) -> Option<Result<(&[u8], usize), &'static str>> {
    let head = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_RECORD {
        return Some(Err("record length out of range"));
    }
    let payload = bytes.get(at + 8..at + 8 + len)?;
    if crc32fast::hash(payload) != crc {
        return Some(Err("record checksum mismatch"));
    }
    Some(Ok((payload, at + 8 + len)))
}

type ReadJournal = (Vec<Vec<u8>>, u64, Option<TornTail>);

fn read_journal(path: &Path, bytes: &[u8]) -> Result<ReadJournal, StoreError> {
    let corrupt = |offset: usize, what: &str| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        what: what.to_string(),
    };
    if bytes.len() < JOURNAL_MAGIC.len() {
        // A crash while writing the header of a new journal.
        if JOURNAL_MAGIC.starts_with(bytes) {
            return Ok((
                Vec::new(),
                0,
                Some(TornTail {
                    offset: 0,
                    dropped: bytes.len() as u64,
                }),
            ));
        }
        return Err(corrupt(0, "not a facd journal (bad magic)"));
    }
    if !bytes.starts_with(JOURNAL_MAGIC) {
        return Err(corrupt(0, "not a facd journal (bad magic)"));
    }
    let mut records = Vec::new();
    let mut at = JOURNAL_MAGIC.len();
    while at < bytes.len() {
        match next_record(bytes, at) {
            Some(Ok((payload, end))) => {
                records.push(payload.to_vec());
                at = end;
            }
            // Runs past the end: a write cut short by the crash.
            None => return Ok((records, at as u64, torn(at, bytes.len()))),
            Some(Err(what)) => {
                let len =
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
                        as usize;
                // A bad record that ends the file is torn too; one with data
                // after it is corruption in the middle.
                if what == "record checksum mismatch" && at + 8 + len == bytes.len() {
                    return Ok((records, at as u64, torn(at, bytes.len())));
                }
                return Err(corrupt(at, what));
            }
        }
    }
    Ok((records, at as u64, None))
}

fn torn(at: usize, len: usize) -> Option<TornTail> {
    Some(TornTail {
        offset: at as u64,
        dropped: (len - at) as u64,
    })
}

/// The file journal's state on the committer thread.
struct FileJournal {
    dir: PathBuf,
    journal_path: PathBuf,
    file: File,
    /// Length of the journal up to its last durable record.
    good: u64,
}

enum Journal {
    File(FileJournal),
    Redb(RedbJournal),
}

struct Committer {
    journal: Journal,
    failed: bool,
    sync: bool,
    /// Least time between the starts of two commits.
    interval: Duration,
    /// When the last commit started.
    last_commit: Option<Instant>,
    stats: Arc<StoreStats>,
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        while let Ok(first) = rx.recv() {
            // Group commit: wait out the interval since the last commit, so
            // this one takes every append queued until then.
            if let (Cmd::Append(..), Some(last)) = (&first, self.last_commit) {
                if let Some(rest) = self.interval.checked_sub(last.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut appends: Vec<(Vec<Vec<u8>>, Done)> = Vec::new();
            for cmd in batch {
                match cmd {
                    Cmd::Append(records, done) => appends.push((records, done)),
                    Cmd::GroupCommit(interval) => self.interval = interval,
                    Cmd::Checkpoint(snapshot, done) => {
                        self.commit(std::mem::take(&mut appends));
                        done(self.checkpoint(&snapshot));
                    }
                    Cmd::Reset => {
                        self.commit(std::mem::take(&mut appends));
                        self.reset();
                    }
                    Cmd::Close => {
                        self.commit(std::mem::take(&mut appends));
                        return;
                    }
                }
            }
            self.commit(appends);
        }
    }

    /// One write and one sync for every queued batch (group commit).
    fn commit(&mut self, appends: Vec<(Vec<Vec<u8>>, Done)>) {
        if appends.is_empty() {
            return;
        }
        self.last_commit = Some(Instant::now());
        if self.failed {
            for (_, done) in appends {
                done(Err(StoreError::Failed));
            }
            return;
        }
        let records: Vec<&[u8]> = appends
            .iter()
            .flat_map(|(records, _)| records.iter().map(Vec::as_slice))
            .collect();
        let count = records.len() as u64;
        self.stats.batch_records.observe(count as f64);
        let result = self.write(&records);
        match &result {
            Ok(len) => {
                self.stats.journal_bytes.store(*len, Ordering::Relaxed);
                self.stats.records.fetch_add(count, Ordering::Relaxed);
                if self.sync {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                error!(error = %e, "journal write failed; refusing changes until it is reset");
                self.failed = true;
            }
        }
        let result = result.map(|_| ());
        for (_, done) in appends {
            done(result.clone());
        }
    }

    /// Writes one group; returns the journal length after it.
    fn write(&mut self, records: &[&[u8]]) -> Result<u64, StoreError> {
        let f = match &mut self.journal {
            Journal::Redb(r) => {
                let t = Instant::now();
                r.write(records)?;
                self.stats.write_seconds.observe(t.elapsed().as_secs_f64());
                return Ok(r.len());
            }
            Journal::File(f) => f,
        };
        let mut buf = Vec::with_capacity(records.iter().map(|r| r.len() + 8).sum());
        for r in records {
            frame(r, &mut buf);
        }
        let t = Instant::now();
        f.file
            .write_all(&buf)
            .map_err(io(&f.journal_path, "write"))?;
        self.stats.write_seconds.observe(t.elapsed().as_secs_f64());
        if self.sync {
            let t = Instant::now();
            // SAFETY: fdatasync on a descriptor we own.
            if unsafe { libc::fdatasync(f.file.as_raw_fd()) } != 0 {
                return Err(io(&f.journal_path, "fdatasync")(
                    std::io::Error::last_os_error(),
                ));
            }
            self.stats.sync_seconds.observe(t.elapsed().as_secs_f64());
        }
        f.good += buf.len() as u64;
        Ok(f.good)
    }

    fn reset(&mut self) {
        if !self.failed {
            return;
        }
        let f = match &mut self.journal {
            // An aborted redb transaction left nothing behind.
            Journal::Redb(_) => {
                self.failed = false;
                return;
            }
            Journal::File(f) => f,
        };
        let r = f.file.set_len(f.good).and_then(|()| {
            std::io::Seek::seek(&mut f.file, std::io::SeekFrom::Start(f.good)).map(|_| ())
        });
        match r {
            Ok(()) => self.failed = false,
            Err(e) => {
                error!(path = %f.journal_path.display(), error = %e, "journal: cannot truncate after a failed write")
            }
        }
    }

    fn checkpoint(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Failed);
        }
        let f = match &mut self.journal {
            Journal::Redb(r) => {
                r.checkpoint(snapshot)?;
                self.stats.journal_bytes.store(r.len(), Ordering::Relaxed);
                return Ok(());
            }
            Journal::File(f) => f,
        };
        let tmp = f.dir.join("snapshot.tmp");
        let dst = f.dir.join("snapshot");
        let mut buf = SNAPSHOT_MAGIC.to_vec();
        frame(snapshot, &mut buf);
        let mut snap = File::create(&tmp).map_err(io(&tmp, "create"))?;
        snap.write_all(&buf).map_err(io(&tmp, "write"))?;
        snap.sync_all().map_err(io(&tmp, "fsync"))?;
        std::fs::rename(&tmp, &dst).map_err(io(&dst, "rename"))?;
        File::open(&f.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&f.dir, "fsync directory"))?;
        // Everything journaled is in the snapshot now: start the journal over.
        let len = JOURNAL_MAGIC.len() as u64;
        f.file
            .set_len(len)
            .map_err(io(&f.journal_path, "truncate"))?;
        std::io::Seek::seek(&mut f.file, std::io::SeekFrom::Start(len))
            .map_err(io(&f.journal_path, "seek"))?;
        f.file.sync_all().map_err(io(&f.journal_path, "fsync"))?;
        f.good = len;
        self.stats.journal_bytes.store(len, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
