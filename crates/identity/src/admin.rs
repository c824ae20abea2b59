//! Who may administer: a [`SystemAdmin`] is obtained only by proving an administrator's password
//! (`SignIn::authenticate_admin`, under the same lock-out as the sign-in pages), and the
//! administration it unlocks is scoped to that administrator's organisation.

use std::sync::Arc;

use crate::credentials::Credentials;
use crate::model::User;
use crate::store::CredentialStorage;

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
    pub fn credentials(&self, store: Arc<dyn CredentialStorage>, domain: &str) -> Credentials {
        Credentials::for_org(store, domain, &self.user.org_id)
    }
}

impl SystemAdmin {
    /// Only the administrator sign-in of the token service makes one, after the password, the
    /// lock-out and the account's status were checked.
    pub(crate) fn new(user: User) -> Self {
        SystemAdmin { user }
    }
}
