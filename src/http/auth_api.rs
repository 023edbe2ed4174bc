//! `POST /auth/token`: the authorization service's issuing endpoint. It
//! checks agent credentials and returns a short-lived agent token.

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Role, MIN_TOKEN_SECS};
use crate::error::ApiError;
use crate::ids::GroupId;
use crate::origin::RequestOrigin;
use crate::password::{CheckError, MAX_PASSWORD_BYTES};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct TokenRequest {
    groupid: GroupId,
    #[serde(default)]
    duration: Option<u64>,
    credentials: Value,
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    token: &'a str,
    expires: u64,
    groupid: GroupId,
    username: &'a str,
    role: Role,
}

/// The credential forms `/auth/token` accepts.
enum Credentials {
    Password { username: String, password: String },
}

impl Credentials {
    fn parse(value: Value) -> Result<Self, ApiError> {
        let Value::Object(map) = value else {
            return Err(ApiError::BadCredentialsForm(
                "credentials must be an object".into(),
            ));
        };
        let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        match keys.as_slice() {
            ["password", "username"] => {
                let field = |name: &str| match map.get(name) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    _ => Err(ApiError::BadCredentialsForm(format!(
                        "credentials.{name} must be a string"
                    ))),
                };
                let username = field("username")?;
                let password = field("password")?;
                if password.len() > MAX_PASSWORD_BYTES || username.len() > MAX_PASSWORD_BYTES {
                    return Err(ApiError::BadRequest(format!(
                        "username and password must be at most {MAX_PASSWORD_BYTES} bytes"
                    )));
                }
                Ok(Credentials::Password { username, password })
            }
            _ => Err(ApiError::BadCredentialsForm(
                "credentials must be {\"username\", \"password\"}".into(),
            )),
        }
    }
}

/// `POST /auth/token`
pub async fn issue_token(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let group = app
        .config
        .group(body.groupid)
        .ok_or(ApiError::UnknownGroup(body.groupid))?;
    app.origins
        .check_group(group.id, &RequestOrigin::from_headers(req.headers()))?;
    let max = app.config.auth.token_max_secs;
    let lifetime = body.duration.unwrap_or(app.config.auth.token_default_secs);
    if !(MIN_TOKEN_SECS..=max).contains(&lifetime) {
        return Err(ApiError::BadDuration(format!(
            "duration must be {MIN_TOKEN_SECS} to {max} seconds"
        )));
    }
    let Credentials::Password { username, password } = Credentials::parse(body.credentials)?;

    let user = group.users.iter().find(|u| u.username == username);
    let hash = user
        .and_then(|u| u.password_hash.as_ref())
        .map(|h| h.expose_secret().to_owned());
    let matches = app
        .passwords
        .clone()
        .check_off_thread(password, hash)
        .await
        .map_err(|e| match e {
            CheckError::Busy => ApiError::Busy,
            CheckError::Failed => ApiError::Internal("password check failed".into()),
        })?;
    let user = match (matches, user) {
        (true, Some(user)) => user,
        _ => {
            tracing::info!(group = group.id, "token refused: invalid credentials");
            return Err(ApiError::InvalidCredentials);
        }
    };
    if !group.presence {
        return Err(ApiError::PresenceNotSubscribed(group.id));
    }
    let issued = app
        .tokens
        .issue(&user.username, group.id, user.role, lifetime)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(
        group = group.id,
        username = %user.username,
        jti = %issued.claims.jti,
        exp = issued.claims.exp,
        "token issued"
    );
    Ok(HttpResponse::Ok().json(TokenResponse {
        token: &issued.token,
        expires: issued.claims.exp,
        groupid: group.id,
        username: &user.username,
        role: user.role,
    }))
}
