//! HTTPS to the IMS, as the binary's parts need it: an instance reaching its IMS (discovery,
//! keys, tokens, profiles) and the IMS delivering back-channel logout tokens to clients.

use anyhow::Result;

use ims_campaign::connect::ImsHttp;

/// HTTPS to the IMS, trusting the deployment's CA when one is given.
pub struct HttpIms {
    http: reqwest::Client,
}

impl HttpIms {
    pub fn new(ca_pem: Option<&[u8]>) -> Result<Self> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            // The instance follows no redirect: every endpoint answers where it is.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = ca_pem {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        Ok(HttpIms {
            http: builder.build()?,
        })
    }
}

/// Sends `req`; the status and the body as JSON (`Null` when it is not).
async fn answer(url: &str, req: reqwest::RequestBuilder) -> Result<(u16, serde_json::Value), String> {
    // The error names the address only: a request error may quote the request.
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{url}: {}", e.without_url()))?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(serde_json::Value::Null)))
}

#[async_trait::async_trait]
impl ImsHttp for HttpIms {
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, serde_json::Value), String> {
        let mut req = self.http.get(url);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        answer(url, req).await
    }

    async fn get_basic(
        &self,
        url: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<(u16, serde_json::Value), String> {
        let req = self
            .http
            .get(url)
            .basic_auth(form_encode(client_id), Some(form_encode(secret)));
        answer(url, req).await
    }

    async fn post_form(
        &self,
        url: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> Result<(u16, serde_json::Value), String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if let Some((user, password)) = basic {
            req = req.basic_auth(form_encode(user), Some(form_encode(password)));
        }
        answer(url, req).await
    }
}

/// The IMS's side of back-channel logout: logout tokens POSTed to clients over HTTPS.
#[async_trait::async_trait]
impl ims_identity::service::LogoutNotifier for HttpIms {
    async fn deliver(&self, uri: &str, logout_token: &str) -> Result<(), String> {
        let (status, body) = self
            .post_form(uri, None, &[("logout_token", logout_token)])
            .await?;
        if status == 200 || status == 204 {
            Ok(())
        } else {
            Err(format!(
                "{uri} answered {status} {}",
                body.get("error_description")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
            ))
        }
    }
}

/// RFC 6749 section 2.3.1: client id and secret are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
