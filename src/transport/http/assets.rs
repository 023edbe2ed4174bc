//! Static files served from the binary: the browser SDKs, the agent
//! console and the demo visitor page. They are embedded at compile time, so a deployment is one
//! file, and served with exact content types, `nosniff`, and (for pages) a
//! Content-Security-Policy that allows no inline script.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

/// What the console is told, and the pages' CSP: same-origin scripts,
/// styles and sockets only, plus, on a presence node, requests to the auth
/// service's origin (`server.auth_url`), where the console signs in.
pub struct ConsoleSettings {
    auth_url: Option<String>,
    csp: String,
}

impl ConsoleSettings {
    /// `auth_url` empty: the console signs in on its own origin.
    pub fn new(auth_url: &str) -> Self {
        let auth_url = url::Url::parse(auth_url).ok();
        let connect = match &auth_url {
            Some(url) => format!("'self' {}", url.origin().ascii_serialization()),
            None => "'self'".to_owned(),
        };
        Self {
            auth_url: auth_url.map(|u| u.origin().ascii_serialization()),
            csp: format!(
                "default-src 'self'; script-src 'self'; style-src 'self'; \
                 connect-src {connect}; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                 form-action 'self'; frame-ancestors 'none'"
            ),
        }
    }
}

/// `GET /console/config.json`: `{"auth_url": origin | null}`.
async fn console_config(settings: web::Data<ConsoleSettings>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(serde_json::json!({ "auth_url": settings.auth_url }))
}

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

const CONSOLE_PAGE: &str = include_str!("../../web/console/index.html");

const ASSETS: &[Asset] = &[
    Asset {
        path: "/sdk/presence-visitor.js",
        content_type: JS,
        body: include_str!("../../web/sdk/presence-visitor.js"),
    },
    Asset {
        path: "/sdk/presence-agent.js",
        content_type: JS,
        body: include_str!("../../web/sdk/presence-agent.js"),
    },
    // The console's deep links are one page that routes on its path.
    Asset {
        path: "/console",
        content_type: HTML,
        body: CONSOLE_PAGE,
    },
    Asset {
        path: "/console/join",
        content_type: HTML,
        body: CONSOLE_PAGE,
    },
    Asset {
        path: "/console/view",
        content_type: HTML,
        body: CONSOLE_PAGE,
    },
    Asset {
        path: "/console/console.js",
        content_type: JS,
        body: include_str!("../../web/console/console.js"),
    },
    Asset {
        path: "/console/console.css",
        content_type: CSS,
        body: include_str!("../../web/console/console.css"),
    },
    Asset {
        path: "/demo",
        content_type: HTML,
        body: include_str!("../../web/demo/index.html"),
    },
    Asset {
        path: "/demo/demo.js",
        content_type: JS,
        body: include_str!("../../web/demo/demo.js"),
    },
    Asset {
        path: "/demo/demo.css",
        content_type: CSS,
        body: include_str!("../../web/demo/demo.css"),
    },
];

/// Registers a GET route per embedded file.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/console/config.json", "GET").route(web::get().to(console_config)),
    );
    for asset in ASSETS {
        cfg.service(super::resource(asset.path, "GET").route(web::get().to(
            move |settings: web::Data<ConsoleSettings>| async move { serve(asset, &settings) },
        )));
    }
}

fn serve(asset: &'static Asset, settings: &ConsoleSettings) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    if asset.content_type == HTML {
        // Pages are never stored: a console URL may carry `?jwt=` until
        // the page strips it.
        response
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&settings.csp)
                    .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
            ))
            .insert_header((
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ));
    } else {
        // Short-lived: SDK fixes reach every page within minutes.
        response.insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ));
    }
    response.body(asset.body)
}
