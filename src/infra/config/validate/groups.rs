//! Validation of `[[groups]]`: ids, names, origins, allow-lists, secrets,
//! visitor identity, `[groups.sso]` and each group's users.

use std::collections::HashSet;

use argon2::PasswordHash;
use secrecy::ExposeSecret;

use super::{check, valid_allow_pattern, valid_username, ConfigError};
use crate::infra::config::{normalize_origin, Config, GroupConfig, SsoConfig};

/// The largest group id: 2^53 - 1.
pub const MAX_GROUP_ID: u64 = 9_007_199_254_740_991;

pub(super) fn validate_groups(config: &Config) -> Result<(), ConfigError> {
    check(
        !config.groups.is_empty(),
        "groups",
        "at least one [[groups]] entry is required",
    )?;
    let mut ids = HashSet::new();
    for (i, group) in config.groups.iter().enumerate() {
        let at = |key: &str| format!("groups[{i}].{key}");
        check(
            ids.insert(group.id),
            at("id"),
            format!("duplicate group id {}", group.id),
        )?;
        check(group.id >= 1, at("id"), "must be a positive integer")?;
        // The API documents group ids as integers every JSON reader holds
        // exactly (a JavaScript console included).
        check(
            group.id <= MAX_GROUP_ID,
            at("id"),
            format!("must be at most {MAX_GROUP_ID} (2^53 - 1)"),
        )?;
        check(
            group.max_visitors.is_none_or(|m| m >= 1),
            at("max_visitors"),
            "must be at least 1 (leave it out for no cap)",
        )?;
        check(
            !group.name.trim().is_empty() && group.name.len() <= 128,
            at("name"),
            "must be 1 to 128 characters",
        )?;
        for (j, origin) in group.origins.iter().enumerate() {
            let key = format!("groups[{i}].origins[{j}]");
            match normalize_origin(origin) {
                Some(normal) if normal == *origin => {}
                Some(normal) => {
                    return Err(ConfigError::new(
                        key,
                        format!("write the origin exactly as browsers send it: {normal:?}"),
                    ))
                }
                None => return Err(ConfigError::new(
                    key,
                    "must be scheme://host[:port] with http or https, no path, and never \"null\"",
                )),
            }
        }
        for (j, pattern) in group.invoke_allow.iter().enumerate() {
            check(
                valid_allow_pattern(pattern),
                format!("groups[{i}].invoke_allow[{j}]"),
                "must be a function name (A-Z a-z 0-9 . _ $, at most 128) optionally ending in *",
            )?;
        }
        if let Some(key) = &group.api_key {
            check(
                key.expose_secret().len() >= 16,
                at("api_key"),
                "must be at least 16 characters",
            )?;
        }
        if let Some(secret) = &group.visitor_identity_secret {
            check(
                secret.expose_secret().len() >= 32,
                at("visitor_identity_secret"),
                "must be at least 32 characters",
            )?;
        }
        check(
            !group.require_visitor_identity || group.visitor_identity_secret.is_some(),
            at("require_visitor_identity"),
            "needs visitor_identity_secret",
        )?;
        check(
            group.visitor_identity_secret.is_none() || group.visitor_identity_issuer.is_some(),
            at("visitor_identity_issuer"),
            "is required with visitor_identity_secret",
        )?;
        check(
            (60..=30 * 86_400).contains(&group.visitor_identity_max_secs),
            at("visitor_identity_max_secs"),
            "must be 60 to 2592000",
        )?;
        if let Some(issuer) = &group.visitor_identity_issuer {
            check(
                (1..=256).contains(&issuer.len()) && issuer != crate::infra::jwt::ISSUER,
                at("visitor_identity_issuer"),
                "must be 1 to 256 characters and not the agent-token issuer",
            )?;
        }
        if let Some(sso) = &group.sso {
            validate_sso(i, sso)?;
        }
        validate_users(i, group)?;
        super::webhooks::validate_group_webhooks(i, group, config.webhooks.allow_http)?;
    }
    Ok(())
}

fn validate_sso(i: usize, sso: &SsoConfig) -> Result<(), ConfigError> {
    let at = |key: &str| format!("groups[{i}].sso.{key}");
    check(
        (1..=256).contains(&sso.issuer.len()) && sso.issuer != crate::infra::jwt::ISSUER,
        at("issuer"),
        "must be 1 to 256 characters and not the agent-token issuer",
    )?;
    if let Some(audience) = &sso.audience {
        check(
            (1..=256).contains(&audience.len()),
            at("audience"),
            "must be 1 to 256 characters",
        )?;
    }
    check(
        !sso.algorithms.is_empty(),
        at("algorithms"),
        "name at least one of RS256, ES256",
    )?;
    check(
        (1..=8).contains(&sso.public_keys.len()),
        at("public_keys"),
        "list 1 to 8 PEM public keys (inline or file paths)",
    )?;
    if let Some(login_url) = &sso.login_url {
        let parsed = url::Url::parse(login_url);
        check(
            parsed.is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.has_host()),
            at("login_url"),
            "must be an absolute http or https URL",
        )?;
    }
    for (j, source) in sso.public_keys.iter().enumerate() {
        crate::infra::config::load_public_key(source, &sso.algorithms).map_err(|message| {
            ConfigError::new(format!("groups[{i}].sso.public_keys[{j}]"), message)
        })?;
    }
    Ok(())
}

fn validate_users(i: usize, group: &GroupConfig) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for (j, user) in group.users.iter().enumerate() {
        let at = |key: &str| format!("groups[{i}].users[{j}].{key}");
        check(
            valid_username(&user.username),
            at("username"),
            "must be 1 to 128 characters from A-Z a-z 0-9 . _ @ + -",
        )?;
        check(
            names.insert(user.username.as_str()),
            at("username"),
            format!("duplicate username {:?} in this group", user.username),
        )?;
        if let Some(hash) = &user.password_hash {
            let parsed = PasswordHash::new(hash.expose_secret()).map_err(|_| {
                ConfigError::new(
                    at("password_hash"),
                    "not a PHC string (see `presence-server hash-password`)",
                )
            })?;
            check(
                parsed.algorithm.as_str() == "argon2id",
                at("password_hash"),
                "must be an argon2id hash",
            )?;
        }
        if let Some(puid) = &user.partner_user_id {
            check(
                valid_username(puid),
                at("partner_user_id"),
                "must be 1 to 128 characters from A-Z a-z 0-9 . _ @ + -",
            )?;
        }
        if let Some(name) = &user.name {
            check(
                name.chars().count() <= 128,
                at("name"),
                "must be at most 128 characters",
            )?;
        }
    }
    Ok(())
}
