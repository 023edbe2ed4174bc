//! CORS and the first Origin gate, as actix-web middleware over the
//! presence core's [`OriginPolicy`].

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

use crate::infra::error::DomainError;
use crate::infra::ids::GroupId;
use crate::presence::origin::{display, OriginPolicy, RequestOrigin};

/// The health check, exempt from the Origin gate.
const HEALTH_PATH: &str = "/healthz";

/// The group a `/presence/{groupid}/...` or `/admin/{groupid}/...` path
/// names, read as the router reads it: `path` is the router's (requoted)
/// path, and the segment is then percent-decoded in full, as path
/// parameters are, so `%37%32` and `%2B72` name group 72 here too.
fn path_group(path: &str) -> Option<GroupId> {
    let segment = path
        .strip_prefix("/presence/")
        .or_else(|| path.strip_prefix("/admin/"))?
        .split('/')
        .next()?;
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?
        .parse()
        .ok()
}

const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
const PREFLIGHT_MAX_AGE: &str = "600";

/// CORS and the first Origin gate, as `actix_web::middleware::from_fn`.
///
/// - Preflights get the CORS headers if the origin is whitelisted anywhere,
///   else 403 `origin_not_allowed`.
/// - Other requests from an origin no group lists get 403 before routing; a
///   WebSocket handshake is refused here, before the upgrade.
/// - Every response carries `Vary: Origin`; `Access-Control-Allow-Origin`
///   echoes the origin only when it is whitelisted, and never on a response
///   that refuses it for its group.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let policy = req
        .app_data::<web::Data<OriginPolicy>>()
        .cloned()
        .ok_or_else(|| DomainError::Internal("origin policy missing".into()))?;
    let origin = RequestOrigin::from_headers(req.headers());
    // Where the path names the group, its own list decides; elsewhere the
    // union of all groups' lists.
    let allowed = match path_group(req.match_info().as_str()) {
        Some(group) => policy.allowed_for_group(group, &origin),
        None => policy.allowed_anywhere(&origin),
    };
    if req.path() == HEALTH_PATH {
        // Liveness is public and carries no data; never gate it on Origin.
        let mut response = next.call(req).await?;
        decorate(response.headers_mut(), &origin, false, false);
        return Ok(response.map_into_left_body());
    }
    let is_preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    if is_preflight || !allowed {
        let mut response = if !allowed {
            DomainError::OriginNotAllowed(display(&origin)).error_response()
        } else {
            let mut ok = HttpResponse::NoContent().finish();
            let headers = ok.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
            ok
        };
        let console = allowed && policy.is_console(&origin);
        decorate(response.headers_mut(), &origin, allowed, console);
        return Ok(req.into_response(response).map_into_right_body());
    }

    let mut response = next.call(req).await?;
    // A handler that refused the origin for its group must not echo it.
    let refused_by_group = response
        .response()
        .error()
        .and_then(|e| e.as_error::<DomainError>())
        .is_some_and(|e| matches!(e, DomainError::OriginNotAllowed(_)));
    let echoed = allowed && !refused_by_group;
    decorate(
        response.headers_mut(),
        &origin,
        echoed,
        echoed && policy.is_console(&origin),
    );
    Ok(response.map_into_left_body())
}

/// `credentials`: the console's origin, whose requests to an auth node of
/// a split deployment carry the website session cookie.
fn decorate(headers: &mut HeaderMap, origin: &RequestOrigin, allowed: bool, credentials: bool) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let (RequestOrigin::Valid(o), true) = (origin, allowed) {
        if let Ok(value) = HeaderValue::from_str(o) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_paths_name_their_group() {
        assert_eq!(path_group("/presence/72/visitors/v-1"), Some(72));
        assert_eq!(path_group("/presence/72"), Some(72));
        assert_eq!(path_group("/presence/x/visitors"), None);
        assert_eq!(path_group("/admin/73/audit"), Some(73));
        assert_eq!(path_group("/auth/token"), None);
        assert_eq!(path_group("/presence/%37%32/visitors"), Some(72));
        assert_eq!(path_group("/presence/%2B72/visitors"), Some(72));
    }
}
