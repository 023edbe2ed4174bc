//! One node's share of a visitor, as cluster mode shares it: the node's
//! open connections (most recently active last), its merged presence data,
//! when the visitor came and was last active there, and, while the node
//! holds no socket of the visitor, when its grace period ends. A visitor's
//! cluster-wide state is the merge of its portions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::VisitorState;
use crate::infra::ids::VisitorKey;

/// One open visitor connection, as other nodes see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortionConnection {
    pub id: String,
    /// Custom claims of its visitor identity token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Value>,
}

/// What one node knows of one visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Portion {
    pub node: String,
    /// The node's publication counter: a portion never replaces a newer one.
    pub seq: u64,
    pub connections: Vec<PortionConnection>,
    pub data: Value,
    pub connected_at_ms: u64,
    pub last_active_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until_ms: Option<u64>,
}

/// Whether a portion still counts at `now_ms`: it has a socket, or its
/// grace period has not ended.
pub fn portion_is_live(has_connections: bool, grace_until_ms: Option<u64>, now_ms: u64) -> bool {
    has_connections || grace_until_ms.is_none_or(|until| until > now_ms)
}

/// Orders portions most recently active first (ties by node id, so every
/// node picks alike).
pub fn most_recent_first(portions: &mut [Portion]) {
    portions.sort_by(|a, b| {
        b.last_active_ms
            .cmp(&a.last_active_ms)
            .then_with(|| a.node.cmp(&b.node))
    });
}

/// The visitor's lookup document from its live portions, sorted most
/// recently active first: online while any portion counts; tabs summed;
/// the data of the most recently active portion; the online period began
/// with the earliest portion; identity from the connection commands go to.
pub fn merged_state(key: &VisitorKey, portions: &[Portion]) -> VisitorState {
    let Some(latest) = portions.first() else {
        return VisitorState::offline(key);
    };
    let target = portions
        .iter()
        .find_map(|p| p.connections.last())
        .and_then(|c| c.identity.clone());
    VisitorState {
        groupid: key.group,
        visitorid: key.visitor.as_str().to_owned(),
        online: true,
        connections: portions.iter().map(|p| p.connections.len()).sum(),
        data: latest.data.clone(),
        connected_at: portions.iter().map(|p| p.connected_at_ms).min(),
        verified: target.is_some(),
        identity: target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::ids::VisitorId;
    use serde_json::json;

    fn portion(node: &str, active: u64, tabs: &[&str], data: Value) -> Portion {
        Portion {
            node: node.into(),
            seq: 1,
            connections: tabs
                .iter()
                .map(|id| PortionConnection {
                    id: (*id).into(),
                    identity: None,
                })
                .collect(),
            data,
            connected_at_ms: active,
            last_active_ms: active,
            grace_until_ms: if tabs.is_empty() {
                Some(active + 10)
            } else {
                None
            },
        }
    }

    #[test]
    fn tabs_add_up_and_the_latest_page_wins() {
        let key = VisitorKey::new(72, VisitorId::parse("v1").expect("id"));
        let mut portions = vec![
            portion("a", 10, &["t1"], json!({"page": "/old"})),
            portion("b", 20, &["t2", "t3"], json!({"page": "/new"})),
        ];
        most_recent_first(&mut portions);
        let state = merged_state(&key, &portions);
        assert!(state.online);
        assert_eq!(state.connections, 3);
        assert_eq!(state.data, json!({"page": "/new"}));
        assert_eq!(state.connected_at, Some(10));
    }

    #[test]
    fn a_portion_in_grace_counts_until_its_grace_ends() {
        let p = portion("a", 100, &[], json!({}));
        assert!(portion_is_live(false, p.grace_until_ms, 105));
        assert!(!portion_is_live(false, p.grace_until_ms, 110));
        assert!(portion_is_live(true, p.grace_until_ms, 110));
        assert!(
            !merged_state(
                &VisitorKey::new(72, VisitorId::parse("v").expect("id")),
                &[]
            )
            .online
        );
    }
}
