//! The embedded [`Store`]: sled 0.34, one sled tree per named tree.

use std::path::Path;

use super::{Store, StoreError, StoreResult};

/// Hub metadata is small; a modest cache keeps the hub's footprint predictable.
const CACHE_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens (or creates) the database in `path`.
    ///
    /// # Errors
    /// `Backend` when sled cannot open the folder (permissions, another hub holding its lock,
    /// corruption).
    pub fn open(path: &Path) -> StoreResult<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .open()
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        Ok(SledStore { db })
    }

    fn tree(&self, name: &str) -> StoreResult<sled::Tree> {
        self.db.open_tree(name).map_err(backend)
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn key_string(tree: &str, key: &[u8]) -> StoreResult<String> {
    String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
        tree: tree.into(),
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "key is not UTF-8".into(),
    })
}

impl Store for SledStore {
    fn get(&self, tree: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tree(tree)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn put(&self, tree: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.tree(tree)?.insert(key, value).map_err(backend)?;
        Ok(())
    }

    fn delete(&self, tree: &str, key: &str) -> StoreResult<bool> {
        Ok(self.tree(tree)?.remove(key).map_err(backend)?.is_some())
    }

    fn scan_prefix(&self, tree: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in self.tree(tree)?.scan_prefix(prefix) {
            let (key, value) = entry.map_err(backend)?;
            out.push((key_string(tree, &key)?, value.to_vec()));
        }
        Ok(out)
    }

    fn scan_range(&self, tree: &str, from: &str, to: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for entry in self.tree(tree)?.range(from..to) {
            let (key, value) = entry.map_err(backend)?;
            out.push((key_string(tree, &key)?, value.to_vec()));
        }
        Ok(out)
    }

    fn compare_and_swap(
        &self,
        tree: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool> {
        let result = self
            .tree(tree)?
            .compare_and_swap(key, expected, new)
            .map_err(backend)?;
        Ok(result.is_ok())
    }

    fn flush(&self) -> StoreResult<()> {
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}
