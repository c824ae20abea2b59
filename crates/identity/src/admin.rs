//! Who may administer: a [`SystemAdmin`] is obtained only by proving an administrator's password,
//! and the administration it unlocks is scoped to that administrator's organisation.

use std::sync::{Arc, OnceLock};

use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::model::User;
use crate::secret::Secret;
use crate::store::Store;

/// Proof that the caller signed in as a system administrator. No public constructor.
#[derive(Clone, Debug)]
pub struct SystemAdmin {
    user: User,
}

impl SystemAdmin {
    pub fn email(&self) -> &str {
        &self.user.email
    }

    pub fn org_id(&self) -> &str {
        &self.user.org_id
    }

    /// Actor name for the audit log.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.user.email)
    }

    /// Credential administration within the administrator's organisation.
    pub fn credentials(&self, store: Arc<dyn Store>, domain: &str) -> Credentials {
        Credentials::for_org(store, domain, &self.user.org_id)
    }
}

/// A hash to verify against when the account does not exist, so that unknown and known accounts
/// take the same time to refuse.
async fn decoy_hash() -> Result<&'static str> {
    static DECOY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DECOY.get() {
        return Ok(h);
    }
    let h = crate::password::hash(&crate::secret::generate("")).await?;
    Ok(DECOY.get_or_init(|| h))
}

/// Checks an administrator's email and password. Unknown account, wrong password and an account
/// without administrator rights all give the same error after the same work.
pub async fn authenticate(store: &dyn Store, email: &str, password: &Secret) -> Result<SystemAdmin> {
    let mut found = None;
    for org in store.orgs().await? {
        if let Some(u) = store.user_by_email(&org.org_id, email).await? {
            found = Some(u);
            break;
        }
    }
    let hash = match found.as_ref().and_then(|u| u.password_hash.clone()) {
        Some(h) => h,
        None => decoy_hash().await?.to_owned(),
    };
    let ok = crate::password::verify(password, &hash).await?;
    match found {
        Some(user) if ok && user.system_admin => Ok(SystemAdmin { user }),
        _ => Err(Error::InvalidClient { basic: true }),
    }
}
