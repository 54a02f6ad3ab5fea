//! An in-memory [`Store`], for tests and throwaway hubs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{Store, StoreResult};

#[derive(Default)]
pub struct MemoryStore {
    trees: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with_tree<R>(&self, tree: &str, f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>) -> R) -> R {
        let mut trees = self
            .trees
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(trees.entry(tree.to_string()).or_default())
    }
}

impl Store for MemoryStore {
    fn get(&self, tree: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.with_tree(tree, |t| t.get(key).cloned()))
    }

    fn put(&self, tree: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.with_tree(tree, |t| t.insert(key.to_string(), value.to_vec()));
        Ok(())
    }

    fn delete(&self, tree: &str, key: &str) -> StoreResult<bool> {
        Ok(self.with_tree(tree, |t| t.remove(key).is_some()))
    }

    fn scan_prefix(&self, tree: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(self.with_tree(tree, |t| {
            t.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    fn scan_range(&self, tree: &str, from: &str, to: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self.with_tree(tree, |t| {
            t.range(from.to_string()..to.to_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    fn compare_and_swap(
        &self,
        tree: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> StoreResult<bool> {
        Ok(self.with_tree(tree, |t| {
            if t.get(key).map(Vec::as_slice) != expected {
                return false;
            }
            match new {
                Some(value) => t.insert(key.to_string(), value.to_vec()),
                None => t.remove(key),
            };
            true
        }))
    }

    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }
}
