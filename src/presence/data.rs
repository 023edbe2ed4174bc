//! Presence data: the small, flat key → string-or-number map a visitor
//! publishes (page URL, title, custom fields) and agents read.

use serde::Serialize;
use serde_json::{Map, Value};

/// Largest serialised size of a visitor's presence data, in bytes.
pub const MAX_PRESENCE_BYTES: usize = 4096;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 64;

/// A validated presence map.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct PresenceData(Map<String, Value>);

impl PresenceData {
    /// Validates client-sent data: a flat object of strings and numbers, at
    /// most [`MAX_PRESENCE_BYTES`] serialised.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("data must be a JSON object".to_owned());
        };
        for (key, value) in &map {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                return Err(format!("data keys must be 1 to {MAX_KEY_BYTES} bytes"));
            }
            if !matches!(value, Value::String(_) | Value::Number(_)) {
                return Err(format!("data.{key} must be a string or a number"));
            }
        }
        let data = Self(map);
        data.check_size()?;
        Ok(data)
    }

    fn check_size(&self) -> Result<(), String> {
        let size = serde_json::to_vec(&self.0)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_PRESENCE_BYTES {
            return Err(format!(
                "presence data is {size} bytes serialised; at most {MAX_PRESENCE_BYTES} allowed"
            ));
        }
        Ok(())
    }

    /// Merges `update` into a copy of this map (update wins), refusing a
    /// result over the size cap. Returns the merged map and whether anything
    /// changed.
    pub fn merged(&self, update: &PresenceData) -> Result<(PresenceData, bool), String> {
        let mut merged = self.clone();
        let mut changed = false;
        for (key, value) in &update.0 {
            if merged.0.get(key) != Some(value) {
                merged.0.insert(key.clone(), value.clone());
                changed = true;
            }
        }
        merged.check_size()?;
        Ok((merged, changed))
    }

    /// The map as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_flat_strings_and_numbers() {
        let data = PresenceData::from_value(json!({"url": "https://x/", "n": 3})).expect("valid");
        assert_eq!(data.to_value(), json!({"url": "https://x/", "n": 3}));
    }

    #[test]
    fn rejects_nesting_bools_nulls_and_non_objects() {
        for bad in [
            json!({"a": {"b": 1}}),
            json!({"a": true}),
            json!({"a": null}),
            json!([1]),
            json!("s"),
            json!({"a": [1]}),
        ] {
            assert!(PresenceData::from_value(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn enforces_the_size_cap_on_input_and_on_merge() {
        let big = "x".repeat(MAX_PRESENCE_BYTES);
        assert!(PresenceData::from_value(json!({"a": big})).is_err());
        let half = "y".repeat(MAX_PRESENCE_BYTES / 2);
        let a = PresenceData::from_value(json!({"a": half.clone()})).expect("fits");
        let b = PresenceData::from_value(json!({"b": half})).expect("fits");
        assert!(a.merged(&b).is_err());
    }

    #[test]
    fn merge_reports_changes() {
        let a = PresenceData::from_value(json!({"url": "/1", "t": "x"})).expect("valid");
        let same = PresenceData::from_value(json!({"url": "/1"})).expect("valid");
        let (m, changed) = a.merged(&same).expect("merge");
        assert!(!changed);
        assert_eq!(m, a);
        let next = PresenceData::from_value(json!({"url": "/2"})).expect("valid");
        let (m, changed) = a.merged(&next).expect("merge");
        assert!(changed);
        assert_eq!(m.to_value(), json!({"url": "/2", "t": "x"}));
    }
}
