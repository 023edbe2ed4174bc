//! Scoping policies: what a customer's SSO token lets one agent reach.
//!
//! Without a policy an agent reaches every visitor of its group. With one,
//! it reaches only visitors whose id starts with `visitors.id_prefix` and
//! whose presence data holds every `visitors.data` pair, and may invoke only
//! functions that both the group's `invoke_allow` and `functions` allow (a
//! policy narrows, never widens). What a policy does not grant it denies:
//! `{}` grants nothing. Unknown fields and versions are refused when the
//! token is issued, never ignored.
//!
//! The policy travels inside the presence token, so every check is local.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::infra::config::function_allowed;
use crate::infra::config::valid_allow_pattern;

/// The only policy version there is.
pub const POLICY_VERSION: u32 = 1;
/// Largest serialised policy accepted (it rides in every presence token).
pub const MAX_POLICY_BYTES: usize = 1024;
/// Most `functions` patterns and `visitors.data` pairs.
const MAX_ENTRIES: usize = 32;

/// A scoping policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitors: Option<VisitorScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<String>>,
}

/// Which visitors a policy reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitorScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
    /// Presence-data pairs the visitor must hold (strings or numbers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, Value>,
}

impl Policy {
    /// Parses and checks a policy claim; the error is for the client.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let size = serde_json::to_vec(value)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_POLICY_BYTES {
            return Err(format!("policy is larger than {MAX_POLICY_BYTES} bytes"));
        }
        if !value.is_object() {
            return Err("policy must be a JSON object".into());
        }
        let policy: Policy =
            serde_json::from_value(value.clone()).map_err(|e| format!("bad policy: {e}"))?;
        if let Some(version) = policy.version {
            if version != POLICY_VERSION {
                return Err(format!(
                    "unknown policy version {version}; this server knows {POLICY_VERSION}"
                ));
            }
        }
        if let Some(scope) = &policy.visitors {
            if scope.data.len() > MAX_ENTRIES {
                return Err(format!("policy visitors.data has over {MAX_ENTRIES} pairs"));
            }
            if let Some((key, _)) = scope
                .data
                .iter()
                .find(|(_, v)| !(v.is_string() || v.is_number()))
            {
                return Err(format!(
                    "policy visitors.data.{key} must be a string or a number"
                ));
            }
        }
        if let Some(functions) = &policy.functions {
            if functions.len() > MAX_ENTRIES {
                return Err(format!("policy functions has over {MAX_ENTRIES} entries"));
            }
            if let Some(bad) = functions.iter().find(|f| !valid_allow_pattern(f)) {
                return Err(format!("policy function pattern {bad:?} is not valid"));
            }
        }
        Ok(policy)
    }

    /// Whether the policy reaches visitor `visitorid`, whose presence data is
    /// `data` (`None` when it is not online).
    pub fn admits(&self, visitorid: &str, data: Option<&Value>) -> bool {
        let Some(scope) = &self.visitors else {
            return false;
        };
        if let Some(prefix) = &scope.id_prefix {
            if !visitorid.starts_with(prefix.as_str()) {
                return false;
            }
        }
        scope.data.iter().all(|(key, wanted)| {
            data.and_then(|d| d.get(key))
                .is_some_and(|have| have == wanted)
        })
    }

    /// Whether the policy lets the agent invoke `func` (the group's
    /// allow-list is checked separately).
    pub fn allows_function(&self, func: &str) -> bool {
        self.functions
            .as_deref()
            .is_some_and(|patterns| function_allowed(patterns, func))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Value) -> Policy {
        Policy::parse(&v).expect("valid policy")
    }

    #[test]
    fn the_documented_policy_scopes_visitors_and_functions() {
        let p = policy(json!({"version":1,
            "visitors":{"id_prefix":"acct-42-","data":{"region":"eu"}},
            "functions":["showTerms","GLANCE.Cobrowse.*"]}));
        assert!(p.admits("acct-42-7", Some(&json!({"region":"eu","url":"/"}))));
        assert!(!p.admits("acct-42-7", Some(&json!({"region":"us"}))));
        assert!(!p.admits("acct-42-7", Some(&json!({}))));
        assert!(!p.admits("acct-42-7", None), "offline: no data to match");
        assert!(!p.admits("acct-43-7", Some(&json!({"region":"eu"}))));
        assert!(p.allows_function("showTerms"));
        assert!(p.allows_function("GLANCE.Cobrowse.start"));
        assert!(!p.allows_function("openPage"));
    }

    #[test]
    fn what_a_policy_does_not_grant_it_denies() {
        let empty = policy(json!({}));
        assert!(!empty.admits("anyone", Some(&json!({}))));
        assert!(!empty.allows_function("showTerms"));
        let everyone = policy(json!({"visitors":{}}));
        assert!(everyone.admits("anyone", None));
        assert!(!everyone.allows_function("showTerms"));
        let numbers = policy(json!({"visitors":{"data":{"tier":2}}}));
        assert!(numbers.admits("v", Some(&json!({"tier":2}))));
        assert!(!numbers.admits("v", Some(&json!({"tier":"2"}))));
    }

    #[test]
    fn unknown_fields_versions_and_bad_values_are_refused() {
        for bad in [
            json!({"version":2}),
            json!({"version":"1"}),
            json!({"visitor":{}}),
            json!({"visitors":{"prefix":"a"}}),
            json!({"visitors":{"data":{"a":{"b":1}}}}),
            json!({"visitors":{"data":{"a":null}}}),
            json!({"functions":"showTerms"}),
            json!({"functions":["alert(1)"]}),
            json!({"functions":["**"]}),
            json!([]),
            json!({"visitors":{"id_prefix":"x".repeat(2000)}}),
        ] {
            assert!(Policy::parse(&bad).is_err(), "{bad}");
        }
        assert!(Policy::parse(&json!({"functions":["*"]})).is_ok());
    }
}
