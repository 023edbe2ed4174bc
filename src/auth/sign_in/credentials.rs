//! The credential forms `POST /auth/token` accepts. Exactly one form must
//! match the object's keys; anything else is `bad_credentials_form`, never
//! a guess.

use serde_json::{Map, Value};

use super::sso::MAX_SSO_TOKEN_BYTES;
use crate::auth::password::MAX_PASSWORD_BYTES;
use crate::infra::error::DomainError;

/// Which kind of credential was presented; recorded in the audit log.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Password,
    PartnerLoginKey,
    UsernameLoginKey,
    Session,
    /// A customer-signed SSO JWT.
    Sso,
    /// No credential: issued by an operator with `presence-server
    /// gen-token`, on the server's machine.
    Cli,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Password => "password",
            CredentialKind::PartnerLoginKey => "partner_login_key",
            CredentialKind::UsernameLoginKey => "username_login_key",
            CredentialKind::Session => "session",
            CredentialKind::Sso => "sso",
            CredentialKind::Cli => "cli",
        }
    }
}

/// A parsed credential. `Debug` never shows the secret part.
pub enum Credentials {
    Password {
        username: String,
        password: String,
    },
    PartnerLoginKey {
        partner_id: u64,
        partner_user_id: String,
        login_key: String,
    },
    UsernameLoginKey {
        username: String,
        login_key: String,
    },
    Session {
        session_id: String,
    },
    Sso {
        jwt: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials::{:?} {{ .. }}", self.kind())
    }
}

impl Credentials {
    /// Parses the `credentials` object. An empty object falls back to the
    /// `gssnid` cookie, so a browser console needs no script access to it.
    pub fn parse(value: &Value, session_cookie: Option<&str>) -> Result<Self, DomainError> {
        let Value::Object(map) = value else {
            return Err(form_error("credentials must be an object"));
        };
        let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let creds = match keys.as_slice() {
            ["password", "username"] => Credentials::Password {
                username: string(map, "username")?,
                password: string(map, "password")?,
            },
            ["loginkey", "partnerid", "partneruserid"] => Credentials::PartnerLoginKey {
                partner_id: map
                    .get("partnerid")
                    .and_then(|v| v.as_number())
                    .and_then(crate::infra::json_integer::as_u64)
                    .ok_or_else(|| {
                        form_error("credentials.partnerid must be a positive integer")
                    })?,
                partner_user_id: string(map, "partneruserid")?,
                login_key: string(map, "loginkey")?,
            },
            ["loginkey", "username"] => Credentials::UsernameLoginKey {
                username: string(map, "username")?,
                login_key: string(map, "loginkey")?,
            },
            ["gssnid"] => Credentials::Session {
                session_id: string(map, "gssnid")?,
            },
            ["jwt"] => Credentials::Sso {
                jwt: string(map, "jwt")?,
            },
            [] => match session_cookie {
                Some(cookie) => Credentials::Session {
                    session_id: cookie.to_owned(),
                },
                None => return Err(form_error("empty credentials and no gssnid cookie")),
            },
            _ => {
                return Err(form_error(
                    "credentials must be one of {username,password}, \
                     {partnerid,partneruserid,loginkey}, {username,loginkey}, {gssnid} or {jwt}",
                ))
            }
        };
        creds.check_sizes()?;
        Ok(creds)
    }

    /// Refuses oversized secrets before any hashing.
    fn check_sizes(&self) -> Result<(), DomainError> {
        let fields: &[&str] = match self {
            Credentials::Password { username, password } => &[username, password],
            Credentials::PartnerLoginKey {
                partner_user_id,
                login_key,
                ..
            } => &[partner_user_id, login_key],
            Credentials::UsernameLoginKey {
                username,
                login_key,
            } => &[username, login_key],
            Credentials::Session { session_id } => &[session_id],
            Credentials::Sso { jwt } => {
                if jwt.len() > MAX_SSO_TOKEN_BYTES {
                    return Err(DomainError::BadRequest(format!(
                        "credentials.jwt must be at most {MAX_SSO_TOKEN_BYTES} bytes"
                    )));
                }
                return Ok(());
            }
        };
        if fields.iter().any(|f| f.len() > MAX_PASSWORD_BYTES) {
            return Err(DomainError::BadRequest(format!(
                "credential fields must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// The username the credential claims, where it names one.
    pub fn claimed_username(&self) -> Option<&str> {
        match self {
            Credentials::Password { username, .. }
            | Credentials::UsernameLoginKey { username, .. } => Some(username),
            _ => None,
        }
    }

    /// The account an attempt for `group` counts against for lockout: a
    /// username counts per group, since its records in two groups are two
    /// accounts. Sessions (256 random bits) and SSO tokens (whose `sub` is
    /// unverified until the signature checks, and must not lock the real
    /// agent out) have none.
    pub fn account(&self, group: u64) -> Option<String> {
        match self {
            Credentials::Password { username, .. }
            | Credentials::UsernameLoginKey { username, .. } => {
                Some(username_account(Some(group), username))
            }
            Credentials::PartnerLoginKey {
                partner_id,
                partner_user_id,
                ..
            } => Some(format!("partner:{partner_id}:{partner_user_id}")),
            Credentials::Session { .. } | Credentials::Sso { .. } => None,
        }
    }

    pub fn kind(&self) -> CredentialKind {
        match self {
            Credentials::Password { .. } => CredentialKind::Password,
            Credentials::PartnerLoginKey { .. } => CredentialKind::PartnerLoginKey,
            Credentials::UsernameLoginKey { .. } => CredentialKind::UsernameLoginKey,
            Credentials::Session { .. } => CredentialKind::Session,
            Credentials::Sso { .. } => CredentialKind::Sso,
        }
    }
}

/// The lockout account of `username` in `group` (records of one name in
/// two groups are two accounts); `-` when no group is known.
pub fn username_account(group: Option<u64>, username: &str) -> String {
    match group {
        Some(group) => format!("{group}/{username}"),
        None => format!("-/{username}"),
    }
}

fn form_error(message: &str) -> DomainError {
    DomainError::BadCredentialsForm(message.to_owned())
}

fn string(map: &Map<String, Value>, name: &str) -> Result<String, DomainError> {
    match map.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(form_error(&format!("credentials.{name} must be a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(v: Value) -> Result<CredentialKind, &'static str> {
        Credentials::parse(&v, None)
            .map(|c| c.kind())
            .map_err(|e| e.code())
    }

    #[test]
    fn each_form_is_recognised_by_its_exact_keys() {
        assert_eq!(
            kind(json!({"username":"u","password":"p"})),
            Ok(CredentialKind::Password)
        );
        assert_eq!(
            kind(json!({"partnerid":72,"partneruserid":"fred","loginkey":"k"})),
            Ok(CredentialKind::PartnerLoginKey)
        );
        assert_eq!(
            kind(json!({"username":"u","loginkey":"k"})),
            Ok(CredentialKind::UsernameLoginKey)
        );
        assert_eq!(kind(json!({"gssnid":"s"})), Ok(CredentialKind::Session));
        assert_eq!(kind(json!({"jwt":"a.b.c"})), Ok(CredentialKind::Sso));
    }

    #[test]
    fn anything_else_is_a_bad_form() {
        for bad in [
            json!({}),
            json!({"username":"u"}),
            json!({"username":"u","password":"p","loginkey":"k"}),
            json!({"partnerid":"72","partneruserid":"fred","loginkey":"k"}),
            json!({"partnerid":-1,"partneruserid":"fred","loginkey":"k"}),
            json!({"gssnid":5}),
            json!("string"),
            json!(null),
        ] {
            assert_eq!(kind(bad.clone()), Err("bad_credentials_form"), "{bad}");
        }
    }

    #[test]
    fn an_empty_object_uses_the_session_cookie() {
        let creds = Credentials::parse(&json!({}), Some("cookie-id")).expect("session");
        assert!(matches!(creds, Credentials::Session { session_id } if session_id == "cookie-id"));
    }

    #[test]
    fn oversized_secrets_are_refused_before_hashing() {
        let big = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(
            kind(json!({"username":"u","password":big})),
            Err("bad_request")
        );
        assert_eq!(
            kind(json!({"username":"u","loginkey":big})),
            Err("bad_request")
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let creds =
            Credentials::parse(&json!({"username":"u","password":"hunter2"}), None).expect("ok");
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
