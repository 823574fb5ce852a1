//! The journal in an embedded database, redb (`storage.backend = "redb"`):
//! the alternative the durability issue asked to measure against our own
//! file journal. Same contract as the file journal: one committer thread,
//! one write transaction per group commit, durable (redb `Immediate`:
//! fsync of data and commit slot) before the batch is reported.
//!
//! Tables: `journal` (sequence number → record) and `meta` (`"snapshot"`
//! → the snapshot). A checkpoint writes the snapshot and empties the journal
//! in one transaction. redb commits are atomic, so there is no torn tail: a
//! crash mid-commit leaves the previous commit.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

const JOURNAL: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("journal");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const SNAPSHOT_KEY: &str = "snapshot";

/// The database file in the storage directory.
pub(super) const FILE: &str = "facd.redb";

fn err<'a>(path: &'a Path, op: &'static str) -> impl Fn(String) -> StoreError + 'a {
    move |message| StoreError::Io {
        path: path.to_path_buf(),
        op,
        message,
    }
}

/// The redb journal.
pub(super) struct RedbJournal {
    path: PathBuf,
    db: Database,
    next: u64,
    /// Record bytes since the last checkpoint (for the snapshot policy).
    bytes: u64,
    sync: bool,
}

/// What was in the database at open.
pub(super) type Opened = (RedbJournal, Option<Vec<u8>>, Vec<Vec<u8>>);

impl RedbJournal {
    /// Opens (creating) the database and reads the snapshot and journal.
    pub(super) fn open(dir: &Path, sync: bool) -> Result<Opened, StoreError> {
        let path = dir.join(FILE);
        // redb verifies its own checksums and refuses a damaged file.
        let db = Database::create(&path).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            offset: 0,
            what: e.to_string(),
        })?;
        let read = |e: String| err(&path, "read")(e);
        let tx = db.begin_read().map_err(|e| read(e.to_string()))?;
        let snapshot = match tx.open_table(META) {
            Ok(t) => t
                .get(SNAPSHOT_KEY)
                .map_err(|e| read(e.to_string()))?
                .map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(read(e.to_string())),
        };
        let mut records = Vec::new();
        let mut next = 0;
        let mut bytes = 0;
        match tx.open_table(JOURNAL) {
            Ok(t) => {
                for item in t.iter().map_err(|e| read(e.to_string()))? {
                    let (k, v) = item.map_err(|e| read(e.to_string()))?;
                    next = k.value() + 1;
                    bytes += v.value().len() as u64 + 8;
                    records.push(v.value().to_vec());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(read(e.to_string())),
        }
        drop(tx);
        Ok((
            Self {
                path,
                db,
                next,
                bytes,
                sync,
            },
            snapshot,
            records,
        ))
    }

    fn begin(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut tx = self
            .db
            .begin_write()
            .map_err(|e| err(&self.path, "begin write")(e.to_string()))?;
        let level = if self.sync {
            Durability::Immediate
        } else {
            Durability::None
        };
        tx.set_durability(level)
            .map_err(|e| err(&self.path, "set durability")(e.to_string()))?;
        Ok(tx)
    }

    /// One transaction for the whole group; durable when it returns Ok.
    pub(super) fn write(&mut self, records: &[&[u8]]) -> Result<(), StoreError> {
        let w = |e: String| err(&self.path, "write")(e);
        let tx = self.begin()?;
        let mut n = self.next;
        let mut bytes = 0;
        {
            let mut t = tx.open_table(JOURNAL).map_err(|e| w(e.to_string()))?;
            for r in records {
                t.insert(n, *r).map_err(|e| w(e.to_string()))?;
                n += 1;
                bytes += r.len() as u64 + 8;
            }
        }
        tx.commit()
            .map_err(|e| err(&self.path, "commit")(e.to_string()))?;
        self.next = n;
        self.bytes += bytes;
        Ok(())
    }

    /// The snapshot replaces the journal, atomically.
    pub(super) fn checkpoint(&mut self, snapshot: &[u8]) -> Result<(), StoreError> {
        let w = |e: String| err(&self.path, "checkpoint")(e);
        let mut tx = self.begin()?;
        // A checkpoint is always made durable, even with sync = false.
        tx.set_durability(Durability::Immediate)
            .map_err(|e| w(e.to_string()))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| w(e.to_string()))?;
            meta.insert(SNAPSHOT_KEY, snapshot)
                .map_err(|e| w(e.to_string()))?;
        }
        tx.delete_table(JOURNAL).map_err(|e| w(e.to_string()))?;
        tx.commit().map_err(|e| w(e.to_string()))?;
        self.bytes = 0;
        Ok(())
    }

    /// Journal bytes since the last checkpoint.
    pub(super) fn len(&self) -> u64 {
        self.bytes
    }
}
