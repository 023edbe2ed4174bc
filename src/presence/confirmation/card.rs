//! The agent card a confirmation prompt shows the visitor: who is asking.
//! An agent may present itself (a deep link's name, e-mail and phone), but
//! only within sane bounds, since visitors read it as the company speaking.

use crate::infra::config::GroupConfig;
use crate::infra::error::DomainError;
use crate::store::AgentCard;

/// Longest agent name, e-mail address and phone number shown to visitors.
const MAX_CARD_NAME: usize = 100;
const MAX_CARD_EMAIL: usize = 254;
const MAX_CARD_PHONE: usize = 32;

/// The card a visitor is shown: the agent's own choice, checked, or else
/// the name its token carries, its configured display name, its username.
pub fn card_for(
    group: &GroupConfig,
    username: &str,
    token_name: Option<&str>,
    given: Option<AgentCard>,
) -> Result<AgentCard, DomainError> {
    let Some(card) = given else {
        let name = token_name
            .map(str::to_owned)
            .or_else(|| {
                group
                    .users
                    .iter()
                    .find(|u| u.username == username)
                    .and_then(|u| u.name.clone())
            })
            .unwrap_or_else(|| username.to_owned());
        return Ok(AgentCard {
            name,
            email: None,
            phone: None,
        });
    };
    let printable = |s: &str| !s.chars().any(char::is_control);
    let name = card.name.trim();
    if name.is_empty() || name.chars().count() > MAX_CARD_NAME || !printable(name) {
        return Err(DomainError::BadRequest(format!(
            "agent.name must be 1 to {MAX_CARD_NAME} printable characters"
        )));
    }
    if let Some(email) = &card.email {
        let ok = email.len() <= MAX_CARD_EMAIL
            && printable(email)
            && !email.contains(char::is_whitespace)
            && email
                .split_once('@')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
        if !ok {
            return Err(DomainError::BadRequest(
                "agent.email is not an e-mail address".into(),
            ));
        }
    }
    if let Some(phone) = &card.phone {
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        let ok = phone.len() <= MAX_CARD_PHONE
            && digits >= 3
            && phone
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || " -().".contains(c) || (i == 0 && c == '+'));
        if !ok {
            return Err(DomainError::BadRequest(format!(
                "agent.phone must be a phone number of at most {MAX_CARD_PHONE} characters"
            )));
        }
    }
    Ok(AgentCard {
        name: name.to_owned(),
        email: card.email,
        phone: card.phone,
    })
}
