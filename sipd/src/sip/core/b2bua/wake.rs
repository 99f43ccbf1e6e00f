//! When the B2BUA next needs its clock, without visiting every call: each
//! table of calls, relayed requests and ended branches keeps its entries'
//! next deadlines ordered in a [`BTreeSet`]. Every mutable access marks the
//! entry touched, and a touched entry is re-indexed from its own
//! `next_deadline` (the timers in `transaction/`) before the table is
//! next asked what is due; until then [`Table::next_deadline`] reads the
//! few touched entries directly, so it is exact without `&mut`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Deref;

/// Touched entries re-indexed at once when this many pile up, so that
/// reading the next deadline stays cheap between timeouts.
const MAX_TOUCHED: usize = 64;

/// Anything that wants the clock at some time.
pub(super) trait Timed {
    fn next_deadline(&self) -> Option<u64>;
}

/// A map by key (a Call-ID or a branch) that keeps its entries' next
/// deadlines in order. Reads go through [`Deref`]; the mutating methods
/// shadow `HashMap`'s and note what they touch.
#[derive(Debug)]
pub(super) struct Table<V> {
    map: HashMap<String, V>,
    /// (deadline, key) of every entry with one, as of its last re-index.
    index: BTreeSet<(u64, String)>,
    /// The deadline each key is indexed under.
    at: HashMap<String, u64>,
    /// Keys touched since their last re-index.
    touched: HashSet<String>,
    /// Every entry may have changed (a scan with `values_mut`).
    all_touched: bool,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            map: HashMap::new(),
            index: BTreeSet::new(),
            at: HashMap::new(),
            touched: HashSet::new(),
            all_touched: false,
        }
    }
}

impl<V> Deref for Table<V> {
    type Target = HashMap<String, V>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V: Timed> Table<V> {
    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        if !self.map.contains_key(key) {
            return None;
        }
        self.touch(key);
        self.map.get_mut(key)
    }

    pub(super) fn insert(&mut self, key: String, value: V) -> Option<V> {
        self.touch(&key);
        self.map.insert(key, value)
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<V> {
        let value = self.map.remove(key)?;
        self.touch(key);
        Some(value)
    }

    /// Every entry, mutably: all of them count as touched.
    pub(super) fn values_mut(&mut self) -> std::collections::hash_map::ValuesMut<'_, String, V> {
        self.all_touched = true;
        self.touched.clear();
        self.map.values_mut()
    }

    fn touch(&mut self, key: &str) {
        if self.all_touched || self.touched.len() >= MAX_TOUCHED {
            self.reindex();
        }
        if !self.touched.contains(key) {
            self.touched.insert(key.to_string());
        }
    }

    /// Re-indexes every touched entry.
    pub(super) fn reindex(&mut self) {
        if std::mem::take(&mut self.all_touched) {
            self.touched.clear();
            self.index.clear();
            self.at.clear();
            for (key, value) in &self.map {
                if let Some(t) = value.next_deadline() {
                    self.index.insert((t, key.clone()));
                    self.at.insert(key.clone(), t);
                }
            }
            return;
        }
        for key in std::mem::take(&mut self.touched) {
            if let Some(old) = self.at.remove(&key) {
                self.index.remove(&(old, key.clone()));
            }
            if let Some(t) = self.map.get(&key).and_then(Timed::next_deadline) {
                self.at.insert(key.clone(), t);
                self.index.insert((t, key));
            }
        }
    }

    /// The earliest deadline of any entry.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        if self.all_touched {
            return self.map.values().filter_map(Timed::next_deadline).min();
        }
        let indexed = self
            .index
            .iter()
            .find(|(_, key)| !self.touched.contains(key))
            .map(|(t, _)| *t);
        let touched = self
            .touched
            .iter()
            .filter_map(|key| self.map.get(key))
            .filter_map(Timed::next_deadline);
        indexed.into_iter().chain(touched).min()
    }

    /// The keys of the entries due at `now`, earliest first.
    pub(super) fn due(&mut self, now: u64) -> Vec<String> {
        self.reindex();
        self.index
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, key)| key.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct At(Option<u64>);

    impl Timed for At {
        fn next_deadline(&self) -> Option<u64> {
            self.0
        }
    }

    #[test]
    fn an_entry_whose_deadline_moved_is_woken_at_the_new_time() {
        let mut t = Table::default();
        t.insert("a".into(), At(Some(100)));
        t.insert("b".into(), At(Some(200)));
        t.reindex();
        assert_eq!(t.next_deadline(), Some(100));
        // Later, before anything re-indexes: read from the entry itself.
        if let Some(a) = t.get_mut("a") {
            a.0 = Some(300);
        }
        assert_eq!(t.next_deadline(), Some(200));
        assert_eq!(t.due(250), vec!["b".to_string()]);
        // Earlier.
        if let Some(b) = t.get_mut("b") {
            b.0 = Some(50);
        }
        assert_eq!(t.next_deadline(), Some(50));
        assert_eq!(t.due(60), vec!["b".to_string()]);
        // No timer at all, and gone.
        if let Some(b) = t.get_mut("b") {
            b.0 = None;
        }
        t.remove("a");
        assert_eq!(t.next_deadline(), None);
        assert!(t.due(u64::MAX).is_empty());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_scan_over_every_entry_and_many_touches_keep_the_index_exact() {
        let mut t = Table::default();
        for i in 0..200 {
            t.insert(format!("k{i}"), At(Some(1_000 + i)));
        }
        assert_eq!(t.next_deadline(), Some(1_000));
        assert!(t.touched.len() <= MAX_TOUCHED, "re-indexed on the way");
        for v in t.values_mut() {
            v.0 = v.0.map(|d| d + 10);
        }
        assert_eq!(t.next_deadline(), Some(1_010));
        assert_eq!(t.due(1_011), vec!["k0".to_string(), "k1".to_string()]);
        if let Some(k) = t.get_mut("k150") {
            k.0 = Some(5);
        }
        assert_eq!(t.due(5), vec!["k150".to_string()]);
    }
}
