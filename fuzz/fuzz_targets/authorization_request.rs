//! The authorization request's parameters (as a query string) against a registered client:
//! never a panic, and whatever is accepted names a registered redirect URI, asks for openid and
//! carries a well-formed S256 challenge.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ims_identity::model::{ClientType, OAuthClient};
use ims_identity::oidc::{redirect_uri_matches, validate, valid_challenge};

fuzz_target!(|data: &[u8]| {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    let Ok(mut client) = OAuthClient::new_people_client(
        "ORG@AdobeOrg",
        "fuzz",
        ClientType::Public,
        vec!["https://app.example/cb".into(), "http://127.0.0.1/cb".into()],
        vec!["openid".into(), "email".into()],
        "ims.test",
        ims_identity::Now::from_millis(0),
    ) else {
        return;
    };
    client.client_id = "c".into();
    if let Ok(req) = validate(&params, |id| (id == "c").then(|| client.clone())) {
        assert!(redirect_uri_matches(&client.redirect_uris, &req.redirect_uri));
        assert!(req.scope.iter().any(|s| s == "openid"));
        assert!(valid_challenge(&req.code_challenge));
    }
});
