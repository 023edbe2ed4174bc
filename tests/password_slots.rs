//! Security review, item 12: one client address has at most two password
//! checks in flight, so it cannot take the hashing slots from another.

mod common;

use argon2::password_hash::{PasswordHasher, SaltString};
use common::{TestServer, PASSWORD, WAIT};
use presence_server::config::{Config, UserConfig};
use secrecy::SecretString;
use serde_json::json;

/// A user whose hash is slow to check (~50 times the default work), so
/// that guesses sent together are all in flight together.
fn slow_user(config: &mut Config) {
    let params = argon2::Params::new(19_456, 50, 1, None).expect("params");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"slow-user-salt-1").expect("salt");
    let hash = argon
        .hash_password(b"slow-pass", &salt)
        .expect("hash")
        .to_string();
    config.groups[0].users.push(UserConfig {
        username: "slow.user".into(),
        password_hash: Some(SecretString::from(hash)),
        partner_user_id: None,
        role: Default::default(),
        name: None,
    });
}

fn client_from(ip: &str) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().local_address(ip.parse().expect("ip")))
        .timeout(WAIT)
        .finish()
}

async fn token(client: &awc::Client, server: &TestServer, user: &str, password: &str) -> u16 {
    let mut resp = client
        .post(server.url("/auth/token"))
        .send_json(&json!({"groupid":72,"credentials":{"username":user,"password":password}}))
        .await
        .expect("response");
    let _ = resp.body().await;
    resp.status().as_u16()
}

#[actix_web::test]
async fn one_address_cannot_take_the_hashing_slots_from_another() {
    let server = TestServer::start_with(|c| {
        common::without_lockout(c);
        slow_user(c);
    })
    .await;
    let attacker = client_from("127.0.0.2");
    let agent = client_from("127.0.0.3");
    let guesses = futures_util::future::join_all(
        (0..12).map(|_| token(&attacker, &server, "slow.user", "guess")),
    );
    let legit = token(&agent, &server, "fred.demo", PASSWORD);
    let (guesses, legit) = tokio::join!(guesses, legit);
    assert_eq!(legit, 200, "the other address signs in");
    let refused = guesses.iter().filter(|s| **s == 429).count();
    let checked = guesses.iter().filter(|s| **s == 401).count();
    assert_eq!((checked, refused), (2, 10), "{guesses:?}");
    // With its checks done, the address may try again.
    assert_eq!(
        token(&attacker, &server, "slow.user", "slow-pass").await,
        200
    );
}
