//! Request parameters of the OAuth endpoints: from an `application/x-www-form-urlencoded` or
//! `multipart/form-data` body and from the query string (the vendor's clients use all three), and
//! client credentials from an HTTP Basic header. A parameter given twice, anywhere, is an error.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::HeaderMap;

use ims_core::secret::Secret;
use ims_core::Error;
use ims_identity::service::ClientAuth;

/// Most parameters we accept in one request.
pub const MAX_PARAMS: usize = 64;
/// Longest single parameter value.
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// Parameters in arrival order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    fn push(&mut self, name: String, value: String) -> Result<(), Error> {
        if self.0.len() >= MAX_PARAMS {
            return Err(Error::invalid_request("too many parameters"));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::invalid_request(format!(
                "parameter {} is too long",
                printable(&name)
            )));
        }
        self.0.push((name, value));
        Ok(())
    }

    /// The value of `name`, `None` when absent or empty; an error when it appears more than once.
    pub fn get(&self, name: &str) -> Result<Option<&str>, Error> {
        let mut found = self.0.iter().filter(|(n, _)| n == name);
        match (found.next(), found.next()) {
            (Some(_), Some(_)) => Err(Error::invalid_request(format!("parameter {name} is repeated"))),
            (Some((_, v)), None) if !v.is_empty() => Ok(Some(v.as_str())),
            _ => Ok(None),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Only printable ASCII of a caller-chosen name goes into messages.
fn printable(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).take(40).collect()
}

fn add_urlencoded(params: &mut Params, raw: &[u8]) -> Result<(), Error> {
    for (k, v) in url::form_urlencoded::parse(raw) {
        params.push(k.into_owned(), v.into_owned())?;
    }
    Ok(())
}

/// Collects parameters from the query string and the body (by its content type).
pub async fn collect(headers: &HeaderMap, query: Option<&str>, body: bytes::Bytes) -> Result<Params, Error> {
    let mut params = Params::default();
    if let Some(q) = query {
        // RFC 6749 section 2.3.1: a client secret never travels in the URL, which proxies,
        // access logs and histories keep. Refused before anything is read.
        if url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "client_secret") {
            return Err(Error::invalid_request(
                "client_secret must be sent in the request body or with HTTP Basic, never in the URL",
            ));
        }
        add_urlencoded(&mut params, q.as_bytes())?;
    }
    if body.is_empty() {
        return Ok(params);
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => add_urlencoded(&mut params, &body)?,
        "multipart/form-data" => add_multipart(&mut params, content_type, body).await?,
        _ => {
            return Err(Error::invalid_request(
                "body must be application/x-www-form-urlencoded or multipart/form-data",
            ))
        }
    }
    Ok(params)
}

async fn add_multipart(params: &mut Params, content_type: &str, body: bytes::Bytes) -> Result<(), Error> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| Error::invalid_request("multipart body without a boundary"))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(MAX_VALUE_LEN as u64)
            .whole_stream(256 * 1024),
    );
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    loop {
        let field = form
            .next_field()
            .await
            .map_err(|_| Error::invalid_request("malformed multipart body"))?;
        let Some(field) = field else { break };
        let Some(name) = field.name().map(str::to_owned) else {
            return Err(Error::invalid_request("multipart part without a name"));
        };
        let value = field
            .text()
            .await
            .map_err(|_| Error::invalid_request("malformed multipart body"))?;
        params.push(name, value)?;
    }
    Ok(())
}

/// Client authentication from a Basic header and/or `client_id` / `client_secret` parameters.
/// Both methods at once is `invalid_request` (RFC 6749 section 2.3).
pub fn client_auth(headers: &HeaderMap, params: &Params) -> Result<ClientAuth, Error> {
    let form_id = params.get("client_id")?;
    let form_secret = params.get("client_secret")?;
    let basic = match headers.get(AUTHORIZATION) {
        Some(value) => basic_credentials(value.as_bytes())?,
        None => None,
    };
    match (basic, form_id, form_secret) {
        (Some(_), _, Some(_)) => Err(Error::invalid_request(
            "use one client authentication method, not two",
        )),
        (Some((id, _)), Some(form_id), None) if form_id != id => Err(Error::invalid_request(
            "client_id differs from the authenticated client",
        )),
        (Some((client_id, secret)), _, None) => Ok(ClientAuth::Basic { client_id, secret }),
        (None, Some(id), Some(secret)) => Ok(ClientAuth::Post {
            client_id: id.to_owned(),
            secret: Secret::new(secret),
        }),
        (None, Some(id), None) => Ok(ClientAuth::None {
            client_id: id.to_owned(),
        }),
        (None, None, _) => Ok(ClientAuth::Missing),
    }
}

/// Parses `Basic base64(urlencode(id):urlencode(secret))`. `Ok(None)` when the header uses
/// another scheme; malformed Basic credentials are a client authentication failure.
pub fn basic_credentials(header: &[u8]) -> Result<Option<(String, Secret)>, Error> {
    let text = std::str::from_utf8(header).map_err(|_| Error::invalid_client(true))?;
    let (scheme, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .map_err(|_| Error::invalid_client(true))?;
    let decoded = String::from_utf8(decoded).map_err(|_| Error::invalid_client(true))?;
    let (id, secret) = decoded.split_once(':').ok_or(Error::invalid_client(true))?;
    // RFC 6749 section 2.3.1: both parts are form-urlencoded before being joined.
    let unescape = |s: &str| -> Result<String, Error> {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| Error::invalid_client(true))
    };
    let id = unescape(id)?;
    if id.is_empty() {
        return Err(Error::invalid_client(true));
    }
    Ok(Some((id, Secret::new(unescape(secret)?))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn urlencoded_and_query_merge() {
        let p = run(collect(
            &headers("application/x-www-form-urlencoded"),
            Some("a=1"),
            "b=2&c=x%20y".into(),
        ))
        .unwrap();
        assert_eq!(p.get("a").unwrap(), Some("1"));
        assert_eq!(p.get("c").unwrap(), Some("x y"));
        assert_eq!(p.get("zz").unwrap(), None);
    }

    #[test]
    fn repeated_parameter_is_invalid_request() {
        let p = run(collect(
            &headers("application/x-www-form-urlencoded"),
            Some("scope=a"),
            "scope=b".into(),
        ))
        .unwrap();
        assert_eq!(
            p.get("scope").map_err(|e| e.kind()),
            Err(ims_core::ErrorKind::InvalidRequest)
        );
    }

    #[test]
    fn multipart_fields() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--XyZ\r\nContent-Disposition: form-data; name=\"scope\"\r\n\r\nopenid,AdobeID\r\n--XyZ--\r\n";
        let p = run(collect(
            &headers("multipart/form-data; boundary=XyZ"),
            None,
            body.into(),
        ))
        .unwrap();
        assert_eq!(p.get("grant_type").unwrap(), Some("client_credentials"));
        assert_eq!(p.get("scope").unwrap(), Some("openid,AdobeID"));
    }

    #[test]
    fn other_content_types_are_refused() {
        assert!(run(collect(&headers("application/json"), None, "{}".into())).is_err());
        assert!(run(collect(&headers("multipart/form-data"), None, "x".into())).is_err());
    }

    #[test]
    fn basic_header() {
        let v = format!("basic {}", STANDARD.encode("my%20id:s%3Acr%2Bt+x"));
        let (id, secret) = basic_credentials(v.as_bytes()).unwrap().unwrap();
        assert_eq!(id, "my id");
        assert_eq!(secret.expose(), "s:cr+t x");
        assert!(basic_credentials(b"Bearer abc").unwrap().is_none());
        assert!(basic_credentials(b"Basic !!!").is_err());
        assert!(basic_credentials(format!("Basic {}", STANDARD.encode("nocolon")).as_bytes()).is_err());
    }

    #[test]
    fn two_methods_at_once() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {}", STANDARD.encode("c:s"))).unwrap(),
        );
        let mut p = Params::default();
        p.push("client_secret".into(), "s".into()).unwrap();
        assert_eq!(
            client_auth(&h, &p).map_err(|e| e.kind()),
            Err(ims_core::ErrorKind::InvalidRequest)
        );
        let mut p = Params::default();
        p.push("client_id".into(), "c".into()).unwrap();
        assert!(matches!(client_auth(&h, &p), Ok(ClientAuth::Basic { .. })));
        assert_eq!(
            client_auth(&HeaderMap::new(), &Params::default()).unwrap(),
            ClientAuth::Missing
        );
    }

    proptest! {
        #[test]
        fn urlencoded_round_trip(pairs in proptest::collection::vec(("[a-z_]{1,12}", ".{0,40}"), 0..10)) {
            let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
            let p = run(collect(&headers("application/x-www-form-urlencoded"), None, body.into())).unwrap();
            prop_assert_eq!(p.len(), pairs.len());
        }

        #[test]
        fn any_body_is_handled(body in proptest::collection::vec(any::<u8>(), 0..400), multipart in any::<bool>()) {
            let ct = if multipart { "multipart/form-data; boundary=b" } else { "application/x-www-form-urlencoded" };
            let _ = run(collect(&headers(ct), None, body.into()));
        }

        #[test]
        fn any_authorization_header_is_handled(h in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = basic_credentials(&h);
        }

        #[test]
        fn basic_round_trip(id in "[ -~]{1,30}", secret in "[ -~]{0,30}") {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let v = format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(&id), enc(&secret))));
            let (got_id, got_secret) = basic_credentials(v.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(got_id, id);
            prop_assert_eq!(got_secret.expose(), secret.as_str());
        }
    }
}
