//! `GET /auth/sso/{groupid}`: the start of a console sign-in through a
//! customer's identity provider. It redirects to the group's
//! `sso.login_url` with `groupid` and an absolute `return_to` on this
//! server; the provider signs a JWT and sends the agent back to `return_to`
//! with `&jwt=<token>`, which the console exchanges at `/auth/token`.
//!
//! `return_to` may only name a console page, so this is never an open
//! redirect.

use super::openapi::ServerErrors;
use crate::infra::error::ErrorBody;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::AuthDeps;
use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;

/// Where the agent lands when no `return_to` is given.
const DEFAULT_RETURN: &str = "/console";
/// Longest accepted `return_to`.
const MAX_RETURN_LEN: usize = 2048;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// The console page to land on (default `/console`): `/console` or a
    /// path under it, with an optional query.
    #[serde(default)]
    #[param(
        pattern = r"^/console(/[A-Za-z0-9_\-]+)*/?(\?[A-Za-z0-9_=&%\-]*)?$",
        max_length = 2048
    )]
    return_to: Option<String>,
}

/// Whether `path` is a console page path with an optional query: it starts
/// with `/console`, stays on this origin and carries no control characters.
fn is_console_path(path: &str) -> bool {
    let page = path.split(['?', '#']).next().unwrap_or_default();
    (page == DEFAULT_RETURN || page.starts_with("/console/"))
        && !path.contains('\\')
        && !page.contains("..")
        && !path.chars().any(char::is_control)
        && path.len() <= MAX_RETURN_LEN
}

/// `GET /auth/sso/{groupid}?return_to=/console/view?...`
#[utoipa::path(
    get,
    path = "/auth/sso/{groupid}",
    tag = "auth",
    summary = "Start a console sign-in at the group's identity provider",
    params(("groupid" = u64, Path, description = "The group (tenant) id", example = 72, maximum = 9007199254740991.0), StartQuery),
    responses(
        (status = 302, description = "To the group's `sso.login_url`, with `groupid` and `return_to`", headers(("Location" = String, description = "The identity provider's login URL"))),
        (status = 400, description = "`bad_request`: `return_to` is not a console path, or a bad group id", body = ErrorBody),
        (status = 404, description = "`unknown_group`, `sso_not_configured` (no `sso.login_url`), `not_served_here` (split roles)", body = ErrorBody),
        ServerErrors,
    ),
)]
pub async fn start(
    app: web::Data<AuthDeps>,
    groupid: web::Path<GroupId>,
    query: web::Query<StartQuery>,
) -> Result<HttpResponse, DomainError> {
    let groupid = groupid.into_inner();
    let config = app.config.current();
    let group = config
        .group(groupid)
        .ok_or(DomainError::UnknownGroup(groupid))?;
    let login_url = group
        .sso
        .as_ref()
        .and_then(|sso| sso.login_url.as_deref())
        .ok_or(DomainError::SsoNotConfigured(groupid))?;
    let path = query.return_to.as_deref().unwrap_or(DEFAULT_RETURN);
    if !is_console_path(path) {
        return Err(DomainError::BadRequest(
            "return_to must be a /console path on this server".into(),
        ));
    }
    // The console's own server: `server.console_url` on an auth node.
    let public = config.server.console_origin_url().trim_end_matches('/');
    // Both URLs were validated at start-up.
    let mut target = url::Url::parse(login_url)
        .map_err(|e| DomainError::Internal(format!("sso.login_url: {e}")))?;
    target
        .query_pairs_mut()
        .append_pair("groupid", &groupid.to_string())
        .append_pair("return_to", &format!("{public}{path}"));
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, target.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::is_console_path;

    #[test]
    fn only_console_paths_are_return_targets() {
        for good in [
            "/console",
            "/console/view?groupid=72&visitorid=v-1",
            "/console/join",
            "/console?x=1#top",
        ] {
            assert!(is_console_path(good), "{good}");
        }
        for bad in [
            "",
            "https://evil.example/console",
            "//evil.example/console",
            "/consoleevil",
            "/admin/72/audit",
            "/console/../admin/72/audit",
            "/console\\@evil.example",
            "/console/view?\nSet-Cookie:x",
            "console",
        ] {
            assert!(!is_console_path(bad), "{bad:?}");
        }
        assert!(!is_console_path(&format!("/console/{}", "a".repeat(3000))));
    }
}
