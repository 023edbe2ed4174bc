//! What the server acknowledged, and what was in flight when it was
//! killed (so may or may not have happened).

use std::collections::{BTreeSet, HashSet};

/// How an agent token was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    LoginKey,
    /// From this website session (`gssnid`).
    Session(String),
    Sso,
}

/// An issued agent token.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub jti: String,
    pub kid: String,
    pub via: Via,
    pub round: u32,
}

/// A website session.
#[derive(Debug, Clone)]
pub struct Session {
    pub gssnid: String,
    pub round: u32,
}

/// A customer SSO token that was accepted (its `jti` is now used).
#[derive(Debug, Clone)]
pub struct SsoClaim {
    pub jwt: String,
    pub round: u32,
}

/// A confirmed prompt, and the ticket the visitor got for it.
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub visitor: String,
    pub cid: String,
    pub ticket: String,
    pub round: u32,
}

/// A session key shown to a visitor.
#[derive(Debug, Clone)]
pub struct SessionKey {
    pub visitor: String,
    pub key: String,
    pub round: u32,
}

/// Everything acknowledged so far.
#[derive(Debug, Default)]
pub struct Journal {
    pub tokens: Vec<Token>,
    /// Tokens whose revocation was acknowledged (`jti`).
    pub revoked: HashSet<String>,
    /// Revocations sent but unanswered at the kill.
    pub maybe_revoked: HashSet<String>,
    pub sessions: Vec<Session>,
    pub logged_out: HashSet<String>,
    pub maybe_logged_out: HashSet<String>,
    pub sso: Vec<SsoClaim>,
    pub confirmations: Vec<Confirmation>,
    pub session_keys: Vec<SessionKey>,
    /// Signing keys seen on acknowledged tokens.
    pub kids: BTreeSet<String>,
    /// Round in which each acknowledged revocation (`jti`) or logout
    /// (`gssnid`) was answered, so the killed round's are all checked.
    pub ended_in: std::collections::HashMap<String, u32>,
    /// Unix seconds at which each round's work began.
    pub round_started_at: Vec<u64>,
}

/// What a token must do after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Valid,
    Revoked,
    /// Its fate was in flight at the kill.
    Unknown,
}

impl Journal {
    /// What `token` must do now.
    pub fn expect(&self, token: &Token) -> Expect {
        let session = match &token.via {
            Via::Session(g) => Some(g),
            _ => None,
        };
        if self.revoked.contains(&token.jti) || session.is_some_and(|g| self.logged_out.contains(g))
        {
            Expect::Revoked
        } else if self.maybe_revoked.contains(&token.jti)
            || session.is_some_and(|g| self.maybe_logged_out.contains(g))
        {
            Expect::Unknown
        } else {
            Expect::Valid
        }
    }

    /// Whether `gssnid` must still work.
    pub fn session_expect(&self, gssnid: &str) -> Expect {
        if self.logged_out.contains(gssnid) {
            Expect::Revoked
        } else if self.maybe_logged_out.contains(gssnid) {
            Expect::Unknown
        } else {
            Expect::Valid
        }
    }

    /// A token that may be revoked now: valid, not from a session.
    pub fn revocable(&self, pick: usize) -> Option<Token> {
        let candidates: Vec<&Token> = self
            .tokens
            .iter()
            .filter(|t| t.via == Via::LoginKey && self.expect(t) == Expect::Valid)
            .collect();
        (!candidates.is_empty()).then(|| candidates[pick % candidates.len()].clone())
    }

    /// A live session that may be logged out now.
    pub fn live_session(&self, pick: usize) -> Option<Session> {
        let candidates: Vec<&Session> = self
            .sessions
            .iter()
            .filter(|s| self.session_expect(&s.gssnid) == Expect::Valid)
            .collect();
        (!candidates.is_empty()).then(|| candidates[pick % candidates.len()].clone())
    }

    pub fn summary(&self) -> String {
        format!(
            "{} tokens signed by {} keys, {} revocations, {} website sessions ({} logged out), {} SSO token ids, {} confirmations, {} session keys",
            self.tokens.len(),
            self.kids.len(),
            self.revoked.len(),
            self.sessions.len(),
            self.logged_out.len(),
            self.sso.len(),
            self.confirmations.len(),
            self.session_keys.len()
        )
    }
}
