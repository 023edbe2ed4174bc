//! Presence data: the input is JSON, `[a, b]` or any value `a`. Whatever
//! `from_value` accepts is a flat map of strings and numbers, keys of 1 to
//! 64 bytes, at most 4096 bytes serialised, and accepted again as itself;
//! `merged` keeps the update's values and the rest of the old map, says
//! `changed` exactly when the map changed, stays under the cap, and is
//! idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{PresenceData, MAX_KEY_BYTES, MAX_PRESENCE_BYTES};
use serde_json::Value;

fn check(data: &PresenceData) {
    let value = data.to_value();
    let map = value.as_object().expect("an object");
    for (k, v) in map {
        assert!(!k.is_empty() && k.len() <= MAX_KEY_BYTES);
        assert!(v.is_string() || v.is_number());
    }
    assert!(serde_json::to_vec(&value).expect("json").len() <= MAX_PRESENCE_BYTES);
    assert_eq!(
        &PresenceData::from_value(value).expect("accepted again"),
        data
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (a, b) = match value {
        Value::Array(mut pair) if pair.len() == 2 => {
            let b = pair.pop().unwrap_or_default();
            (pair.pop().unwrap_or_default(), Some(b))
        }
        other => (other, None),
    };
    let Ok(old) = PresenceData::from_value(a) else {
        return;
    };
    check(&old);
    let Some(Ok(update)) = b.map(PresenceData::from_value) else {
        return;
    };
    check(&update);
    if let Ok((merged, changed)) = old.merged(&update) {
        check(&merged);
        let (m, o, u) = (merged.to_value(), old.to_value(), update.to_value());
        let (m, o, u) = (
            m.as_object().unwrap(),
            o.as_object().unwrap(),
            u.as_object().unwrap(),
        );
        for (k, v) in u {
            assert_eq!(m.get(k), Some(v), "update lost {k}");
        }
        for (k, v) in o {
            if !u.contains_key(k) {
                assert_eq!(m.get(k), Some(v), "old key {k} lost");
            }
        }
        assert_eq!(
            m.len(),
            o.keys()
                .chain(u.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
        assert_eq!(changed, merged != old, "changed flag wrong");
        let (again, changed_again) = merged.merged(&update).expect("idempotent merge fits");
        assert_eq!(again, merged);
        assert!(!changed_again);
    }
});
