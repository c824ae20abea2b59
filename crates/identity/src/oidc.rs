//! The authorization request of OpenID Connect's code flow, as this IMS accepts it: code flow
//! only, PKCE with S256 for every client, redirect URIs compared exactly (a loopback redirect's
//! port aside, RFC 8252), and the rules for what a client may register.

use serde::{Deserialize, Serialize};

use crate::model::{ClientType, OAuthClient};
use ims_core::error::{Error, Result};
use ims_core::net::is_loopback_host;
use ims_core::secret::pkce_challenge;

/// Longest redirect URI, state, nonce or login hint we keep.
pub const MAX_PARAM: usize = 2048;

/// `prompt` values we act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Never show a page: answer at once, with `login_required` when nobody is signed in.
    None,
    /// Ask for the credentials even when a session exists.
    Login,
}

/// A validated authorization request, kept while the person signs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Option<Prompt>,
    /// Seconds; a session older than this signs in again, and `auth_time` goes in the ID token.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

/// Why an authorization request fails, and so how the answer is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or its redirect URI cannot be trusted: an error page, never a redirect
    /// (RFC 6749 section 4.1.2.1).
    Page(String),
    /// Anything else goes back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

/// What a client may register: an absolute URI without fragment or user information; https, or
/// http on a loopback address (native and development clients), or a private-use scheme with a
/// dot in it (`com.example.app:/callback`, RFC 8252 section 7.1).
pub fn check_redirect_uri_registration(uri: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid_request(format!("redirect URI {uri:?}: {why}")));
    if uri.len() > MAX_PARAM {
        return bad("too long");
    }
    let Ok(parsed) = url::Url::parse(uri) else {
        return bad("not an absolute URI");
    };
    if parsed.fragment().is_some() {
        return bad("a redirect URI has no fragment");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("a redirect URI has no user information");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if parsed.host().as_ref().is_some_and(is_loopback_host) => Ok(()),
        "http" => bad("http is allowed on loopback addresses only; use https"),
        scheme if scheme.contains('.') => Ok(()),
        _ => bad("use https, http on a loopback address, or a reverse-domain private scheme"),
    }
}

/// Whether `presented` is one of the client's redirect URIs: the same string, or, for an http
/// loopback registration, the same URI on another port (native apps bind a free port).
pub fn redirect_uri_matches(registered: &[String], presented: &str) -> bool {
    if registered.iter().any(|r| r == presented) {
        return true;
    }
    let Ok(p) = url::Url::parse(presented) else {
        return false;
    };
    if p.scheme() != "http" || !p.host().as_ref().is_some_and(is_loopback_host) {
        return false;
    }
    registered.iter().any(|r| {
        let Ok(mut r) = url::Url::parse(r) else {
            return false;
        };
        if r.scheme() != "http" || !r.host().as_ref().is_some_and(is_loopback_host) {
            return false;
        }
        // Only the port may differ; the host must be spelled the same way.
        if r.set_port(p.port()).is_err() {
            return false;
        }
        r.as_str() == p.as_str() && presented_is_canonical(presented, &p)
    })
}

/// The parser normalises (case of scheme and host, dot segments, default ports); a presented URI
/// must already be in that form, so that "exact" stays exact apart from the port.
fn presented_is_canonical(raw: &str, parsed: &url::Url) -> bool {
    parsed.as_str() == raw
}

/// PKCE: a verifier is 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 section 4.1).
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An S256 challenge is the unpadded base64url of a SHA-256 digest: 43 characters.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Whether `verifier` answers `challenge` (S256), in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    valid_verifier(verifier) && ims_core::secret::equal_ct(&pkce_challenge(verifier), challenge)
}

/// The request's parameters, each at most once.
pub struct Params<'a>(pub &'a [(String, String)]);

impl Params<'_> {
    /// A parameter given twice is an error (RFC 6749 section 3.1); an empty one counts as absent.
    fn one(&self, name: &str) -> std::result::Result<Option<&str>, String> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(format!("{name} is repeated"));
        }
        Ok(first.filter(|v| !v.is_empty()))
    }
}

/// Validates an authorization request against its client. The order matters: until the client
/// and redirect URI are known good, errors are pages; after, they are redirects.
pub fn validate(
    params: &[(String, String)],
    client: impl FnOnce(&str) -> Option<OAuthClient>,
) -> std::result::Result<AuthorizationRequest, AuthorizeError> {
    let p = Params(params);
    let page = AuthorizeError::Page;
    let client_id = p
        .one("client_id")
        .map_err(page)?
        .ok_or_else(|| AuthorizeError::Page("the request names no client_id".into()))?;
    let client = client(client_id)
        .filter(|c| !c.disabled && c.client_type != ClientType::TechnicalAccount)
        .ok_or_else(|| AuthorizeError::Page("unknown client".into()))?;
    let redirect_uri = match p.one("redirect_uri").map_err(page)? {
        Some(uri) if uri.len() <= MAX_PARAM && redirect_uri_matches(&client.redirect_uris, uri) => {
            uri.to_owned()
        }
        Some(_) => {
            return Err(AuthorizeError::Page(
                "the redirect_uri is not registered for this client".into(),
            ))
        }
        // OpenID Connect makes it required.
        None => return Err(AuthorizeError::Page("the request names no redirect_uri".into())),
    };
    // From here on, the state (if readable) goes back with every error.
    let state = p.one("state").ok().flatten().map(str::to_owned);
    let fail = |error: &'static str, description: String| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description,
        state: state.clone(),
    };
    let get = |name: &str| p.one(name).map_err(|e| fail("invalid_request", e));
    if state.as_ref().is_some_and(|s| s.len() > MAX_PARAM) {
        return Err(fail("invalid_request", "state is too long".into()));
    }
    match get("response_type")? {
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only the code flow (response_type=code) is supported".into(),
            ))
        }
        None => return Err(fail("invalid_request", "response_type is required".into())),
    }
    if get("response_mode")?.is_some_and(|m| m != "query") {
        return Err(fail(
            "invalid_request",
            "only response_mode=query is supported".into(),
        ));
    }
    if get("request")?.is_some() || get("request_uri")?.is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported".into(),
        ));
    }
    let scope: Vec<String> = get("scope")?
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scope.iter().any(|s| s == "openid") {
        return Err(fail("invalid_scope", "the openid scope is required".into()));
    }
    if let Some(s) = scope.iter().find(|s| !client.scopes.contains(s)) {
        return Err(fail(
            "invalid_scope",
            format!("scope {s:?} is not allowed for this client"),
        ));
    }
    let challenge = get("code_challenge")?
        .ok_or_else(|| fail("invalid_request", "PKCE is required: send code_challenge".into()))?;
    match get("code_challenge_method")? {
        Some("S256") => {}
        _ => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256".into(),
            ))
        }
    }
    if !valid_challenge(challenge) {
        return Err(fail(
            "invalid_request",
            "code_challenge must be 43 base64url characters".into(),
        ));
    }
    let prompt = match get("prompt")? {
        None => None,
        Some(v) => {
            let values: Vec<&str> = v.split(' ').filter(|s| !s.is_empty()).collect();
            if values.contains(&"none") && values.len() > 1 {
                return Err(fail("invalid_request", "prompt=none stands alone".into()));
            }
            if values.contains(&"none") {
                Some(Prompt::None)
            } else if values.contains(&"login") {
                Some(Prompt::Login)
            } else {
                None
            }
        }
    };
    let max_age = match get("max_age")? {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| fail("invalid_request", "max_age is a number of seconds".into()))?,
        ),
    };
    let bounded = |name: &str| -> std::result::Result<Option<String>, AuthorizeError> {
        match get(name)? {
            Some(v) if v.len() > MAX_PARAM => Err(fail("invalid_request", format!("{name} is too long"))),
            v => Ok(v.map(str::to_owned)),
        }
    };
    Ok(AuthorizationRequest {
        client_id: client.client_id,
        redirect_uri: redirect_uri.clone(),
        scope,
        state: state.clone(),
        nonce: bounded("nonce")?,
        code_challenge: challenge.to_owned(),
        prompt,
        max_age,
        login_hint: bounded("login_hint")?,
    })
}

/// The redirect that answers an authorization request: `code` (or `error`), `state`, and `iss`
/// (RFC 9207) appended to the redirect URI's query.
pub fn response_uri(
    redirect_uri: &str,
    issuer: &str,
    fields: &[(&str, &str)],
    state: Option<&str>,
) -> String {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => return redirect_uri.to_owned(),
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in fields {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client(uris: &[&str]) -> OAuthClient {
        OAuthClient::new_people_client(
            "ORG@AdobeOrg",
            "app",
            ClientType::Public,
            uris.iter().map(|u| u.to_string()).collect(),
            vec!["openid".into(), "email".into(), "profile".into()],
            "ims.test",
            ims_core::Now::from_millis(0),
        )
        .unwrap()
    }

    #[test]
    fn redirect_uris_match_exactly_but_for_a_loopback_port() {
        let reg = vec![
            "https://app.example.com/cb".to_owned(),
            "http://127.0.0.1/cb".to_owned(),
            "http://localhost:8080/cb?x=1".to_owned(),
        ];
        assert!(redirect_uri_matches(&reg, "https://app.example.com/cb"));
        for bad in [
            "https://app.example.com/cb/",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#f",
            "https://APP.example.com/cb",
            "https://app.example.com:444/cb",
            "https://user@app.example.com/cb",
            "https://app.example.com/CB",
            "https://app.example.com/cb/../cb",
            "http://app.example.com/cb",
            "https://app.example.com.evil.com/cb",
        ] {
            assert!(!redirect_uri_matches(&reg, bad), "{bad}");
        }
        assert!(redirect_uri_matches(&reg, "http://127.0.0.1:53682/cb"));
        assert!(redirect_uri_matches(&reg, "http://127.0.0.1/cb"));
        assert!(redirect_uri_matches(&reg, "http://localhost:9999/cb?x=1"));
        for bad in [
            "http://127.0.0.1:53682/cb/",
            "http://127.0.0.1:53682/other",
            "http://localhost:53682/cb",
            "http://127.0.0.2:53682/cb",
            "http://127.0.0.1:53682/cb?y=2",
            "https://127.0.0.1:53682/cb",
        ] {
            assert!(!redirect_uri_matches(&reg, bad), "{bad}");
        }
    }

    #[test]
    fn registrations_need_https_loopback_http_or_a_private_scheme() {
        for good in [
            "https://a.example/cb",
            "http://127.0.0.1/cb",
            "http://[::1]:8080/x",
            "com.example.app:/cb",
        ] {
            assert!(check_redirect_uri_registration(good).is_ok(), "{good}");
        }
        for bad in [
            "http://a.example/cb",
            "https://a.example/cb#x",
            "https://u:p@a.example/",
            "/relative",
            "javascript:alert(1)",
            "app:/cb",
        ] {
            assert!(check_redirect_uri_registration(bad).is_err(), "{bad}");
        }
    }

    fn params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![
            ("client_id".to_owned(), String::new()),
            ("redirect_uri".to_owned(), "https://app.example/cb".to_owned()),
            ("response_type".to_owned(), "code".to_owned()),
            ("scope".to_owned(), "openid email".to_owned()),
            ("state".to_owned(), "st".to_owned()),
            (
                "code_challenge".to_owned(),
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
            ),
            ("code_challenge_method".to_owned(), "S256".to_owned()),
        ];
        for (k, v) in extra {
            p.retain(|(n, _)| n != k);
            if !v.is_empty() {
                p.push((k.to_string(), v.to_string()));
            }
        }
        p
    }

    #[test]
    fn requests_fail_as_pages_until_the_redirect_is_trusted_then_as_redirects() {
        let c = client(&["https://app.example/cb"]);
        let id = c.client_id.clone();
        let lookup = |want: &str| (want == id).then(|| c.clone());
        let with = |extra: &[(&str, &str)]| {
            let mut all = vec![("client_id", id.as_str())];
            all.extend_from_slice(extra);
            validate(&params(&all), lookup)
        };
        let ok = with(&[]).unwrap();
        assert_eq!(ok.scope, vec!["openid", "email"]);
        assert_eq!(ok.state.as_deref(), Some("st"));
        assert!(matches!(
            validate(&params(&[("client_id", "nope")]), lookup),
            Err(AuthorizeError::Page(_))
        ));
        assert!(matches!(
            with(&[("redirect_uri", "https://evil.example/cb")]),
            Err(AuthorizeError::Page(_))
        ));
        let mut twice = params(&[("client_id", id.as_str())]);
        twice.push(("redirect_uri".into(), "https://app.example/cb".into()));
        assert!(matches!(validate(&twice, lookup), Err(AuthorizeError::Page(_))));
        for (extra, code) in [
            (vec![("response_type", "token")], "unsupported_response_type"),
            (
                vec![("response_type", "code id_token")],
                "unsupported_response_type",
            ),
            (vec![("response_type", "")], "invalid_request"),
            (vec![("code_challenge", "")], "invalid_request"),
            (vec![("code_challenge_method", "plain")], "invalid_request"),
            (vec![("code_challenge_method", "")], "invalid_request"),
            (vec![("code_challenge", "short")], "invalid_request"),
            (vec![("scope", "email")], "invalid_scope"),
            (vec![("scope", "openid admin")], "invalid_scope"),
            (vec![("prompt", "none login")], "invalid_request"),
            (vec![("max_age", "-1")], "invalid_request"),
            (vec![("request", "eyJ...")], "request_not_supported"),
        ] {
            match with(&extra) {
                Err(AuthorizeError::Redirect { error, state, .. }) => {
                    assert_eq!(error, code, "{extra:?}");
                    assert_eq!(state.as_deref(), Some("st"), "state comes back with errors");
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        let mut repeated = params(&[("client_id", id.as_str())]);
        repeated.push(("scope".into(), "openid".into()));
        assert!(matches!(
            validate(&repeated, lookup),
            Err(AuthorizeError::Redirect {
                error: "invalid_request",
                ..
            })
        ));
        // Unknown parameters are ignored.
        assert!(with(&[("ui_locales", "fr"), ("whatever", "x")]).is_ok());
    }

    #[test]
    fn pkce_s256() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}!", "a".repeat(43))));
    }

    #[test]
    fn the_response_carries_code_state_and_iss() {
        let uri = response_uri(
            "https://app.example/cb?x=1",
            "https://ims.test",
            &[("code", "c d")],
            Some("s&t"),
        );
        assert_eq!(
            uri,
            "https://app.example/cb?x=1&code=c+d&state=s%26t&iss=https%3A%2F%2Fims.test"
        );
    }

    proptest! {
        #[test]
        fn only_the_registered_string_or_a_loopback_port_change_matches(path in "[a-z/]{0,12}", port in 1024u16..65535, noise in "[a-zA-Z0-9/?#:@.%-]{1,6}") {
            let https = format!("https://app.example/{path}");
            let loopback = format!("http://127.0.0.1/{path}");
            let reg = vec![https.clone(), loopback];
            prop_assert!(redirect_uri_matches(&reg, &https));
            let moved = format!("http://127.0.0.1:{port}/{path}");
            prop_assert!(redirect_uri_matches(&reg, &moved));
            let changed = format!("{https}{noise}");
            prop_assert!(!redirect_uri_matches(&reg, &changed));
            let https_port = format!("https://app.example:{port}/{path}");
            prop_assert!(!redirect_uri_matches(&reg, &https_port));
        }

        #[test]
        fn validation_never_panics(pairs in proptest::collection::vec(("[a-z_]{1,14}", ".{0,40}"), 0..12)) {
            let params: Vec<(String, String)> = pairs;
            let c = client(&["https://app.example/cb"]);
            let _ = validate(&params, |_| Some(c.clone()));
        }
    }
}
