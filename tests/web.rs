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
