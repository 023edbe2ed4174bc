//! The administrator's list of a group's online visitors, a page at a time
//! in id order, filtered by `data.<key>` values and by the token's policy.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{in_scope, AgentOps, Caller, VisitorView};
use crate::infra::error::DomainError;
use crate::infra::ids::{GroupId, VisitorId, VisitorKey};

/// Records per page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// Most visitors per page.
const MAX_VISITOR_PAGE: usize = 1000;
/// Most `data.<key>` filters in one query.
const MAX_DATA_FILTERS: usize = 16;

/// The query of the visitor list: `limit`, `cursor` and `data.<key>`
/// filters; anything else is refused, not ignored.
pub struct VisitorQuery {
    limit: usize,
    cursor: Option<String>,
    data: BTreeMap<String, String>,
}

impl VisitorQuery {
    /// Parses a URL query string.
    pub fn parse(query: &str) -> Result<Self, DomainError> {
        let bad = |m: String| DomainError::BadRequest(m);
        let mut parsed = VisitorQuery {
            limit: DEFAULT_PAGE,
            cursor: None,
            data: BTreeMap::new(),
        };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_VISITOR_PAGE).contains(n))
                        .ok_or_else(|| bad(format!("limit must be 1 to {MAX_VISITOR_PAGE}")))?;
                }
                "cursor" => {
                    VisitorId::parse(&value)
                        .map_err(|_| bad("cursor is not one this server issued".into()))?;
                    parsed.cursor = Some(value.into_owned());
                }
                other => match other.strip_prefix("data.") {
                    Some(key) if !key.is_empty() && parsed.data.len() < MAX_DATA_FILTERS => {
                        parsed.data.insert(key.to_owned(), value.into_owned());
                    }
                    _ => return Err(bad(format!("unknown query parameter {other:?}"))),
                },
            }
        }
        Ok(parsed)
    }

    fn matches(&self, data: &Value) -> bool {
        self.data.iter().all(|(key, wanted)| match data.get(key) {
            Some(Value::String(s)) => s == wanted,
            Some(Value::Number(n)) => n.to_string() == *wanted,
            _ => false,
        })
    }
}

/// One page of the list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VisitorPage {
    pub visitors: Vec<VisitorView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Lists the group's online visitors (administrators only).
pub struct ListVisitors {
    pub group: GroupId,
    /// The parsed query, or why it could not be read: reported only once
    /// the caller is authorised.
    pub query: Result<VisitorQuery, DomainError>,
}

impl ListVisitors {
    pub fn apply(self, ops: &AgentOps, caller: &Caller) -> Result<VisitorPage, DomainError> {
        let group = self.group;
        ops.admit_admin(caller, group)?;
        let query = self.query?;
        let claims = caller.claims;
        let (states, more) =
            ops.registry
                .page(group, query.cursor.as_deref(), query.limit, &mut |state| {
                    query.matches(&state.data) && in_scope(claims, state)
                });
        let next_cursor = more
            .then(|| states.last().map(|s| s.visitorid.clone()))
            .flatten();
        let visitors = states
            .into_iter()
            .map(|state| {
                let confirmed = VisitorId::parse(&state.visitorid).is_ok_and(|id| {
                    ops.confirmations
                        .shows_confirmed(&VisitorKey::new(group, id), &claims.sub)
                });
                VisitorView { state, confirmed }
            })
            .collect();
        Ok(VisitorPage {
            visitors,
            next_cursor,
        })
    }
}
