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
    // The request this call is made for, followed into the other service's access log.
    let req = match ims_core::audit::serving_request() {
        Some(id) => req.header("x-request-id", id),
        None => req,
    };
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A call made while a request is served carries that request's id; one made outside any
    /// request carries none.
    #[tokio::test]
    async fn calls_made_while_serving_a_request_carry_its_id() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = tokio::spawn(async move {
            let mut heads = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap();
                heads.push(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await
                    .unwrap();
            }
            heads
        });
        let http = HttpIms::new(None).unwrap();
        let url = format!("http://{addr}/ims/keys");
        let served = ims_core::audit::serving("req-42".into(), http.get(&url, None)).await;
        assert_eq!(served.unwrap().0, 200);
        assert_eq!(http.get(&url, None).await.unwrap().0, 200);
        let heads = heads.await.unwrap();
        assert!(heads[0].contains("\r\nx-request-id: req-42\r\n"), "{}", heads[0]);
        assert!(!heads[1].contains("x-request-id"), "{}", heads[1]);
    }
}
