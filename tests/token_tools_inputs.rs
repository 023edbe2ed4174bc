//! The token tools refuse what the server would refuse, and a config or
//! deployment they cannot use, with a clear message and exit code, and
//! without creating anything.

mod common;

use common::tools::{tool, ConfigFile};

#[actix_web::test]
async fn gen_token_refuses_unknown_groups_users_and_lifetimes_out_of_range() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = ConfigFile::new(data.path(), "");
    let c = config.path();
    for (group, user, ttl, said) in [
        ("99", "fred.demo", "600", "group 99 is not in the config"),
        ("74", "nick", "600", "no Presence subscription"),
        ("72", "bad name!", "600", "is not a valid username"),
        (
            "72",
            "olga",
            "600",
            "user olga is not configured in group 72",
        ),
        (
            "72",
            "fred.demo",
            "59",
            "--ttl must be 60 to auth.token_max_secs (7200)",
        ),
        (
            "72",
            "fred.demo",
            "7201",
            "--ttl must be 60 to auth.token_max_secs (7200)",
        ),
    ] {
        let args = [
            "gen-token",
            "--config",
            c,
            "--group",
            group,
            "--user",
            user,
            "--ttl",
            ttl,
        ];
        let ran = tool(&args, None).await;
        assert_eq!(ran.code, Some(1), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(said), "{args:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "no token: {}", ran.stdout);
    }
    let ran = tool(
        &[
            "gen-token",
            "--config",
            "/nonexistent.toml",
            "--group",
            "72",
            "--user",
            "fred.demo",
        ],
        None,
    )
    .await;
    assert_eq!(ran.code, Some(2), "a config error: {}", ran.stderr);
    let ran = tool(&["check-token", "--config", "/nonexistent.toml", "x"], None).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    let ran = tool(&["check-token", "--config", c], None).await;
    assert_eq!(ran.code, Some(2), "usage: no token: {}", ran.stderr);

    // Reading tools never create a data dir (nor a key ring).
    let ran = tool(&["check-token", "--config", c, "x.y.z"], None).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no server has run with this config"),
        "{}",
        ran.stderr
    );
    let ran = tool(&["keys", "list", "--config", c], None).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        std::fs::read_dir(data.path())
            .expect("dir")
            .next()
            .is_none(),
        "still empty"
    );

    // Cluster mode with no Redis: a clear error, no token.
    let port = common::cluster::free_port();
    let nowhere = ConfigFile::new(
        data.path(),
        &format!("\n[cluster]\nmode = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/0\"\nredis_timeout_ms = 300\n"),
    );
    let args = [
        "gen-token",
        "--config",
        nowhere.path(),
        "--group",
        "72",
        "--user",
        "fred.demo",
    ];
    let ran = tool(&args, None).await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("did not answer"), "{}", ran.stderr);
    assert!(ran.stdout.is_empty());
    let ran = tool(&["check-token", "--config", nowhere.path(), "x.y.z"], None).await;
    assert_eq!(ran.code, Some(2), "could not check: {}", ran.stderr);
}
