//! Tests of [`LocalSessionKeys`]: minting, uniqueness, expiry, and keys
//! that survive a restart of the store.

use super::*;
use crate::infra::clock::ManualClock;
use crate::presence::session_keys::well_formed;
use std::sync::Arc;
use std::time::Duration;

fn holder(group: u64, id: &str) -> KeyHolder {
    KeyHolder {
        visitor: VisitorKey::new(group, VisitorId::parse(id).expect("id")),
        period: OnlinePeriod::Began(7),
    }
}

#[test]
fn codes_are_six_digits_and_find_their_visitor_until_they_expire() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let keys = LocalSessionKeys::in_memory(clock.clone(), 1200, 100);
    let v = holder(72, "v-1");
    let code = keys.issue(&v, "c1").expect("code");
    assert!(well_formed(&code.key), "{code:?}");
    assert_eq!(code.expires, 1_800_000_000 + 1200);
    assert_eq!(keys.find(72, &code.key), Some(v.clone()));
    assert_eq!(keys.find(73, &code.key), None, "keys are per group");
    clock.advance(Duration::from_secs(1200));
    assert_eq!(keys.find(72, &code.key), None);
    assert_eq!(keys.sweep(&|_| true), 1);
}

#[test]
fn a_connection_keeps_its_key_until_it_expires_and_tabs_hold_their_own() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let keys = LocalSessionKeys::in_memory(clock.clone(), 1200, 100);
    let v = holder(72, "v-1");
    let first = keys.issue(&v, "c1").expect("code");
    clock.advance(Duration::from_secs(1199));
    assert_eq!(keys.issue(&v, "c1"), Ok(first.clone()), "same key");
    let tab = keys.issue(&v, "c2").expect("code");
    assert_ne!(tab.key, first.key, "another tab holds its own");
    clock.advance(Duration::from_secs(1));
    let renewed = keys.issue(&v, "c1").expect("code");
    assert_ne!(renewed.expires, first.expires, "a fresh key once expired");
    keys.connection_closed("c2");
    assert_eq!(
        keys.find(72, &tab.key),
        Some(v),
        "the key outlives its socket"
    );
    keys.not_current(72, &tab.key);
    assert_eq!(keys.find(72, &tab.key), None);
}

#[test]
fn minting_spends_a_per_group_bucket_that_refills_over_the_minute() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let keys = LocalSessionKeys::in_memory(clock.clone(), 1200, 3);
    let v = holder(72, "v-1");
    for c in ["c1", "c2", "c3"] {
        keys.issue(&v, c).expect("within the burst");
    }
    assert_eq!(
        keys.issue(&v, "c4"),
        Err(IssueError::RateLimited {
            retry_after_secs: 20
        })
    );
    assert!(keys.issue(&v, "c1").is_ok(), "a held key is no new mint");
    assert!(keys.issue(&holder(73, "v-1"), "c5").is_ok(), "per group");
    clock.advance(Duration::from_secs(20));
    assert!(keys.issue(&v, "c4").is_ok(), "one mint refilled");
    assert!(keys.issue(&v, "c6").is_err());
}

#[test]
fn codes_are_unique_within_a_group() {
    let clock = Arc::new(ManualClock::new(0));
    let keys = LocalSessionKeys::in_memory(clock, 1200, 10_000);
    let mut seen = std::collections::HashSet::new();
    for i in 0..2000 {
        let id = format!("v-{i}");
        let code = keys.issue(&holder(72, &id), &id).expect("code");
        assert!(seen.insert(code.key), "duplicate code");
    }
}

#[test]
fn shape_check() {
    for ok in ["000000", "482913"] {
        assert!(well_formed(ok));
    }
    for bad in ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"] {
        assert!(!well_formed(bad), "{bad}");
    }
}

#[test]
fn a_durable_key_survives_a_restart_bound_to_the_first_period_within_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let v = holder(72, "v-1");
    let code = {
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        let keys =
            LocalSessionKeys::durable(store.clone(), clock.clone(), 1200, 100, 5000).expect("keys");
        let code = keys.issue(&v, "c1").expect("code");
        store.close().expect("close");
        code
    };
    clock.advance(Duration::from_secs(30));
    let store = Arc::new(Store::open(dir.path()).expect("reopen"));
    let keys = LocalSessionKeys::durable(store, clock.clone(), 1200, 100, 5000).expect("restored");
    let restored = keys.find(72, &code.key).expect("the key came back");
    assert_eq!(restored.visitor, v.visitor);
    let start = 1_800_000_030_000;
    assert_eq!(restored.period, OnlinePeriod::FirstBy(start + 5000));
    assert!(
        restored.period.includes(start + 4999),
        "back within the grace"
    );
    assert!(!restored.period.includes(start + 5001), "a later period");
    clock.advance(Duration::from_secs(1200));
    assert_eq!(keys.find(72, &code.key), None, "it still expires");
}

#[test]
fn a_dropped_or_expired_key_stays_gone_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (dropped, expiring) = {
        let store = Arc::new(Store::open(dir.path()).expect("open"));
        let keys =
            LocalSessionKeys::durable(store.clone(), clock.clone(), 60, 100, 5000).expect("keys");
        let dropped = keys.issue(&holder(72, "v-1"), "c1").expect("code");
        keys.not_current(72, &dropped.key);
        let expiring = keys.issue(&holder(72, "v-2"), "c2").expect("code");
        store.close().expect("close");
        (dropped, expiring)
    };
    clock.advance(Duration::from_secs(60));
    let store = Arc::new(Store::open(dir.path()).expect("reopen"));
    let keys = LocalSessionKeys::durable(store, clock, 60, 100, 5000).expect("restored");
    assert_eq!(keys.find(72, &dropped.key), None);
    assert_eq!(keys.find(72, &expiring.key), None);
    assert!(keys.is_empty());
}

#[test]
fn a_key_that_cannot_be_stored_is_not_handed_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let store = Arc::new(Store::open(dir.path()).expect("open"));
    let keys = LocalSessionKeys::durable(store.clone(), clock, 60, 100, 5000).expect("keys");
    store.close().expect("close");
    let refused = keys.issue(&holder(72, "v-1"), "c1");
    assert!(matches!(refused, Err(IssueError::Store(_))), "{refused:?}");
    assert!(keys.is_empty(), "the code was released again");
}
