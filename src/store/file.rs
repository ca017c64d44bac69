//! The SQLite file as opened: deleted or replaced under a running gateway, writes would go to
//! an unlinked inode (or a new, empty file) and be lost at the next start, so its identity is
//! compared before each write and every second.

use std::{
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use super::StoreError;

/// A SQLite file's identity (device and inode) taken when the gateway opened it.
#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    identity: (u64, u64),
    /// Set while the path does not lead to the opened file; logged once per loss.
    lost: AtomicBool,
}

impl SqliteFile {
    /// Takes the identity of the file at `path` now; `None` when it cannot be read (an
    /// in-memory database), which leaves nothing to watch.
    pub fn opened(path: &str) -> Option<SqliteFile> {
        let meta = std::fs::metadata(path).ok()?;
        Some(SqliteFile {
            path: PathBuf::from(path),
            identity: (meta.dev(), meta.ino()),
            lost: AtomicBool::new(false),
        })
    }

    /// Whether the path leads to the opened file now; logs the change when it flips.
    pub fn check(&self) -> Result<(), StoreError> {
        let now = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        let path = self.path.display();
        if matches!(now, Ok(id) if id == self.identity) {
            if self.lost.swap(false, Ordering::AcqRel) {
                log::info!("database file {path} is back; admin writes and /readyz resume");
            }
            return Ok(());
        }
        if !self.lost.swap(true, Ordering::AcqRel) {
            log::error!(
                "database file {path} was deleted or replaced while the gateway runs; admin writes \
                 answer 503 and /readyz 503 until it is back (or the gateway restarts)"
            );
        }
        Err(StoreError::FileLost(path.to_string()))
    }

    /// Whether the file was found lost at the last check.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_file_is_noticed_and_a_returned_one_too() {
        let dir = std::env::temp_dir().join(format!("tollgate-file-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("a.db");
        std::fs::write(&path, b"x").unwrap();
        let file = SqliteFile::opened(path.to_str().unwrap()).unwrap();
        assert!(file.check().is_ok() && !file.is_lost());

        let aside = dir.join("aside.db");
        std::fs::rename(&path, &aside).unwrap();
        assert!(matches!(file.check(), Err(StoreError::FileLost(_))));
        assert!(file.is_lost());
        std::fs::write(&path, b"x").unwrap(); // a new file under the same name: not ours
        assert!(file.check().is_err());
        std::fs::rename(&aside, &path).unwrap();
        assert!(file.check().is_ok() && !file.is_lost());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
