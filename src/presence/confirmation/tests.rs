//! Unit tests of the agent card a prompt shows.

use super::*;
use crate::infra::config::Config;
use crate::infra::config::GroupConfig;

fn group() -> GroupConfig {
    let config = Config::from_toml_str(
        r#"
[[groups]]
id = 72
name = "demo"
presence = true
[[groups.users]]
username = "fred.demo"
name = "Fred Agent"
[[groups.users]]
username = "nameless"
"#,
    )
    .expect("config");
    config.groups[0].clone()
}

fn card(name: &str, email: Option<&str>, phone: Option<&str>) -> Option<AgentCard> {
    Some(AgentCard {
        name: name.into(),
        email: email.map(str::to_owned),
        phone: phone.map(str::to_owned),
    })
}

#[test]
fn the_card_defaults_to_the_configured_name_then_the_username() {
    let g = group();
    assert_eq!(
        card_for(&g, "fred.demo", None, None).expect("card").name,
        "Fred Agent"
    );
    assert_eq!(
        card_for(&g, "nameless", None, None).expect("card").name,
        "nameless"
    );
    assert_eq!(
        card_for(&g, "sso@x.test", None, None).expect("card").name,
        "sso@x.test"
    );
    assert_eq!(
        card_for(&g, "fred.demo", Some("Fred (SSO)"), None)
            .expect("card")
            .name,
        "Fred (SSO)",
        "the token's name wins"
    );
}

#[test]
fn a_given_card_is_checked() {
    let g = group();
    let ok = card_for(
        &g,
        "fred.demo",
        None,
        card(" Fred ", Some("f@x.test"), Some("+1 (555) 010-2")),
    );
    assert_eq!(ok.expect("card").name, "Fred");
    for bad in [
        card("", None, None),
        card("   ", None, None),
        card(&"x".repeat(101), None, None),
        card("Fred\nAdmin", None, None),
        card("Fred", Some("not-an-email"), None),
        card("Fred", Some("a b@x.test"), None),
        card("Fred", Some("@x.test"), None),
        card("Fred", None, Some("call me")),
        card("Fred", None, Some("12")),
        card("Fred", None, Some("1+555")),
        card("Fred", None, Some(&"1".repeat(33))),
    ] {
        assert_eq!(
            card_for(&g, "fred.demo", None, bad.clone()).map_err(|e| e.code()),
            Err("bad_request"),
            "{bad:?}"
        );
    }
}
