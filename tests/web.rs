//! Static files served from the binary: the SDKs and the demo page.

mod common;

use common::TestServer;

#[actix_web::test]
async fn the_visitor_sdk_is_served_as_javascript() {
    let server = TestServer::start().await;
    let mut resp = server
        .http
        .get(server.url("/sdk/presence-visitor.js"))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    let body = resp.body().limit(1 << 20).await.expect("body");
    let text = std::str::from_utf8(&body).expect("utf-8");
    assert!(text.contains("class PresenceVisitor"));
    assert!(
        body.len() < 20 * 1024,
        "small enough for every page: {} bytes",
        body.len()
    );
}

#[actix_web::test]
async fn the_demo_page_forbids_inline_script() {
    let server = TestServer::start().await;
    let mut resp = server
        .http
        .get(server.url("/demo"))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("CSP")
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let body = resp.body().await.expect("body");
    let html = std::str::from_utf8(&body).expect("utf-8");
    assert!(html.contains("<title>"));
    // Every script is an external file.
    for tag in html.split("<script").skip(1) {
        assert!(tag.trim_start().starts_with("src="), "inline script: {tag}");
    }
    for path in ["/demo/demo.js", "/demo/demo.css"] {
        assert_eq!(server.status_of(path).await, 200, "{path}");
    }
    assert_eq!(server.status_of("/demo/missing.js").await, 404);
}

#[actix_web::test]
async fn the_agent_sdk_and_console_are_served() {
    let server = TestServer::start().await;
    let mut resp = server
        .http
        .get(server.url("/sdk/presence-agent.js"))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/javascript; charset=utf-8")
    );
    let body = resp.body().limit(1 << 20).await.expect("body");
    let text = std::str::from_utf8(&body).expect("utf-8");
    assert!(text.contains("class PresenceAgent") && text.contains("const Authorization"));

    // Every deep link is the console page, never cached (it may carry ?jwt=).
    for path in [
        "/console",
        "/console/join",
        "/console/view?groupid=72&visitorid=v-1",
    ] {
        let mut resp = server
            .http
            .get(server.url(path))
            .send()
            .await
            .expect("response");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), "text/html; charset=utf-8");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let body = resp.body().await.expect("body");
        let html = std::str::from_utf8(&body).expect("utf-8");
        for tag in html.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src="), "inline script: {tag}");
        }
        assert!(!has_inline_handler(html), "inline event handler in {path}");
    }
    for path in ["/console/console.js", "/console/console.css"] {
        assert_eq!(server.status_of(path).await, 200, "{path}");
    }
    assert_eq!(server.status_of("/console/other").await, 404);
}

/// Whether HTML has an inline event-handler attribute (` onclick=` ...).
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let name: String = html[at + 3..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        !name.is_empty() && html[at + 3 + name.len()..].starts_with('=')
    })
}

#[test]
fn inline_handlers_are_detected() {
    assert!(has_inline_handler(r#"<img src=x onerror="alert(1)">"#));
    assert!(has_inline_handler("<body onload=go()>"));
    assert!(!has_inline_handler("<p>Turn on the lights</p>"));
}
