//! One-time links mailed to people: an invitation to set up a new account, a reset an
//! administrator asked for, and the recovery a person asked for on the sign-in page. Only the
//! link's digest is stored; the token itself exists in the mail alone. A link works once and
//! until it expires; setting a password through any of them ends the person's sessions.

use ims_core::secret::{self, Secret};
use ims_core::Now;

/// Why a link was made; it decides its lifetime, its token's prefix and its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPurpose {
    /// A new Enterprise ID sets its first password.
    Invitation,
    /// An administrator's reset link.
    Reset,
    /// "Forgot password?" on the sign-in page.
    Recovery,
}

impl LinkPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Invitation => "invitation",
            LinkPurpose::Reset => "reset",
            LinkPurpose::Recovery => "recovery",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [LinkPurpose::Invitation, LinkPurpose::Reset, LinkPurpose::Recovery]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// How long a link works: an invitation a week (people are away), an administrator's reset
    /// a day, a self-service recovery half an hour (whoever asked is at the keyboard now).
    pub const fn lifetime_secs(self) -> i64 {
        match self {
            LinkPurpose::Invitation => 7 * 86_400,
            LinkPurpose::Reset => 86_400,
            LinkPurpose::Recovery => 30 * 60,
        }
    }

    const fn prefix(self) -> &'static str {
        match self {
            LinkPurpose::Invitation => "imsinv_",
            LinkPurpose::Reset | LinkPurpose::Recovery => "imspr_",
        }
    }

    /// The path of the page the link opens, under the IMS's address.
    pub fn path(self, token: &str) -> String {
        match self {
            LinkPurpose::Invitation => format!("/ims/invitation/{token}"),
            LinkPurpose::Reset | LinkPurpose::Recovery => format!("/ims/reset/{token}"),
        }
    }
}

/// A stored link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountLink {
    /// SHA-256 of the token, hex.
    pub token_digest: String,
    pub user_id: String,
    pub purpose: LinkPurpose,
    pub created_at: Now,
    pub expires_at: Now,
    pub used_at: Option<Now>,
    /// Where the person goes once the password is set (a product instance's console), when
    /// known. Set by the IMS from what it stores, never from a request.
    pub return_to: Option<String>,
}

impl AccountLink {
    /// A new link for `user_id`, and the token that opens it (to be mailed, never stored).
    pub fn new(purpose: LinkPurpose, user_id: &str, now: Now, return_to: Option<String>) -> (Secret, Self) {
        let token = secret::generate(purpose.prefix());
        let link = AccountLink {
            token_digest: secret::digest_hex(token.expose()),
            user_id: user_id.to_owned(),
            purpose,
            created_at: now,
            expires_at: now.plus_secs(purpose.lifetime_secs()),
            used_at: None,
            return_to,
        };
        (token, link)
    }

    /// Where an invitation stands at `now`.
    pub fn invitation_state(&self, now: Now) -> InvitationState {
        match self.used_at {
            Some(_) => InvitationState::Accepted,
            None if self.expires_at <= now => InvitationState::Expired,
            None => InvitationState::Invited,
        }
    }
}

/// Where a person's latest invitation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationState {
    /// Sent, not used yet, still valid.
    Invited,
    /// Used: the person set a password.
    Accepted,
    /// Not used in time: resend it.
    Expired,
}

impl InvitationState {
    pub const fn as_str(self) -> &'static str {
        match self {
            InvitationState::Invited => "invited",
            InvitationState::Accepted => "accepted",
            InvitationState::Expired => "expired",
        }
    }
}

/// The answer to a link that is unknown, used or expired, per purpose: it says what to do next.
pub fn dead_link_message(purpose: Option<LinkPurpose>) -> &'static str {
    match purpose {
        Some(LinkPurpose::Invitation) => {
            "This invitation has expired or was already used. If you set your password, sign in from your application; otherwise ask your administrator to send the invitation again."
        }
        Some(LinkPurpose::Recovery) => {
            "This link has expired or was already used. Choose \"Forgot password?\" on the sign-in page to get a new one; it works for 30 minutes."
        }
        _ => {
            "This link has expired or was already used. Ask your administrator for a new one, or choose \"Forgot password?\" on the sign-in page."
        }
    }
}

/// Recovery requests per email within [`RECOVERY_WINDOW_SECS`]: beyond, nothing more is sent
/// for that email until the window has passed (the page answers the same).
pub const RECOVERY_PER_EMAIL: usize = 3;
/// Recovery requests per client address within the window.
pub const RECOVERY_PER_ADDRESS: usize = 20;
pub const RECOVERY_WINDOW_SECS: i64 = 3600;
/// The counters' scopes in the lock-out table (never an organisation id).
pub const RECOVERY_EMAIL_SCOPE: &str = "@recovery";
pub const RECOVERY_ADDRESS_SCOPE: &str = "@recovery-address";

/// The lock-out schedule that lets `free` requests through and then holds the rest of the
/// window.
pub fn recovery_schedule_ms(free: usize) -> Vec<i64> {
    let mut schedule = vec![0; free.saturating_sub(1)];
    schedule.push(RECOVERY_WINDOW_SECS * 1000);
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_stores_only_the_digest_of_its_token_and_expires_per_purpose() {
        let now = Now::from_millis(1_000);
        let (token, link) = AccountLink::new(LinkPurpose::Invitation, "U", now, None);
        assert!(token.expose().starts_with("imsinv_"));
        assert_eq!(link.token_digest, secret::digest_hex(token.expose()));
        assert!(!link.token_digest.contains(token.expose()));
        assert_eq!(link.expires_at, now.plus_secs(7 * 86_400));
        let (_, recovery) = AccountLink::new(LinkPurpose::Recovery, "U", now, None);
        assert_eq!(recovery.expires_at, now.plus_secs(1_800));
        for p in [LinkPurpose::Invitation, LinkPurpose::Reset, LinkPurpose::Recovery] {
            assert_eq!(LinkPurpose::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn invitation_states() {
        let now = Now::from_millis(1_000);
        let (_, mut link) = AccountLink::new(LinkPurpose::Invitation, "U", now, None);
        assert_eq!(link.invitation_state(now), InvitationState::Invited);
        assert_eq!(
            link.invitation_state(now.plus_secs(7 * 86_400)),
            InvitationState::Expired
        );
        link.used_at = Some(now.plus_secs(10));
        assert_eq!(
            link.invitation_state(now.plus_secs(30 * 86_400)),
            InvitationState::Accepted
        );
    }
}
