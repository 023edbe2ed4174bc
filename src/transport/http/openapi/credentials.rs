//! The `credentials` of `POST /auth/token`, as the document shows them. The
//! handler reads the object by hand (`Credentials::parse`) so that each
//! malformed form gets its own error code; these types only describe the
//! forms it accepts, and a test parses each one's example with it.

#![allow(dead_code)]

use serde::Deserialize;
use utoipa::ToSchema;

/// One of the credential forms. (`{}` with the `gssnid` cookie also works,
/// for a console that cannot read its cookie.)
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CredentialForms {
    Password(PasswordForm),
    PartnerLoginKey(PartnerLoginKeyForm),
    UsernameLoginKey(UsernameLoginKeyForm),
    Session(SessionForm),
    Sso(SsoForm),
}

/// A configured agent's password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "fred.demo", "password": "not-the-password"}))]
pub struct PasswordForm {
    #[schema(max_length = 256)]
    username: String,
    #[schema(max_length = 256)]
    password: String,
}

/// A partner login key (`$1$<exp>$<sig>`, HMAC with the group's `api_key`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"partnerid": 72, "partneruserid": "fred", "loginkey": "$1$1893456000$00"}))]
pub struct PartnerLoginKeyForm {
    partnerid: u64,
    #[schema(max_length = 256)]
    partneruserid: String,
    #[schema(max_length = 256)]
    loginkey: String,
}

/// A login key for a username.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"username": "fred.demo", "loginkey": "$1$1893456000$00"}))]
pub struct UsernameLoginKeyForm {
    #[schema(max_length = 256)]
    username: String,
    #[schema(max_length = 256)]
    loginkey: String,
}

/// A website session (`POST /auth/login`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"gssnid": "0123456789abcdef"}))]
pub struct SessionForm {
    #[schema(max_length = 256)]
    gssnid: String,
}

/// A customer-signed SSO token (`groups.sso`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"jwt": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmcmVkIn0.c2ln"}))]
pub struct SsoForm {
    #[schema(
        max_length = 16384,
        pattern = r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*$"
    )]
    jwt: String,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::CredentialForms;
    use crate::auth::sign_in::{CredentialKind, Credentials};

    #[test]
    fn every_documented_form_is_one_the_handler_reads() {
        let schema = serde_json::to_value(CredentialForms::schema()).unwrap();
        let doc = serde_json::to_value(super::super::document()).unwrap();
        let forms = schema["oneOf"].as_array().expect("oneOf");
        assert_eq!(forms.len(), 5);
        let mut kinds = Vec::new();
        for form in forms {
            let name = form["$ref"].as_str().expect("a $ref");
            let name = name.rsplit('/').next().unwrap();
            let form = &doc["components"]["schemas"][name];
            let example = &form["example"];
            assert_eq!(form["additionalProperties"], false, "{form}");
            let parsed = Credentials::parse(example, None).expect("the example parses");
            kinds.push(parsed.kind());
        }
        assert_eq!(
            kinds,
            [
                CredentialKind::Password,
                CredentialKind::PartnerLoginKey,
                CredentialKind::UsernameLoginKey,
                CredentialKind::Session,
                CredentialKind::Sso,
            ]
        );
    }
}
