//! The metadata store: a small ordered key-value seam that every backend implements.
//!
//! Domain modules keep their records as JSON values under keys they build themselves
//! (`{workspace}/{name}`), in named trees. The seam is deliberately narrow (get, put, delete,
//! prefix scan, compare-and-swap) so that sled today and PostgreSQL later implement the same
//! few operations, and one shared test suite (`store_test_suite!`) holds them to it.

mod memory;
mod sled;

pub use self::memory::MemoryStore;
pub use self::sled::SledStore;

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("backend: {0}")]
    Backend(String),
    #[error("record {tree}/{key} is corrupt: {reason}")]
    Corrupt {
        tree: String,
        key: String,
        reason: String,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl crate::ServiceError for StoreError {
    fn error_code(&self) -> crate::ErrorCode {
        crate::ErrorCode::Internal
    }
}

/// An ordered key-value store with named trees.
pub trait Store: Send + Sync + 'static {
    fn get(&self, tree: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    fn put(&self, tree: &str, key: &str, value: &[u8]) -> StoreResult<()>;
    fn delete(&self, tree: &str, key: &str) -> StoreResult<bool>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Every entry with `from <= key < to`, in key order.
    fn scan_range(&self, tree: &str, from: &str, to: &str) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Sets `key` to `new` only if it currently holds `expected` (`None`: absent). Returns
    /// whether it swapped.
    fn compare_and_swap(
        &self,
        tree: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool>;
    /// Makes every write so far durable.
    fn flush(&self) -> StoreResult<()>;
}

/// Typed access to a [`Store`] with JSON records.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl Records {
    pub fn new(store: Arc<dyn Store>) -> Records {
        Records { store }
    }

    /// Records in a fresh in-memory store: for unit tests of the domain crates.
    pub fn in_memory() -> Records {
        Records::new(Arc::new(MemoryStore::new()))
    }

    pub fn get<T: DeserializeOwned>(&self, tree: &str, key: &str) -> StoreResult<Option<T>> {
        match self.store.get(tree, key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, key, &bytes).map(Some),
        }
    }

    pub fn put<T: Serialize>(&self, tree: &str, key: &str, value: &T) -> StoreResult<()> {
        self.store.put(tree, key, &encode(value)?)
    }

    /// Stores `value` only if `key` is absent. Returns whether it was stored.
    pub fn insert_new<T: Serialize>(&self, tree: &str, key: &str, value: &T) -> StoreResult<bool> {
        self.store
            .compare_and_swap(tree, key, None, Some(&encode(value)?))
    }

    pub fn delete(&self, tree: &str, key: &str) -> StoreResult<bool> {
        self.store.delete(tree, key)
    }

    pub fn scan<T: DeserializeOwned>(&self, tree: &str, prefix: &str) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        for (key, bytes) in self.store.scan_prefix(tree, prefix)? {
            out.push(decode(tree, &key, &bytes)?);
        }
        Ok(out)
    }

    /// Stores bytes as they are (for records kept in their wire form).
    pub fn put_bytes(&self, tree: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.store.put(tree, key, value)
    }

    /// Stores bytes only if `key` is absent. Returns whether it was stored.
    pub fn insert_new_bytes(&self, tree: &str, key: &str, value: &[u8]) -> StoreResult<bool> {
        self.store.compare_and_swap(tree, key, None, Some(value))
    }

    pub fn get_bytes(&self, tree: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.store.get(tree, key)
    }

    pub fn scan_range_bytes(
        &self,
        tree: &str,
        from: &str,
        to: &str,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.store.scan_range(tree, from, to)
    }

    pub fn scan_bytes(&self, tree: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.store.scan_prefix(tree, prefix)
    }

    /// Every record whose key starts with `prefix`, with its key.
    pub fn scan_with_keys<T: DeserializeOwned>(
        &self,
        tree: &str,
        prefix: &str,
    ) -> StoreResult<Vec<(String, T)>> {
        let mut out = Vec::new();
        for (key, bytes) in self.store.scan_prefix(tree, prefix)? {
            let value = decode(tree, &key, &bytes)?;
            out.push((key, value));
        }
        Ok(out)
    }

    pub fn keys(&self, tree: &str, prefix: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .store
            .scan_prefix(tree, prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    pub fn count(&self, tree: &str, prefix: &str) -> StoreResult<usize> {
        Ok(self.store.scan_prefix(tree, prefix)?.len())
    }

    /// Deletes every record whose key starts with `prefix`; returns how many there were.
    pub fn delete_prefix(&self, tree: &str, prefix: &str) -> StoreResult<usize> {
        let keys = self.keys(tree, prefix)?;
        for key in &keys {
            self.store.delete(tree, key)?;
        }
        Ok(keys.len())
    }

    /// Reads, changes and writes back one record, retrying when another writer got there
    /// first. `change` returns `Err` to abort; it may run more than once.
    pub fn update<T, E>(
        &self,
        tree: &str,
        key: &str,
        mut change: impl FnMut(Option<T>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        E: From<StoreError>,
    {
        loop {
            let current = self.store.get(tree, key)?;
            let decoded = match &current {
                None => None,
                Some(bytes) => Some(decode::<T>(tree, key, bytes)?),
            };
            let next = change(decoded)?;
            let encoded = encode(&next)?;
            if self
                .store
                .compare_and_swap(tree, key, current.as_deref(), Some(&encoded))?
            {
                return Ok(next);
            }
        }
    }

    pub fn flush(&self) -> StoreResult<()> {
        self.store.flush()
    }
}

fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

fn decode<T: DeserializeOwned>(tree: &str, key: &str, bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree: tree.into(),
        key: key.into(),
        reason: e.to_string(),
    })
}

/// The behaviour every [`Store`] implementation must show. Invoke with a constructor
/// expression that yields a fresh store: `store_test_suite!(memory, MemoryStore::new());`.
/// Exported so that a back end in another crate (PostgreSQL) runs the same suite.
#[macro_export]
macro_rules! store_test_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::storage::Store;

            #[test]
            fn get_put_delete() {
                let (store, _guard) = $make;
                assert_eq!(store.get("t", "a").unwrap(), None);
                store.put("t", "a", b"1").unwrap();
                assert_eq!(store.get("t", "a").unwrap(), Some(b"1".to_vec()));
                assert_eq!(store.get("other", "a").unwrap(), None, "trees are separate");
                assert!(store.delete("t", "a").unwrap());
                assert!(!store.delete("t", "a").unwrap());
                assert_eq!(store.get("t", "a").unwrap(), None);
            }

            #[test]
            fn scan_is_ordered_and_bounded_by_prefix() {
                let (store, _guard) = $make;
                for key in ["ws1/b", "ws1/a", "ws2/a", "ws10/a"] {
                    store.put("t", key, key.as_bytes()).unwrap();
                }
                let keys: Vec<String> = store
                    .scan_prefix("t", "ws1/")
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(keys, vec!["ws1/a".to_string(), "ws1/b".to_string()]);
                assert_eq!(store.scan_prefix("t", "").unwrap().len(), 4);
            }

            #[test]
            fn scan_range_is_half_open() {
                let (store, _guard) = $make;
                for key in ["a/1", "a/2", "a/3", "b/1"] {
                    store.put("t", key, b"x").unwrap();
                }
                let keys: Vec<String> = store
                    .scan_range("t", "a/2", "b/1")
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(keys, vec!["a/2".to_string(), "a/3".to_string()]);
                assert!(store.scan_range("t", "c", "d").unwrap().is_empty());
            }

            #[test]
            fn compare_and_swap_only_on_match() {
                let (store, _guard) = $make;
                assert!(store.compare_and_swap("t", "k", None, Some(b"1")).unwrap());
                assert!(!store.compare_and_swap("t", "k", None, Some(b"2")).unwrap());
                assert!(!store
                    .compare_and_swap("t", "k", Some(b"9"), Some(b"2"))
                    .unwrap());
                assert!(store
                    .compare_and_swap("t", "k", Some(b"1"), Some(b"2"))
                    .unwrap());
                assert_eq!(store.get("t", "k").unwrap(), Some(b"2".to_vec()));
                assert!(store.compare_and_swap("t", "k", Some(b"2"), None).unwrap());
                assert_eq!(store.get("t", "k").unwrap(), None);
                store.flush().unwrap();
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    store_test_suite!(memory, (MemoryStore::new(), ()));
    store_test_suite!(sled, {
        let dir = tempfile::tempdir().unwrap();
        (SledStore::open(&dir.path().join("meta")).unwrap(), dir)
    });

    #[test]
    fn update_retries_and_aborts() {
        let records = Records::new(Arc::new(MemoryStore::new()));
        let n: u32 = records
            .update::<u32, StoreError>("t", "n", |v| Ok(v.unwrap_or(0) + 1))
            .unwrap();
        assert_eq!(n, 1);
        let n: u32 = records
            .update::<u32, StoreError>("t", "n", |v| Ok(v.unwrap_or(0) + 1))
            .unwrap();
        assert_eq!(n, 2);
        let aborted =
            records.update::<u32, StoreError>("t", "n", |_| Err(StoreError::Backend("no".into())));
        assert!(aborted.is_err());
        assert_eq!(records.get::<u32>("t", "n").unwrap(), Some(2));
    }
}
