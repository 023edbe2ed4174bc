//! The document covers every route, and its error-code enum is exactly the
//! codes `DomainError::code` gives.

use std::collections::BTreeSet;

use super::document;
use crate::infra::error::ERROR_CODES;

/// Every route `configure` registers, with its methods, as the document
/// must list them.
const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/openapi.json", &["get"]),
    ("/auth/token", &["post"]),
    ("/auth/login", &["post"]),
    ("/auth/logout", &["post"]),
    ("/auth/revoke", &["post"]),
    ("/auth/sso/{groupid}", &["get"]),
    ("/visitor/ws", &["get"]),
    ("/agent/ws", &["get"]),
    ("/admin/{groupid}/audit", &["get"]),
    ("/admin/{groupid}/agents", &["get"]),
    ("/admin/{groupid}/agents/{username}/revoke", &["post"]),
    ("/admin/{groupid}/webhooks/failed", &["get"]),
    ("/admin/{groupid}/webhooks/failed/replay", &["post"]),
    ("/presence/{groupid}/visitors", &["get"]),
    ("/presence/{groupid}/visitors/{visitorid}", &["get"]),
    ("/presence/{groupid}/visitors/{visitorid}/invoke", &["post"]),
    ("/presence/{groupid}/sessions/{key}", &["get"]),
    ("/presence/{groupid}/visitors/{visitorid}/signal", &["post"]),
    (
        "/presence/{groupid}/visitors/{visitorid}/confirm",
        &["post", "delete"],
    ),
    (
        "/presence/{groupid}/visitors/{visitorid}/confirm/{cid}",
        &["get"],
    ),
];

fn json() -> serde_json::Value {
    serde_json::to_value(document()).expect("serialises")
}

#[test]
fn every_route_and_method_is_documented_and_nothing_else() {
    let doc = json();
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
        .collect();
    assert_eq!(documented, routed);
    // The route table above is the one `configure` registers.
    let source = include_str!("../mod.rs");
    let configure = &source[source.find("pub fn configure").expect("configure")..];
    let configure = &configure[..configure.find("\n}\n").expect("its end")];
    for (path, _) in ROUTES {
        assert!(
            configure.contains(&format!("\"{path}\"")),
            "{path} is not routed"
        );
    }
    assert_eq!(
        configure.matches("resource(").count(),
        ROUTES.len(),
        "a route is registered that the document does not list"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
    let doc = json();
    assert_eq!(doc["openapi"], "3.1.0");
    let scheme = &doc["components"]["securitySchemes"]["agent_token"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    // Every route that verifies a token says so, and no other does.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op.get("security").is_some();
            let needs_token = path.starts_with("/presence/")
                || path.starts_with("/admin/")
                || path == "/auth/revoke";
            assert_eq!(secured, needs_token, "{method} {path}");
            if needs_token {
                assert!(op["responses"].get("401").is_some(), "{method} {path}");
            }
        }
    }
}

#[test]
fn every_error_response_is_the_error_body() {
    let doc = json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    let named = schema["$ref"].as_str().unwrap_or_default();
                    assert!(
                        named.ends_with("/ErrorBody") || named.ends_with("/HealthBody"),
                        "{method} {path} {status}: {schema}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_error_code_enum_is_every_code_the_server_gives() {
    // The codes `code()` maps to, read from its source, so a new code
    // cannot be left out of the document.
    let source = include_str!("../../../infra/error.rs");
    let start = source.find("pub fn code(&self)").expect("code()");
    let end = source[start..].find("pub fn body(&self)").expect("body()") + start;
    let mut in_code: BTreeSet<&str> = BTreeSet::new();
    for piece in source[start..end].split("=> \"").skip(1) {
        in_code.insert(piece.split('"').next().unwrap());
    }
    let listed: BTreeSet<&str> = ERROR_CODES.iter().copied().collect();
    assert_eq!(listed.len(), ERROR_CODES.len(), "a code is listed twice");
    assert_eq!(listed, in_code);
    let doc = json();
    let schema = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    let documented: BTreeSet<&str> = schema
        .as_array()
        .expect("enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(documented, listed);
    assert_eq!(
        doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
}

#[test]
fn every_reference_resolves() {
    let doc = json();
    let mut refs = Vec::new();
    fn walk(value: &serde_json::Value, refs: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    refs.push(target.clone());
                }
                map.values().for_each(|v| walk(v, refs));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    walk(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a schema reference"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{target} does not resolve"
        );
    }
}
