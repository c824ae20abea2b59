//! Scope lists. The vendor's clients send them comma-separated (`openid,AdobeID`), standard clients
//! space-separated; both are accepted, mixed too. Output uses commas, as the vendor's tokens do.

use ims_core::error::{Error, Result};

/// Longest scope list accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 4096;

/// One scope token: RFC 6749 section 3.3 `scope-token` (printable ASCII except space, `"` and `\`),
/// and no comma since commas separate.
pub fn validate_token(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\' && b != b',');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_scope(format!("malformed scope {s:?}")))
    }
}

/// Parses a requested scope list; order kept, duplicates dropped.
pub fn parse(list: &str) -> Result<Vec<String>> {
    if list.len() > MAX_SCOPE_LEN {
        return Err(Error::invalid_scope("scope list too long"));
    }
    let mut out: Vec<String> = Vec::new();
    for tok in list.split([',', ' ']).filter(|t| !t.is_empty()) {
        validate_token(tok)?;
        if !out.iter().any(|s| s == tok) {
            out.push(tok.to_owned());
        }
    }
    Ok(out)
}

/// The scopes to grant: the request when it is a subset of what the client may have (all allowed
/// scopes when nothing was asked for), `invalid_scope` otherwise.
pub fn grant(requested: Option<&str>, allowed: &[String]) -> Result<Vec<String>> {
    let requested = match requested {
        Some(list) => parse(list)?,
        None => return Ok(allowed.to_vec()),
    };
    if requested.is_empty() {
        return Ok(allowed.to_vec());
    }
    if let Some(extra) = requested.iter().find(|s| !allowed.contains(s)) {
        return Err(Error::invalid_scope(format!(
            "scope {extra:?} is not allowed for this client"
        )));
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn commas_spaces_and_duplicates() {
        assert_eq!(
            parse("openid,AdobeID read_organizations,openid").unwrap(),
            v(&["openid", "AdobeID", "read_organizations"])
        );
        assert_eq!(parse(" , ").unwrap(), Vec::<String>::new());
        assert!(parse("a\"b").is_err());
    }

    #[test]
    fn grant_is_a_subset() {
        let allowed = v(&["openid", "AdobeID"]);
        assert_eq!(grant(None, &allowed).unwrap(), allowed);
        assert_eq!(grant(Some("AdobeID"), &allowed).unwrap(), v(&["AdobeID"]));
        assert_eq!(
            grant(Some("openid,admin"), &allowed).map_err(|e| e.kind()),
            Err(ims_core::ErrorKind::InvalidScope)
        );
    }

    proptest! {
        #[test]
        fn parse_is_total_and_output_is_valid(s in ".{0,200}") {
            if let Ok(scopes) = parse(&s) {
                for t in &scopes {
                    prop_assert!(validate_token(t).is_ok());
                    prop_assert!(s.contains(t.as_str()));
                }
            }
        }

        #[test]
        fn joined_list_parses_back(items in proptest::collection::vec("[!#-+\\--\\[\\]-~]{1,20}", 0..8)) {
            let joined = items.join(",");
            let parsed = parse(&joined).unwrap();
            let mut expected: Vec<String> = Vec::new();
            for i in items { if !expected.contains(&i) { expected.push(i); } }
            prop_assert_eq!(parsed, expected);
        }
    }
}
