//! The work phase: workers make acknowledged changes until the server is
//! killed. Each change is written to the journal only once the server has
//! answered it; a change whose answer never came is marked uncertain
//! before it is sent, so the checks neither demand nor forbid it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::task::JoinSet;

use crate::client::{kid_and_jti, token_of, Ctx, Reply, Visitor, GROUP};
use crate::journal::{Confirmation, Journal, Session, SessionKey, SsoClaim, Token, Via};
use crate::server::Running;

/// An answered call that says the server is wrong (as opposed to no
/// answer, which is the kill).
#[derive(Debug)]
enum Stop {
    Unanswered,
    Wrong(String),
}

impl From<String> for Stop {
    /// A failed call: no answer (the kill), unless the server did answer,
    /// with an error frame or a body that is not JSON.
    fn from(e: String) -> Self {
        if e.starts_with(crate::client::ANSWERED_WRONG) {
            Stop::Wrong(e)
        } else {
            Stop::Unanswered
        }
    }
}

fn wrong(what: &str, reply: &Reply) -> Stop {
    Stop::Wrong(format!("{what}: {} {}", reply.status, reply.body))
}

/// Runs `workers` workers until `kill_after`, then `kill -9`s the server.
/// Returns how many changes were acknowledged.
pub async fn until_killed(
    ctx: Arc<Ctx>,
    journal: Arc<Mutex<Journal>>,
    round: u32,
    workers: usize,
    server: Running,
    kill_after: Duration,
) -> Result<usize, String> {
    journal
        .lock()
        .expect("journal")
        .round_started_at
        .push(crate::client::now_secs());
    let mut set = JoinSet::new();
    for worker in 0..workers {
        set.spawn(work(ctx.clone(), journal.clone(), round, worker));
    }
    // The kill moment is the experiment's random variable, not a wait for
    // some state: the workers are mid-change whenever it comes.
    tokio::time::sleep(kill_after).await;
    server.kill().await?;
    let mut acknowledged = 0;
    while let Some(done) = set.join_next().await {
        let (count, stop) = done.map_err(|e| format!("worker panicked: {e}"))?;
        acknowledged += count;
        if let Stop::Wrong(e) = stop {
            return Err(format!("round {round}, before the kill: {e}"));
        }
    }
    Ok(acknowledged)
}

/// One worker: changes of every kind, in random order, until a call goes
/// unanswered. Returns the count and why it stopped.
async fn work(
    ctx: Arc<Ctx>,
    journal: Arc<Mutex<Journal>>,
    round: u32,
    worker: usize,
) -> (usize, Stop) {
    let mut done = 0;
    let mut visitors = Vec::new();
    let agent = match ctx.token_by_login_key("fred").await {
        Ok(reply) => match token_of(&reply) {
            Some(token) => token,
            None => return (0, wrong("agent token", &reply)),
        },
        Err(_) => return (0, Stop::Unanswered),
    };
    for n in 0.. {
        let pick: u32 = rand::rng().random_range(0..100);
        let step = match pick {
            0..40 => login_key_token(&ctx, &journal, round).await,
            40..50 => revoke(&ctx, &journal, round).await,
            50..56 => website_session(&ctx, &journal, round).await,
            56..60 => logout(&ctx, &journal, round).await,
            60..75 => sso(&ctx, &journal, round).await,
            _ => visitor(
                &ctx,
                &journal,
                &agent,
                round,
                &format!("crash-{round}-{worker}-{n}"),
            )
            .await
            .map(|v| visitors.push(v)),
        };
        match step {
            Ok(()) => done += 1,
            Err(stop) => return (done, stop),
        }
    }
    (done, Stop::Unanswered)
}

fn record_token(journal: &Mutex<Journal>, token: String, via: Via, round: u32) -> Result<(), Stop> {
    let (kid, jti) =
        kid_and_jti(&token).ok_or_else(|| Stop::Wrong(format!("unreadable token {token}")))?;
    let mut j = journal.lock().expect("journal");
    j.kids.insert(kid.clone());
    j.tokens.push(Token {
        token,
        jti,
        kid,
        via,
        round,
    });
    Ok(())
}

async fn login_key_token(ctx: &Ctx, journal: &Mutex<Journal>, round: u32) -> Result<(), Stop> {
    let reply = ctx.token_by_login_key("fred").await?;
    let token = token_of(&reply).ok_or_else(|| wrong("login-key token", &reply))?;
    record_token(journal, token, Via::LoginKey, round)
}

async fn revoke(ctx: &Ctx, journal: &Mutex<Journal>, round: u32) -> Result<(), Stop> {
    let pick = rand::rng().random_range(0..usize::MAX);
    let Some(token) = ({
        let mut j = journal.lock().expect("journal");
        let token = j.revocable(pick);
        if let Some(t) = &token {
            j.maybe_revoked.insert(t.jti.clone());
        }
        token
    }) else {
        return Ok(());
    };
    let reply = ctx
        .post(
            "/auth/revoke",
            &json!({"jti": token.jti}),
            Some(&token.token),
        )
        .await?;
    if reply.status != 200 || reply.body["revoked"] != token.jti.as_str() {
        return Err(wrong("revoke", &reply));
    }
    let mut j = journal.lock().expect("journal");
    j.maybe_revoked.remove(&token.jti);
    j.ended_in.insert(token.jti.clone(), round);
    j.revoked.insert(token.jti);
    Ok(())
}

async fn website_session(ctx: &Ctx, journal: &Mutex<Journal>, round: u32) -> Result<(), Stop> {
    let body = json!({"groupid": GROUP, "username": "fred.demo", "password": "fred-demo-pass"});
    let reply = ctx.post("/auth/login", &body, None).await?;
    if reply.status == 429 {
        return Ok(()); // another worker holds the address's password slots
    }
    let gssnid = match (reply.status, reply.body["gssnid"].as_str()) {
        (200, Some(g)) => g.to_owned(),
        _ => return Err(wrong("website login", &reply)),
    };
    // Journaled once it has issued a token too, so that no other worker
    // logs it out in between.
    let body = json!({"groupid": GROUP, "credentials": {"gssnid": gssnid}});
    let reply = ctx.post("/auth/token", &body, None).await?;
    let token = token_of(&reply).ok_or_else(|| wrong("session token", &reply))?;
    journal.lock().expect("journal").sessions.push(Session {
        gssnid: gssnid.clone(),
        round,
    });
    record_token(journal, token, Via::Session(gssnid), round)
}

async fn logout(ctx: &Ctx, journal: &Mutex<Journal>, round: u32) -> Result<(), Stop> {
    let pick = rand::rng().random_range(0..usize::MAX);
    let Some(session) = ({
        let mut j = journal.lock().expect("journal");
        let s = j.live_session(pick);
        if let Some(s) = &s {
            j.maybe_logged_out.insert(s.gssnid.clone());
        }
        s
    }) else {
        return Ok(());
    };
    let reply = ctx
        .post("/auth/logout", &json!({"gssnid": session.gssnid}), None)
        .await?;
    if reply.status != 204 {
        return Err(wrong("logout", &reply));
    }
    let mut j = journal.lock().expect("journal");
    j.maybe_logged_out.remove(&session.gssnid);
    j.ended_in.insert(session.gssnid.clone(), round);
    j.logged_out.insert(session.gssnid);
    Ok(())
}

async fn sso(ctx: &Ctx, journal: &Mutex<Journal>, round: u32) -> Result<(), Stop> {
    let jti = format!("crash-{:032x}", rand::rng().random::<u128>());
    let jwt = ctx.sso_jwt(&jti).map_err(Stop::Wrong)?;
    let reply = ctx
        .post(
            "/auth/token",
            &json!({"groupid": GROUP, "credentials": {"jwt": jwt}}),
            None,
        )
        .await?;
    let token = token_of(&reply).ok_or_else(|| wrong("SSO token", &reply))?;
    journal
        .lock()
        .expect("journal")
        .sso
        .push(SsoClaim { jwt, round });
    record_token(journal, token, Via::Sso, round)
}

/// A visitor asks for its session key, then an agent confirms it.
async fn visitor(
    ctx: &Ctx,
    journal: &Mutex<Journal>,
    agent: &str,
    round: u32,
    id: &str,
) -> Result<Visitor, Stop> {
    let mut visitor = ctx.visitor(id, &[]).await?;
    visitor.send(json!({"type": "session_key"})).await?;
    let frame = visitor.expect("session_key").await?;
    let key = frame["key"]
        .as_str()
        .ok_or_else(|| Stop::Wrong(format!("session key frame {frame}")))?;
    journal
        .lock()
        .expect("journal")
        .session_keys
        .push(SessionKey {
            visitor: id.to_owned(),
            key: key.to_owned(),
            round,
        });
    let reply = ctx
        .post(
            &format!("/presence/{GROUP}/visitors/{id}/confirm"),
            &json!({}),
            Some(agent),
        )
        .await?;
    let (Some(cid), Some(answer)) = (
        reply.body["confirmation"].as_str(),
        reply.body["answer"].as_str(),
    ) else {
        return Err(wrong("start confirmation", &reply));
    };
    visitor.expect("confirm").await?;
    visitor
        .send(json!({"type": "confirm_answer", "id": cid, "choice": answer}))
        .await?;
    let closed = visitor.expect("confirm_closed").await?;
    if closed["status"] != "confirmed" {
        return Err(Stop::Wrong(format!("confirm_closed {closed}")));
    }
    let ticket = visitor.expect("confirm_ticket").await?;
    let ticket = ticket["ticket"]
        .as_str()
        .ok_or_else(|| Stop::Wrong(format!("confirm_ticket {ticket}")))?;
    journal
        .lock()
        .expect("journal")
        .confirmations
        .push(Confirmation {
            visitor: id.to_owned(),
            cid: cid.to_owned(),
            ticket: ticket.to_owned(),
            round,
        });
    Ok(visitor)
}
