//! After each restart: everything the journal says was acknowledged must
//! still hold. Every item of the round just killed is checked, and a
//! random sample of older ones.

use std::collections::HashSet;
use std::sync::Mutex;

use rand::seq::IndexedRandom;
use serde_json::json;

use crate::client::{token_of, Ctx, GROUP};
use crate::journal::{Expect, Journal};

/// Older items checked per kind after each restart.
const SAMPLE: usize = 30;

/// How many checks passed, by kind.
#[derive(Debug, Default, Clone)]
pub struct Checked {
    session_keys: usize,
    confirmations: usize,
    tickets: usize,
    tokens_valid: usize,
    tokens_revoked: usize,
    audit_records: usize,
    sessions_valid: usize,
    sessions_ended: usize,
    sso_replays_refused: usize,
}

/// Totals over the run.
#[derive(Debug, Default)]
pub struct Totals {
    pub acknowledged: usize,
    checked: Checked,
}

impl Totals {
    pub fn add(&mut self, c: &Checked) {
        let t = &mut self.checked;
        t.session_keys += c.session_keys;
        t.confirmations += c.confirmations;
        t.tickets += c.tickets;
        t.tokens_valid += c.tokens_valid;
        t.tokens_revoked += c.tokens_revoked;
        t.audit_records += c.audit_records;
        t.sessions_valid += c.sessions_valid;
        t.sessions_ended += c.sessions_ended;
        t.sso_replays_refused += c.sso_replays_refused;
    }

    pub fn summary(&self) -> String {
        let c = &self.checked;
        format!(
            "{} session keys, {} confirmations, {} tickets, {} live and {} revoked tokens, {} audit records, {} live and {} ended website sessions, {} SSO replays refused",
            c.session_keys,
            c.confirmations,
            c.tickets,
            c.tokens_valid,
            c.tokens_revoked,
            c.audit_records,
            c.sessions_valid,
            c.sessions_ended,
            c.sso_replays_refused
        )
    }
}

/// The items of `round` and a sample of older ones.
fn pick<T: Clone>(items: &[T], round_of: impl Fn(&T) -> u32, last: u32) -> (Vec<T>, Vec<T>) {
    let recent: Vec<T> = items
        .iter()
        .filter(|i| round_of(i) == last)
        .cloned()
        .collect();
    let older: Vec<&T> = items.iter().filter(|i| round_of(i) < last).collect();
    let sample = older
        .choose_multiple(&mut rand::rng(), SAMPLE)
        .map(|i| (*i).clone())
        .collect();
    (recent, sample)
}

/// Checks everything acknowledged before round `round` began.
pub async fn everything(
    ctx: &Ctx,
    journal: &Mutex<Journal>,
    round: u32,
) -> Result<Checked, String> {
    let mut checked = Checked::default();
    let agent = token_of(&ctx.token_by_login_key("fred").await?)
        .ok_or("no agent token after the restart")?;
    let Some(last) = round.checked_sub(1) else {
        return Ok(checked);
    };
    let (keys, confirmations, tokens, sessions, sso, since) = {
        let j = journal.lock().expect("journal");
        let since = j
            .round_started_at
            .get(last as usize)
            .map_or(0, |t| t.saturating_sub(2));
        let keys = pick(&j.session_keys, |k| k.round, last).0;
        let (mut confirmations, older) = pick(&j.confirmations, |c| c.round, last);
        let recent_confirmations = confirmations.clone();
        confirmations.extend(older);
        // A token counts as of the round it was issued in, or revoked in
        // (or its session logged out in), whichever is later.
        let round_of = |t: &crate::journal::Token| {
            let session = match &t.via {
                crate::journal::Via::Session(g) => j.ended_in.get(g).copied(),
                _ => None,
            };
            let ended = j.ended_in.get(&t.jti).copied().max(session);
            ended.map_or(t.round, |e| e.max(t.round))
        };
        let (recent_tokens, older) = pick(&j.tokens, round_of, last);
        let tokens: Vec<_> = recent_tokens
            .iter()
            .chain(&older)
            .map(|t| (t.clone(), j.expect(t), t.round == last))
            .collect();
        let session_round = |s: &crate::journal::Session| {
            j.ended_in
                .get(&s.gssnid)
                .copied()
                .unwrap_or(s.round)
                .max(s.round)
        };
        let (mut sessions, older) = pick(&j.sessions, session_round, last);
        sessions.extend(older);
        let sessions: Vec<_> = sessions
            .into_iter()
            .map(|s| {
                let e = j.session_expect(&s.gssnid);
                (s, e)
            })
            .collect();
        let (mut sso, older) = pick(&j.sso, |s| s.round, last);
        sso.extend(older);
        (
            (keys, recent_confirmations),
            confirmations,
            tokens,
            sessions,
            sso,
            since,
        )
    };

    // Session keys first: their visitors must be back within the grace
    // period. Each comes back with the tickets of its confirmations.
    let (keys, recent_confirmations) = keys;
    let mut back = Vec::new();
    for key in &keys {
        let tickets: Vec<String> = recent_confirmations
            .iter()
            .filter(|c| c.visitor == key.visitor)
            .map(|c| c.ticket.clone())
            .collect();
        back.push(ctx.visitor(&key.visitor, &tickets).await?);
        let reply = ctx
            .get(
                &format!("/presence/{GROUP}/sessions/{}", key.key),
                Some(&agent),
            )
            .await?;
        if reply.status != 200 || reply.body["visitorid"] != key.visitor.as_str() {
            return Err(format!(
                "session key {} of {} is gone: {} {}",
                key.key, key.visitor, reply.status, reply.body
            ));
        }
        checked.session_keys += 1;
        if !tickets.is_empty() {
            if reply.body["confirmed"] != true {
                return Err(format!(
                    "{} came back with its confirmation ticket but is not confirmed: {}",
                    key.visitor, reply.body
                ));
            }
            checked.tickets += 1;
        }
    }
    drop(back);

    for c in &confirmations {
        let path = format!("/presence/{GROUP}/visitors/{}/confirm/{}", c.visitor, c.cid);
        let reply = ctx.get(&path, Some(&agent)).await?;
        if reply.status != 200 || reply.body["status"] != "confirmed" {
            return Err(format!(
                "confirmation {} of {} (round {}) is not confirmed: {} {}",
                c.cid, c.visitor, c.round, reply.status, reply.body
            ));
        }
        checked.confirmations += 1;
    }

    let probe = format!("/presence/{GROUP}/visitors/crash-probe");
    for (t, expect, _) in &tokens {
        let status = ctx.get(&probe, Some(&t.token)).await?.status;
        match (expect, status) {
            (Expect::Valid, 200 | 404) => checked.tokens_valid += 1,
            (Expect::Revoked, 401) => checked.tokens_revoked += 1,
            (Expect::Unknown, _) => {}
            (e, s) => {
                return Err(format!(
                "token {} (kid {}, {:?}, round {}) should be {e:?} but a request with it got {s}",
                t.jti, t.kid, t.via, t.round
            ))
            }
        }
    }

    let recent: Vec<&str> = tokens
        .iter()
        .filter(|(_, _, recent)| *recent)
        .map(|(t, _, _)| t.jti.as_str())
        .collect();
    if !recent.is_empty() {
        let audited = issued_jtis(ctx, since).await?;
        for jti in recent {
            if !audited.contains(jti) {
                return Err(format!("token {jti} was issued but has no audit record"));
            }
            checked.audit_records += 1;
        }
    }

    for (s, expect) in &sessions {
        let body = json!({"groupid": GROUP, "credentials": {"gssnid": s.gssnid}});
        let status = ctx.post("/auth/token", &body, None).await?.status;
        match (expect, status) {
            (Expect::Valid, 200) => checked.sessions_valid += 1,
            (Expect::Revoked, 401) => checked.sessions_ended += 1,
            (Expect::Unknown, _) => {}
            (e, s2) => {
                return Err(format!(
                    "website session of round {} should be {e:?} but issuing with it got {s2}",
                    s.round
                ))
            }
        }
    }

    for claim in &sso {
        let body = json!({"groupid": GROUP, "credentials": {"jwt": claim.jwt}});
        let reply = ctx.post("/auth/token", &body, None).await?;
        if reply.status != 401 || reply.body["error"] != "invalid_credentials" {
            return Err(format!(
                "an SSO token used in round {} was accepted again: {} {}",
                claim.round, reply.status, reply.body
            ));
        }
        checked.sso_replays_refused += 1;
    }
    Ok(checked)
}

/// Every `jti` with an `issued` record at or after `since` in the group's
/// audit log.
async fn issued_jtis(ctx: &Ctx, since: u64) -> Result<HashSet<String>, String> {
    let admin = ctx.admin_token().await?;
    let mut jtis = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/admin/{GROUP}/audit?limit=1000&since={since}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let reply = ctx.get(&path, Some(&admin)).await?;
        let records = reply.body["records"]
            .as_array()
            .ok_or_else(|| format!("audit: {} {}", reply.status, reply.body))?;
        for r in records {
            if r["outcome"] == "issued" {
                if let Some(jti) = r["jti"].as_str() {
                    jtis.insert(jti.to_owned());
                }
            }
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(jtis),
        }
    }
}
