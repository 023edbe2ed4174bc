//! Unit tests of config loading (defaults, file, environment) and of
//! validation naming the bad key.

// figment::Jail's closures return figment's (large) error type by design.
#![allow(clippy::result_large_err)]

use super::*;

const MINIMAL: &str = r#"
[[groups]]
id = 72
name = "demo"
presence = true
api_key = "an-api-key-of-16+"
origins = ["http://localhost:8080"]
visitor_identity_secret = "a-visitor-identity-secret-of-32-bytes!"
visitor_identity_issuer = "shop.example"

[[groups.users]]
username = "fred.demo"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0sm0Ac1JDsZ8ya3Ny2ZjGMtVRP3yT9TrZYyRXp6DsJc"
"#;

fn error_key(toml: &str) -> String {
    Config::from_toml_str(toml)
        .expect_err("must be refused")
        .key
}

#[test]
fn the_shipped_demo_config_is_valid() {
    let config =
        Config::from_toml_str(include_str!("../../../config/default.toml")).expect("valid");
    let group = config.group(72).expect("group 72");
    assert!(group.presence);
    assert_eq!(group.users.len(), 2);
    assert!(config.presence.ping_interval_ms * 2 <= config.presence.client_timeout_ms);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = Config::from_toml_str(MINIMAL).expect("valid");
    assert_eq!(config.server.bind, "127.0.0.1:8080");
    assert_eq!(config.presence.hello_timeout_ms, 10_000);
    assert_eq!(config.presence.max_pending_invokes, 64);
    assert_eq!(config.presence.confirmation_ttl_secs, 3600);
    assert_eq!(config.presence.confirm_timeout_ms, 120_000);
    assert_eq!(config.presence.min_presence_interval_ms, 250);
    assert_eq!(config.presence.inbound_frames_per_sec, 500);
    assert_eq!(config.presence.inbound_frame_burst, 4096);
    assert_eq!(config.auth.token_max_secs, 7200);
    assert_eq!(config.groups[0].invoke_allow, vec!["*".to_owned()]);
    assert_eq!(config.groups[0].visitor_identity_max_secs, 86_400);
    assert_eq!(config.presence.session_key_mints_per_minute, 300);
}

#[test]
fn environment_overrides_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "presence.toml",
            &format!("[server]\nbind = \"127.0.0.1:9000\"\n{MINIMAL}"),
        )?;
        jail.set_env("PRESENCE__SERVER__BIND", "127.0.0.1:9100");
        jail.set_env("PRESENCE__PRESENCE__INVOKE_TIMEOUT_MS", "2500");
        let config = Config::load(Path::new("presence.toml")).expect("valid");
        assert_eq!(config.server.bind, "127.0.0.1:9100");
        assert_eq!(config.presence.invoke_timeout_ms, 2500);
        Ok(())
    });
}

#[test]
fn a_bad_environment_value_names_its_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("presence.toml", MINIMAL)?;
        jail.set_env("PRESENCE__PRESENCE__HELLO_TIMEOUT_MS", "soon");
        let err = Config::load(Path::new("presence.toml")).expect_err("refused");
        assert_eq!(err.key, "presence.hello_timeout_ms", "{err}");
        Ok(())
    });
}

#[test]
fn a_missing_file_is_an_error() {
    let err = Config::load(Path::new("/nonexistent/presence.toml")).expect_err("refused");
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
fn validation_errors_name_the_offending_key() {
    let cases = [
        (
            format!("[server]\nbind = \"nope\"\n{MINIMAL}"),
            "server.bind",
        ),
        // 2^53: past what every JSON reader holds exactly.
        (
            MINIMAL.replace("id = 72", "id = 9007199254740992"),
            "groups[0].id",
        ),
        (
            format!("[server]\npublic_url = \"ftp://x\"\n{MINIMAL}"),
            "server.public_url",
        ),
        (
            format!("[presence]\nping_interval_ms = 40000\nclient_timeout_ms = 60000\n{MINIMAL}"),
            "presence.ping_interval_ms",
        ),
        (
            format!("[presence]\nmax_message_bytes = 10\n{MINIMAL}"),
            "presence.max_message_bytes",
        ),
        (
            format!("[presence]\nconfirmation_ttl_secs = 59\n{MINIMAL}"),
            "presence.confirmation_ttl_secs",
        ),
        (
            format!("[presence]\nconfirm_timeout_ms = 600001\n{MINIMAL}"),
            "presence.confirm_timeout_ms",
        ),
        (
            format!("[presence]\nmin_presence_interval_ms = 0\n{MINIMAL}"),
            "presence.min_presence_interval_ms",
        ),
        (
            format!("[presence]\ninbound_frames_per_sec = 0\n{MINIMAL}"),
            "presence.inbound_frames_per_sec",
        ),
        (
            format!("[presence]\ninbound_frame_burst = 15\n{MINIMAL}"),
            "presence.inbound_frame_burst",
        ),
        (
            format!("[auth]\ntoken_max_secs = 7201\n{MINIMAL}"),
            "auth.token_max_secs",
        ),
        (
            format!("[auth]\ntoken_default_secs = 30\n{MINIMAL}"),
            "auth.token_default_secs",
        ),
        (
            MINIMAL.replace("http://localhost:8080", "null"),
            "groups[0].origins[0]",
        ),
        (
            MINIMAL.replace("http://localhost:8080", "http://localhost:8080/"),
            "groups[0].origins[0]",
        ),
        (
            MINIMAL.replace("http://localhost:8080", "HTTP://LOCALHOST:8080"),
            "groups[0].origins[0]",
        ),
        (
            MINIMAL.replace("$argon2id$", "$argon2i$"),
            "groups[0].users[0].password_hash",
        ),
        (
            MINIMAL.replace(
                "password_hash = \"$argon2id",
                "password_hash = \"x$argon2id",
            ),
            "groups[0].users[0].password_hash",
        ),
        (
            MINIMAL.replace("fred.demo", "fred demo"),
            "groups[0].users[0].username",
        ),
        (
            MINIMAL.replace("an-api-key-of-16+", "short"),
            "groups[0].api_key",
        ),
        (
            format!("{MINIMAL}\n[[groups]]\nid = 72\nname = \"dup\"\n"),
            "groups[1].id",
        ),
        (
            MINIMAL.replace(
                "presence = true",
                "presence = true\ninvoke_allow = [\"show terms\"]",
            ),
            "groups[0].invoke_allow[0]",
        ),
        (
            MINIMAL
                .replace(
                    "presence = true",
                    "presence = true\nrequire_visitor_identity = true",
                )
                .replace(
                    "visitor_identity_secret = \"a-visitor-identity-secret-of-32-bytes!\"",
                    "",
                ),
            "groups[0].require_visitor_identity",
        ),
        (
            MINIMAL.replace(
                "presence = true",
                "presence = true\nvisitor_identity_max_secs = 59",
            ),
            "groups[0].visitor_identity_max_secs",
        ),
        (
            format!("[presence]\nsession_key_mints_per_minute = 0\n{MINIMAL}"),
            "presence.session_key_mints_per_minute",
        ),
        ("[server]\n".to_owned(), "groups"),
    ];
    for (toml, key) in cases {
        assert_eq!(error_key(&toml), key, "{toml}");
    }
}

#[test]
fn unknown_keys_are_refused_not_ignored() {
    let err =
        Config::from_toml_str(&format!("[server]\nbindd = \"x\"\n{MINIMAL}")).expect_err("refused");
    assert!(err.to_string().contains("bindd"), "{err}");
}

#[test]
fn debug_output_never_shows_secrets() {
    let config = Config::from_toml_str(MINIMAL).expect("valid");
    let shown = format!("{config:?}");
    for secret in [
        "an-api-key-of-16+",
        "a-visitor-identity-secret-of-32-bytes!",
        "c29tZXNhbHRzb21lc2FsdA",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked into Debug");
    }
    assert!(shown.contains("fred.demo"));
}

#[test]
fn an_sso_login_url_must_be_an_absolute_web_url() {
    let key = format!(
        "{}/tests/keys/group72-a.pub.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let with_login_url = |url: &str| {
        MINIMAL.replace(
            "\n[[groups.users]]",
            &format!(
                "[groups.sso]\nissuer = \"acme\"\npublic_keys = [\"{key}\"]\nlogin_url = \"{url}\"\n\n[[groups.users]]"
            ),
        )
    };
    let config = Config::from_toml_str(&with_login_url("https://idp.example/login?t=1"))
        .expect("an https URL is accepted");
    let sso = config.groups[0].sso.as_ref().expect("sso");
    assert_eq!(
        sso.login_url.as_deref(),
        Some("https://idp.example/login?t=1")
    );
    assert!(sso.require_jti, "a jti is required unless turned off");
    for bad in [
        "javascript:alert(1)",
        "/login",
        "idp.example/login",
        "ftp://idp.example/",
    ] {
        assert_eq!(
            error_key(&with_login_url(bad)),
            "groups[0].sso.login_url",
            "{bad}"
        );
    }
}

#[test]
fn a_rotation_period_under_a_minute_is_valid_but_warned_about() {
    assert_eq!(
        error_key(&format!("[auth]\nkey_rotation_secs = 0\n{MINIMAL}")),
        "auth.key_rotation_secs"
    );
    let fast =
        Config::from_toml_str(&format!("[auth]\nkey_rotation_secs = 2\n{MINIMAL}")).expect("valid");
    let warnings = fast.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("auth.key_rotation_secs = 2"),
        "{warnings:?}"
    );
    let usual = Config::from_toml_str(MINIMAL).expect("valid");
    assert!(usual.warnings().is_empty());
}

#[test]
fn split_roles_are_validated_at_start_up() {
    let secret = "internal_secret = \"0123456789abcdef0123456789abcdef\"";
    let with = |server: &str| format!("[server]\n{server}\n{MINIMAL}");
    let presence = format!(
        "role = \"presence\"\n{secret}\nauth_url = \"https://auth.example\"\nauth_internal_urls = [\"http://10.0.0.5:9091\"]"
    );
    let config = Config::from_toml_str(&with(&presence)).expect("a valid presence node");
    assert_eq!(config.server.role, ServerRole::Presence);
    assert!(
        !format!("{config:?}").contains("0123456789abcdef"),
        "the secret is redacted"
    );
    let cases = [
        ("role = \"presence\"\nauth_url = \"https://auth.example\"\nauth_internal_urls = [\"http://a:1\"]\ninternal_secret = \"short\"", "server.internal_secret"),
        (&*format!("role = \"presence\"\n{secret}\nauth_internal_urls = [\"http://a:1\"]"), "server.auth_url"),
        (&*format!("role = \"presence\"\n{secret}\nauth_url = \"https://auth.example\""), "server.auth_internal_urls"),
        (&*format!("role = \"presence\"\n{secret}\nauth_url = \"https://auth.example\"\nauth_internal_urls = [\"http://user:pw@a:1\"]"), "server.auth_internal_urls[0]"),
        (&*format!("role = \"presence\"\n{secret}\nauth_url = \"https://auth.example/path\"\nauth_internal_urls = [\"http://a:1\"]"), "server.auth_url"),
        (&*format!("role = \"presence\"\n{secret}\nauth_url = \"https://auth.example\"\nauth_internal_urls = [\"http://a:1\", \"http://a:1/\"]"), "server.auth_internal_urls[1]"),
        (&*format!("role = \"auth\"\n{secret}"), "server.presence_internal_urls"),
        (&*format!("role = \"auth\"\n{secret}\npresence_internal_urls = [\"http://a:1\", \"http://b:1\"]"), "server.presence_internal_urls"),
        (&*format!("role = \"auth\"\n{secret}\npresence_internal_urls = [\"ftp://a:1\"]"), "server.presence_internal_urls[0]"),
        (&*format!("role = \"auth\"\n{secret}\npresence_internal_urls = [\"http://a:1\"]\ninternal_bind = \"nonsense\""), "server.internal_bind"),
        (&*format!("role = \"auth\"\n{secret}\npresence_internal_urls = [\"http://a:1\"]\nbind = \"127.0.0.1:7000\"\ninternal_bind = \"127.0.0.1:7000\""), "server.internal_bind"),
        ("role = \"both\"", "server.role"),
    ];
    for (server, key) in cases {
        assert!(
            error_key(&with(server)).starts_with(key),
            "{server}: expected {key}, got {}",
            error_key(&with(server))
        );
    }
    // `all` needs none of it.
    Config::from_toml_str(&with("role = \"all\"")).expect("the default role");
}
