//! An instance whose people sign in through the harness's IMS, both reaching each other in-process.

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use ims_campaign::connect::{HttpKeys, ImsAccount, ImsHttp, DEFAULT_SCOPES};
use ims_campaign::service::{Instance, InstanceInfo, InstanceKind};
use ims_campaign::signin::Connection;
use ims_core::audit::Context;
use ims_core::Now;
use ims_http::instance::soap::{router, InstanceState};
use ims_identity::model::ClientType;
use ims_identity::store::AuditQuery;
use ims_identity::store::{DirectoryStore as _, GrantStore as _};
use ims_identity::umapi::Change;
use ims_wire::association::AssociationMask;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt as _;

use super::*;

/// Where the test instance says it is.
const INSTANCE: &str = "https://127.0.0.1:1";

pub(crate) const CALLBACK: &str = "https://127.0.0.1:1/console/ims/callback";

/// The IMS as the instance reaches it: the harness's router, in-process.
pub(crate) struct InProcessIms(pub(crate) Router);

impl InProcessIms {
    async fn send(&self, req: Request<Body>) -> Result<(u16, Value), String> {
        let resp = self.0.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    fn path(url: &str) -> Result<String, String> {
        url.strip_prefix(ISSUER)
            .map(str::to_owned)
            .ok_or_else(|| format!("{url} is not the test IMS"))
    }
}

#[async_trait::async_trait]
impl ImsHttp for InProcessIms {
    async fn get(&self, url: &str, bearer: Option<&str>) -> Result<(u16, Value), String> {
        let mut b = Request::get(Self::path(url)?);
        if let Some(t) = bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn get_basic(&self, url: &str, id: &str, secret: &str) -> Result<(u16, Value), String> {
        let req = Request::get(Self::path(url)?)
            .header("authorization", basic(id, secret))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    async fn post_form(
        &self,
        url: &str,
        basic_auth: Option<(&str, &str)>,
        pairs: &[(&str, &str)],
    ) -> Result<(u16, Value), String> {
        let mut b =
            Request::post(Self::path(url)?).header("content-type", "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic_auth {
            b = b.header("authorization", basic(id, secret));
        }
        self.send(b.body(Body::from(encode(pairs))).unwrap()).await
    }
}

/// The instance as the IMS reaches it to tell of sign-outs: its router, in-process.
struct InProcessInstance(Router);

#[async_trait::async_trait]
impl service::LogoutNotifier for InProcessInstance {
    async fn deliver(&self, uri: &str, logout_token: &str) -> Result<(), String> {
        let path = uri.strip_prefix(INSTANCE).ok_or("not the test instance")?;
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(encode(&[("logout_token", logout_token)])))
            .unwrap();
        let resp = self.0.clone().oneshot(req).await.map_err(|e| e.to_string())?;
        match resp.status() {
            StatusCode::OK => Ok(()),
            other => Err(format!("{other}")),
        }
    }
}

pub(crate) struct Connected {
    pub(crate) app: Router,
    pub(crate) inst: Arc<Instance>,
    /// The store the instance was built over.
    pub(crate) store: Store,
    pub(crate) client_id: String,
    pub(crate) cleanup: Cleanup,
    pub(crate) _dir: tempfile::TempDir,
}

/// An instance named `prod` whose people sign in through the harness's IMS with the mask
/// `campaign - prod - (.*)`, and which accepts its bearer tokens; technical accounts' rights
/// are read again after `refresh_secs`.
pub(crate) async fn connected(
    h: &Harness,
    db: Db,
    kind: InstanceKind,
    refresh_secs: i64,
) -> Option<Connected> {
    connected_via(h, db, kind, refresh_secs, Arc::new(InProcessIms(h.app.clone()))).await
}

/// As [`connected`], the instance reaching the IMS through `http`.
pub(crate) async fn connected_via(
    h: &Harness,
    db: Db,
    kind: InstanceKind,
    refresh_secs: i64,
    http: Arc<dyn ImsHttp>,
) -> Option<Connected> {
    let (_, store, dir, cleanup) = instance_on(db, "7.4.1", kind).await?;
    let ctx = Context::new(Now::system(), "test");
    // The product instance the IMS knows this instance as (at its address).
    marketing(h, None).await;
    let (client, secret) = h
        .creds
        .create_people_client(
            &h.org_id,
            ims_identity::credentials::NewPeopleClient {
                name: "Campaign instance prod",
                client_type: ClientType::Confidential,
                redirect_uris: vec![CALLBACK.into()],
                scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
                first_party: true,
            },
            &ctx,
        )
        .await
        .unwrap();
    let mut info = InstanceInfo::new("prod", kind, "7.4.1".parse().unwrap());
    info.profile_refresh_secs = refresh_secs;
    let keys = HttpKeys {
        http: Arc::clone(&http),
        url: format!("{ISSUER}/ims/keys"),
    };
    let inst = Instance::new(Arc::clone(&store), info)
        .with_bearer(Arc::new(ims_campaign::bearer::TrustedIssuer::new(
            ISSUER,
            Arc::new(keys),
        )))
        .with_ims_http(Arc::clone(&http));
    let conn = Connection::new(
        account(&h.org_id, &client.client_id),
        client.client_id.clone(),
        secret.unwrap(),
        http,
    );
    assert!(
        inst.configuration()
            .set_connection(Some(conn), &ctx)
            .await
            .unwrap(),
        "a change"
    );
    let inst = Arc::new(inst);
    let app = router(InstanceState {
        instance: Arc::clone(&inst),
        tls: false,
    });
    // Sign-outs at the IMS reach the instance (back-channel logout).
    h.store
        .set_backchannel_logout_uri(
            &client.client_id,
            Some(&format!(
                "{INSTANCE}{}",
                ims_campaign::connect::BACKCHANNEL_LOGOUT_PATH
            )),
            &ctx.event("client.update", &client.client_id, "success", json!({})),
        )
        .await
        .unwrap();
    h.state
        .ims
        .sign_in()
        .set_logout_notifier(Arc::new(InProcessInstance(app.clone())));
    Some(Connected {
        app,
        inst,
        store,
        client_id: client.client_id,
        cleanup,
        _dir: dir,
    })
}

pub(crate) fn account(org_id: &str, client_id: &str) -> ImsAccount {
    ImsAccount {
        url: ISSUER.into(),
        org_id: org_id.into(),
        client_id: Some(client_id.into()),
        sealed_secret: Some("enc:kept by the test".into()),
        callback_url: CALLBACK.into(),
        mask: AssociationMask::parse("campaign - prod - (.*)").unwrap(),
        product_context: "dma_campaign_classic".into(),
        scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
    }
}

/// A connected instance (on SQLite) and jane, who holds its administrators' profile.
pub(crate) async fn with_an_administrator(h: &Harness) -> (Connected, ims_identity::model::User) {
    let c = connected(h, Db::Sqlite, InstanceKind::Marketing, 60)
        .await
        .unwrap();
    profile(h, "campaign - prod - Administrator", &["admin"]).await;
    let jane = h.person("jane@acme.test").await;
    membership(h, &jane.user_id, "campaign - prod - Administrator", true).await;
    (c, jane)
}

pub(crate) async fn profile(h: &Harness, name: &str, permissions: &[&str]) {
    let (instance, _) = marketing(h, None).await;
    service::directory::create_product_profile(
        h.store.as_ref(),
        &instance,
        name,
        permissions.iter().map(|p| p.to_string()).collect(),
        None,
        &Context::new(Now::system(), "test"),
    )
    .await
    .unwrap();
}

pub(crate) async fn membership(h: &Harness, user_id: &str, profile: &str, held: bool) {
    let change = if held {
        Change::AddMember {
            group: profile.into(),
            user_id: user_id.into(),
        }
    } else {
        Change::RemoveMember {
            group: profile.into(),
            user_id: user_id.into(),
        }
    };
    h.store.apply_changes(&h.org_id, &[change], &[]).await.unwrap();
}

/// A browser clicks "Connect with IMS", signs in at the IMS and comes back: the instance's
/// answer to the callback (status, headers, body).
pub(crate) async fn connect_with_ims(
    h: &Harness,
    c: &Connected,
    b: &mut Browser,
    email: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let (status, headers, _) = b.get(&c.app, "/console/ims/login").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let authorize = location(&headers);
    let q = query_of(&authorize);
    assert_eq!(
        (
            q["client_id"].as_str(),
            q["redirect_uri"].as_str(),
            q["code_challenge_method"].as_str()
        ),
        (c.client_id.as_str(), CALLBACK, "S256")
    );
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let back = at_the_ims(h, b, &authorize, email).await;
    assert!(back.starts_with(CALLBACK), "{back}");
    b.get(&c.app, back.strip_prefix(INSTANCE).unwrap()).await
}

/// The IMS's sign-in pages from `authorize` on; where the IMS sends the browser back.
pub(crate) async fn at_the_ims(h: &Harness, b: &mut Browser, authorize: &str, email: &str) -> String {
    let path = authorize.strip_prefix(ISSUER).unwrap();
    let (status, to) = sign_in_at(h, b, path, email, PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    to
}

pub(crate) async fn home(c: &Connected, b: &mut Browser) -> String {
    let (status, _, html) = b.get(&c.app, "/console/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    html
}

pub(crate) async fn audit(store: &Store, prefix: &str) -> Vec<ims_core::audit::AuditEvent> {
    AuditStore::audit(
        store.as_ref(),
        &AuditQuery {
            action_prefix: Some(prefix.into()),
            limit: 50,
        },
    )
    .await
    .unwrap()
}
