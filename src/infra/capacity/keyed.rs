//! Slots counted per key (a client address, a group) against a cap, each
//! given back when its [`KeyedSlot`] drops.

use std::hash::Hash;
use std::sync::Arc;

use dashmap::DashMap;

/// Held slots per key.
pub struct KeyedSlots<K: Hash + Eq + Clone> {
    held: DashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> Default for KeyedSlots<K> {
    fn default() -> Self {
        Self {
            held: DashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> KeyedSlots<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes a slot for `key` if it holds fewer than `cap`.
    pub fn take(self: &Arc<Self>, key: K, cap: usize) -> Option<KeyedSlot<K>> {
        let mut held = self.held.entry(key.clone()).or_insert(0);
        if *held >= cap {
            return None;
        }
        *held += 1;
        Some(KeyedSlot {
            slots: self.clone(),
            key: Some(key),
        })
    }

    /// Slots held now, by key.
    pub fn counts(&self) -> Vec<(K, usize)> {
        self.held
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }

    /// Slots `key` holds now.
    #[cfg(test)]
    pub fn held(&self, key: &K) -> usize {
        self.held.get(key).map_or(0, |n| *n)
    }

    /// Keys holding at least one slot.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.held.len()
    }
}

/// One held slot; given back on drop or [`KeyedSlot::release`].
pub struct KeyedSlot<K: Hash + Eq + Clone> {
    slots: Arc<KeyedSlots<K>>,
    key: Option<K>,
}

impl<K: Hash + Eq + Clone> KeyedSlot<K> {
    /// Gives the slot back now (once).
    pub fn release(&mut self) {
        if let Some(key) = self.key.take() {
            self.slots.held.remove_if_mut(&key, |_, held| {
                *held = held.saturating_sub(1);
                *held == 0
            });
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for KeyedSlot<K> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_key_and_come_back() {
        let slots = KeyedSlots::<u64>::new();
        let a1 = slots.take(1, 2).expect("room");
        let mut a2 = slots.take(1, 2).expect("room");
        assert!(slots.take(1, 2).is_none(), "key 1 is full");
        let _b = slots.take(2, 2).expect("other keys are apart");
        a2.release();
        a2.release();
        assert_eq!(slots.held(&1), 1, "released once");
        drop(a1);
        assert_eq!(slots.held(&1), 0);
        assert_eq!(slots.keys(), 1, "empty keys are forgotten");
    }
}
