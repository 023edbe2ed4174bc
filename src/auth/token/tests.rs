//! Unit tests of the token service: issuance, every refusal of `verify`,
//! rotation across restarts, and signing only through the key source.

use std::time::Duration;

use super::*;
use crate::infra::clock::{Clock, ManualClock};
use crate::store::Store;
use keyring::SigningKey;
use serde_json::json;

/// Rotation period of the fixtures, in seconds.
const ROTATION: u64 = 600;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    service: TokenService,
}

/// The single-node service over `store`: a key ring rotating every
/// [`ROTATION`] seconds, for tokens of at most 2 h; and the ring itself.
fn single_node(store: Arc<Store>, clock: SharedClock) -> (TokenService, Arc<KeyRing>) {
    let ring = Arc::new(
        KeyRing::load_or_create(store.clone(), clock.clone(), ROTATION, 7200).expect("ring"),
    );
    let revocations = Revocations::load(store).expect("revocations");
    let service = TokenService::new(ring.clone(), revocations, clock, 7200);
    (service, ring)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let (service, _) = single_node(store, clock.clone());
    Fixture {
        _dir: dir,
        clock,
        service,
    }
}

fn claims_json(f: &Fixture) -> serde_json::Value {
    let now = f.clock.now_secs();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "fred.demo", "groupid": 72,
        "role": "agent", "iat": now, "exp": now + 600, "jti": "j1"
    })
}

/// Builds a token by hand: HS256 ones are really signed with `secret`, any
/// other `alg` gets a signature of random-looking bytes.
fn sign_with(header: serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    if header["alg"] == "HS256" {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = header["kid"].as_str().map(str::to_owned);
        return jsonwebtoken::encode(&h, claims, &jsonwebtoken::EncodingKey::from_secret(secret))
            .expect("encode");
    }
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = URL_SAFE_NO_PAD.encode(secret);
    format!("{head}.{body}.{sig}")
}

#[test]
fn issued_tokens_verify_with_their_claims() {
    let f = fixture();
    let issued = f
        .service
        .issue("fred.demo", 72, Role::Agent, 3600)
        .expect("issue");
    let claims = f.service.verify(&issued.token).expect("verify");
    assert_eq!(claims, issued.claims);
    assert_eq!(claims.exp - claims.iat, 3600);
    let header = jsonwebtoken::decode_header(&issued.token).expect("header");
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(
        header.kid.as_deref(),
        Some(f.service.keys().signing_key().unwrap().kid.as_str())
    );
}

#[test]
fn expiry_allows_five_seconds_of_leeway_and_no_more() {
    let f = fixture();
    let issued = f
        .service
        .issue("fred.demo", 72, Role::Agent, 60)
        .expect("issue");
    f.clock.advance(Duration::from_secs(60 + LEEWAY_SECS - 1));
    assert!(f.service.verify(&issued.token).is_ok());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.service.verify(&issued.token), Err(TokenError::Expired));
}

#[test]
fn tokens_from_the_future_are_refused() {
    let f = fixture();
    let mut claims = claims_json(&f);
    claims["iat"] = json!(f.clock.now_secs() + 60);
    claims["exp"] = json!(f.clock.now_secs() + 600);
    let token = f.service.sign(&claims).expect("sign");
    assert_eq!(f.service.verify(&token), Err(TokenError::IssuedInFuture));
}

#[test]
fn nbf_gets_the_same_leeway_as_exp_and_must_be_a_number() {
    let f = fixture();
    let now = f.clock.now_secs();
    let with_nbf = |nbf: serde_json::Value| {
        let mut claims = claims_json(&f);
        claims["nbf"] = nbf;
        f.service.verify(&f.service.sign(&claims).expect("sign"))
    };
    assert!(with_nbf(json!(now)).is_ok());
    assert!(with_nbf(json!(now + LEEWAY_SECS)).is_ok(), "within leeway");
    assert_eq!(
        with_nbf(json!(now + LEEWAY_SECS + 1)),
        Err(TokenError::NotYetValid)
    );
    for bad in [json!("soon"), json!(null), json!(1.5)] {
        assert_eq!(with_nbf(bad.clone()), Err(TokenError::BadClaims), "{bad}");
    }
}

#[test]
fn a_crit_header_is_refused_even_with_a_good_signature() {
    let f = fixture();
    let key = f.service.keys().signing_key().unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    header.crit = Some(vec!["exp".into()]);
    let token = jsonwebtoken::encode(&header, &claims_json(&f), &key.encoding).expect("sign");
    assert_eq!(f.service.verify(&token), Err(TokenError::CriticalHeader));
}

#[test]
fn lifetimes_over_the_maximum_are_refused_even_when_signed() {
    let f = fixture();
    let mut claims = claims_json(&f);
    claims["exp"] = json!(f.clock.now_secs() + 7201);
    let token = f.service.sign(&claims).expect("sign");
    assert_eq!(f.service.verify(&token), Err(TokenError::LifetimeTooLong));
}

#[test]
fn every_required_claim_is_required() {
    let f = fixture();
    for missing in ["exp", "iat", "iss", "aud", "sub", "groupid", "jti", "role"] {
        let mut claims = claims_json(&f);
        claims.as_object_mut().expect("object").remove(missing);
        let token = f.service.sign(&claims).expect("sign");
        assert!(
            f.service.verify(&token).is_err(),
            "token without {missing} accepted"
        );
    }
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let f = fixture();
    for (claim, value) in [("iss", "someone-else"), ("aud", "visitor")] {
        let mut claims = claims_json(&f);
        claims[claim] = json!(value);
        let token = f.service.sign(&claims).expect("sign");
        assert_eq!(
            f.service.verify(&token),
            Err(TokenError::BadClaims),
            "{claim}"
        );
    }
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let f = fixture();
    let claims = claims_json(&f);
    let secret = [1u8; 32];
    let unknown = sign_with(
        json!({"alg": "HS256", "typ": "JWT", "kid": "nope"}),
        &claims,
        &secret,
    );
    assert_eq!(f.service.verify(&unknown), Err(TokenError::UnknownKey));
    let none = sign_with(json!({"alg": "HS256", "typ": "JWT"}), &claims, &secret);
    assert_eq!(f.service.verify(&none), Err(TokenError::UnknownKey));
}

#[test]
fn a_known_kid_with_a_forged_signature_is_refused() {
    let f = fixture();
    let kid = f.service.keys().signing_key().unwrap().kid.clone();
    let forged = sign_with(
        json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
        &claims_json(&f),
        &[9u8; 32],
    );
    assert_eq!(f.service.verify(&forged), Err(TokenError::BadSignature));
}

#[test]
fn other_algorithms_and_alg_none_are_refused() {
    let f = fixture();
    let kid = f.service.keys().signing_key().unwrap().kid.clone();
    let claims = claims_json(&f);
    for alg in ["none", "HS512", "RS256", "ES256"] {
        let token = sign_with(
            json!({"alg": alg, "typ": "JWT", "kid": kid}),
            &claims,
            &[0u8; 32],
        );
        assert!(f.service.verify(&token).is_err(), "alg {alg} accepted");
    }
    let unsigned = {
        let t = sign_with(json!({"alg": "none", "kid": kid}), &claims, &[0u8; 32]);
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[2] = "";
        parts.join(".")
    };
    assert!(f.service.verify(&unsigned).is_err());
}

#[test]
fn garbage_and_oversize_tokens_are_malformed() {
    let f = fixture();
    for bad in ["", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.%%%.x"] {
        assert!(f.service.verify(bad).is_err(), "{bad}");
    }
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(f.service.verify(&huge), Err(TokenError::Malformed));
}

#[test]
fn rotation_keeps_old_tokens_valid_until_their_key_is_purged_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manual = Arc::new(ManualClock::new(1_800_000_000_000));
    let clock: SharedClock = manual.clone();
    let open = |clock: &SharedClock| {
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        single_node(store, clock.clone())
    };

    let (service, _) = open(&clock);
    let first_kid = service.keys().signing_key().unwrap().kid.clone();
    let old = service
        .issue("fred.demo", 72, Role::Agent, 3600)
        .expect("issue")
        .token;
    assert_eq!(
        service.keys().maintain().expect("maintain"),
        KeyMaintenance::default(),
        "not due yet"
    );

    manual.advance(Duration::from_secs(ROTATION));
    let done = service.keys().maintain().expect("maintain");
    let second_kid = done.rotated_to.clone().expect("rotated");
    assert_ne!(second_kid, first_kid);
    assert!(done.purged.is_empty());
    let new = service
        .issue("fred.demo", 72, Role::Agent, 3600)
        .expect("issue")
        .token;
    assert_eq!(
        jsonwebtoken::decode_header(&new).expect("header").kid,
        Some(second_kid.clone())
    );
    assert!(service.verify(&old).is_ok(), "the old key still verifies");
    assert!(service.verify(&new).is_ok());
    drop(service);

    // A restart mid-rotation keeps both keys and both tokens.
    let (service, ring) = open(&clock);
    assert_eq!(ring.len(), 2);
    assert_eq!(service.keys().signing_key().unwrap().kid, second_kid);
    assert!(service.verify(&old).is_ok());
    assert!(service.verify(&new).is_ok());

    // The first key retired at rotation; tokens it signed live at most
    // token_max_secs (+ leeway) after that. Just before, it is still kept.
    manual.advance(Duration::from_secs(7200 + LEEWAY_SECS));
    let done = service.keys().maintain().expect("maintain");
    assert!(done.purged.is_empty(), "{done:?}");
    manual.advance(Duration::from_secs(1));
    let done = service.keys().maintain().expect("maintain");
    assert_eq!(done.purged, vec![first_kid]);
    assert_eq!(service.verify(&old), Err(TokenError::UnknownKey));
    drop((service, ring));

    // The purge is durable too.
    let (service, _) = open(&clock);
    assert_eq!(service.verify(&old), Err(TokenError::UnknownKey));
    assert!(service.keys().verifying_key(&second_kid).is_some());
}

/// A key source of fixed keys, as another process's keys would look: the
/// service must sign with whatever it hands out and verify only what it
/// still knows.
struct FixedKeys {
    signer: Arc<SigningKey>,
    known: Vec<Arc<SigningKey>>,
}

impl SigningKeySource for FixedKeys {
    fn signing_key(&self) -> Option<Arc<SigningKey>> {
        Some(self.signer.clone())
    }

    fn verifying_key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.known.iter().find(|k| k.kid == kid).cloned()
    }

    fn maintain(&self) -> Result<KeyMaintenance, crate::store::StoreError> {
        Ok(KeyMaintenance::default())
    }
}

#[test]
fn the_service_signs_and_verifies_only_through_its_key_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let clock: SharedClock = Arc::new(ManualClock::new(1_800_000_000_000));
    let old = Arc::new(SigningKey::new("old".into(), 0, &[1; 32]));
    let new = Arc::new(SigningKey::new("new".into(), 1, &[2; 32]));
    let service = |signer: &Arc<SigningKey>, known: &[&Arc<SigningKey>]| {
        let keys = FixedKeys {
            signer: signer.clone(),
            known: known.iter().map(|k| Arc::clone(k)).collect(),
        };
        let revocations = Revocations::load(store.clone()).expect("revocations");
        TokenService::new(Arc::new(keys), revocations, clock.clone(), 7200)
    };
    let signing_old = service(&old, &[&old]);
    let token = signing_old
        .issue("fred.demo", 72, Role::Agent, 600)
        .expect("issue")
        .token;
    assert_eq!(
        jsonwebtoken::decode_header(&token).expect("header").kid,
        Some("old".into())
    );
    assert!(signing_old.verify(&token).is_ok());
    assert!(
        service(&new, &[&old, &new]).verify(&token).is_ok(),
        "a retired key still verifies while the source keeps it"
    );
    assert_eq!(
        service(&new, &[&new]).verify(&token),
        Err(TokenError::UnknownKey),
        "a key the source dropped verifies nothing"
    );
}

#[test]
fn a_token_verified_before_is_still_checked_in_full_each_time() {
    let f = fixture();
    let issued = f
        .service
        .issue("fred.demo", 72, Role::Agent, 600)
        .expect("issue");
    assert!(f.service.verify(&issued.token).is_ok());
    assert!(f.service.verify(&issued.token).is_ok(), "a hit");
    // Only the exact text hits: any change is verified afresh and fails.
    let (rest, sig) = issued.token.rsplit_once('.').expect("three parts");
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{rest}.{flipped}{}", &sig[1..]);
    assert_eq!(f.service.verify(&tampered), Err(TokenError::BadSignature));
    assert_eq!(
        f.service.verify(&format!("{}x", issued.token)),
        Err(TokenError::BadSignature)
    );
    // Revocation is seen at once, on a token verified moments before.
    f.service
        .revocations()
        .revoke(&issued.claims.jti, issued.claims.exp)
        .expect("revoke");
    assert_eq!(f.service.verify(&issued.token), Err(TokenError::Revoked));
    assert_eq!(f.service.verify(&issued.token), Err(TokenError::Revoked));
}

#[test]
fn rotate_now_switches_the_signer_at_once_durably_and_keeps_the_old_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: SharedClock = Arc::new(ManualClock::new(1_800_000_000_000));
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let (service, ring) = single_node(store.clone(), clock.clone());
    let old = service
        .issue("fred.demo", 72, Role::Agent, 3600)
        .expect("issue")
        .token;
    let old_kid = ring.current().kid.clone();
    let new_kid = ring.rotate_now().expect("rotate");
    assert_ne!(new_kid, old_kid, "not due, rotated anyway");
    assert_eq!(ring.current().kid, new_kid);
    assert!(service.verify(&old).is_ok(), "the old key still verifies");
    let maintained = ring.maintain().expect("maintain");
    assert_eq!(
        maintained,
        KeyMaintenance::default(),
        "a fresh key is not due"
    );
    drop((service, ring));
    store.close().expect("close");
    let store = Arc::new(Store::open(dir.path()).expect("reopen"));
    let (service, ring) = single_node(store, clock);
    assert_eq!(ring.current().kid, new_kid, "durable before it signs");
    assert!(service.verify(&old).is_ok());
}
