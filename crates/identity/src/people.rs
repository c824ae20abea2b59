//! People of an organisation: creating them, the password policy, and the changes that end their
//! sessions (disabling, a new password, an administrator's "end sessions").

use serde_json::json;
use std::collections::HashSet;
use std::sync::OnceLock;

use crate::links::{AccountLink, LinkPurpose};
use crate::mail::messages::Recipient;
use crate::model::{IdentityType, User, UserStatus};
use crate::store::UserStore;
use ims_core::audit::Context;
use ims_core::error::{Error, Result, StoreError};
use ims_core::secret::Secret;
use ims_core::Now;

/// The password policy (NIST SP 800-63B, OWASP ASVS): at least 8 characters (15 recommended),
/// long passphrases welcome, no composition rules, never truncated, and not one of the common
/// passwords we ship.
pub const MIN_PASSWORD: usize = 8;
pub const RECOMMENDED_PASSWORD: usize = 15;
/// Longer is refused only to bound the hashing work, far above anything typed.
pub const MAX_PASSWORD: usize = 1024;

fn common_passwords() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    })
}

/// Checks a new password; the error says what to change.
pub fn check_password(password: &Secret, email: &str) -> Result<()> {
    let p = password.expose();
    let n = p.chars().count();
    if n < MIN_PASSWORD {
        return Err(Error::invalid_request(format!(
            "a password has at least {MIN_PASSWORD} characters ({RECOMMENDED_PASSWORD} or more recommended)"
        )));
    }
    if n > MAX_PASSWORD {
        return Err(Error::invalid_request(format!(
            "a password has at most {MAX_PASSWORD} characters"
        )));
    }
    let lower = p.to_lowercase();
    if common_passwords().contains(lower.as_str()) {
        return Err(Error::invalid_request(
            "this password is among the most common ones; choose another",
        ));
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if lower == email.to_lowercase() || (local.len() >= 4 && lower == local) {
        return Err(Error::invalid_request("a password is not the email address"));
    }
    Ok(())
}

/// An email address as people type it: one `@`, text either side, a dot in the domain, no spaces.
pub fn check_email(email: &str) -> Result<()> {
    let ok = ims_wire::email::is_email(email);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_request(format!(
            "{email:?} is not an email address"
        )))
    }
}

/// A country as people type it: empty for none, else two letters (ISO 3166-1 alpha-2), kept in
/// upper case.
pub fn country_code(country: Option<&str>) -> Result<Option<String>> {
    match country.map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(Some(c.to_ascii_uppercase()))
        }
        Some(c) => Err(Error::invalid_request(format!(
            "country {c:?} is not a two-letter ISO 3166 code"
        ))),
        None => Ok(None),
    }
}

fn check_name(field: &str, value: &str) -> Result<()> {
    if value.chars().count() > 255 || value.chars().any(char::is_control) {
        return Err(Error::invalid_request(format!(
            "{field} has at most 255 characters and no control characters"
        )));
    }
    Ok(())
}

/// A person to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub country: Option<String>,
    pub identity_type: IdentityType,
    /// Federated identities have none: another provider signs them in.
    pub password: Option<Secret>,
}

/// Creates a person in `org_id`. The email is kept as entered and must be unused in the
/// organisation whatever its case.
pub async fn create_user(store: &dyn UserStore, org_id: &str, new: NewUser, ctx: &Context) -> Result<User> {
    let email = new.email.trim();
    check_email(email)?;
    check_name("first name", &new.first_name)?;
    check_name("last name", &new.last_name)?;
    let country = country_code(new.country.as_deref())?;
    let mut user = User::new(
        org_id,
        email,
        new.first_name.trim(),
        new.last_name.trim(),
        ctx.now,
    );
    user.identity_type = new.identity_type;
    user.country = country;
    match (&new.password, new.identity_type) {
        (Some(_), IdentityType::FederatedId) => {
            return Err(Error::invalid_request(
                "a federated identity signs in at its own identity provider and has no password here",
            ))
        }
        (Some(p), _) => {
            check_password(p, email)?;
            user.password_hash = Some(ims_core::password::hash(p).await?);
        }
        (None, _) => {}
    }
    if store.user_by_email(org_id, email).await?.is_some() {
        return Err(Error::conflict(format!("a user with email {email} exists")));
    }
    let event = ctx.event(
        "user.create",
        &user.user_id,
        "success",
        json!({"email": user.email, "identity_type": user.identity_type.as_str()}),
    );
    match store.create_user(&user, &event).await {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict(_)) => Err(Error::conflict(format!("a user with email {email} exists"))),
        Err(e) => Err(e.into()),
    }
}

/// What changes a person's standing.
#[derive(Clone, Debug)]
pub enum UserChange {
    SetStatus(UserStatus),
    SetPassword(Secret),
    /// Ends every browser session and refresh token, as of now.
    EndSessions,
}

/// Applies a change; disabling, locking, removing, a new password and "end sessions" end the
/// person's browser sessions and refresh tokens in the same transaction.
pub async fn change_user(
    store: &dyn UserStore,
    user_id: &str,
    change: UserChange,
    ctx: &Context,
) -> Result<User> {
    let mut user = store
        .user(user_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
    let (action, details, end) = match &change {
        UserChange::SetStatus(status) => {
            user.status = *status;
            (
                "user.status",
                json!({"status": status.as_str()}),
                *status != UserStatus::Active,
            )
        }
        UserChange::SetPassword(p) => {
            if user.identity_type == IdentityType::FederatedId {
                return Err(Error::invalid_request(
                    "a federated identity has no password here",
                ));
            }
            check_password(p, &user.email)?;
            user.password_hash = Some(ims_core::password::hash(p).await?);
            ("user.password", json!({}), true)
        }
        UserChange::EndSessions => ("user.end_sessions", json!({}), true),
    };
    user.updated_at = ctx.now;
    if end {
        user.sessions_valid_after = ctx.now;
    }
    let event = ctx.event(action, &user.user_id, "success", details);
    store.update_user(&user, end, &event).await?;
    Ok(user)
}

/// What a mailed link needs besides the person: where the IMS answers and whose it is.
#[derive(Clone, Copy, Debug)]
pub struct Mailed<'a> {
    pub base_url: &'a str,
    pub org_name: &'a str,
}

/// A one-time link that lets a person choose a new password: an administrator's reset or the
/// person's own recovery. Returns the token that goes in `/ims/reset/{token}`. With `mailed`,
/// the link is also mailed to the person, queued in the same transaction as the link; without
/// it the administrator hands the link over.
pub async fn password_link(
    store: &dyn UserStore,
    user: &User,
    purpose: LinkPurpose,
    mailed: Option<Mailed<'_>>,
    ctx: &Context,
) -> Result<Secret> {
    if user.identity_type == IdentityType::FederatedId {
        return Err(Error::invalid_request(
            "a federated identity has no password here",
        ));
    }
    let (token, link) = AccountLink::new(purpose, &user.user_id, ctx.now, None);
    let action = match purpose {
        LinkPurpose::Recovery => "user.recovery_link",
        LinkPurpose::Invitation => "user.invite",
        LinkPurpose::Reset => "user.password_reset_link",
    };
    let event = ctx.event(
        action,
        &user.user_id,
        "success",
        json!({"expires_in_secs": purpose.lifetime_secs(), "mailed": mailed.is_some()}),
    );
    let mail = mailed.map(|m| {
        let url = format!(
            "{}{}",
            m.base_url.trim_end_matches('/'),
            purpose.path(token.expose())
        );
        let to = Recipient {
            org_id: &user.org_id,
            org_name: m.org_name,
            email: &user.email,
            name: &user.first_name,
        };
        crate::mail::messages::password(&to, &url, purpose, ctx.now)
    });
    store.insert_account_link(&link, mail.as_ref(), &event).await?;
    Ok(token)
}

/// The person a link is for and the link, while it works; `purposes` are those the page that
/// opens it takes. A link that is unknown, used or expired is refused with what to do next.
pub async fn link_user(
    store: &dyn UserStore,
    token: &str,
    purposes: &[LinkPurpose],
    ctx: &Context,
) -> Result<(User, AccountLink)> {
    let dead = |p: Option<LinkPurpose>| Error::not_found(crate::links::dead_link_message(p));
    let link = store
        .account_link(&ims_core::secret::digest_hex(token))
        .await?
        .filter(|l| purposes.contains(&l.purpose))
        .ok_or_else(|| dead(purposes.first().copied()))?;
    if link.used_at.is_some() || link.expires_at <= ctx.now {
        return Err(dead(Some(link.purpose)));
    }
    let user = store
        .user(&link.user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active && u.identity_type != IdentityType::FederatedId)
        .ok_or_else(|| dead(Some(link.purpose)))?;
    Ok((user, link))
}

/// Sets a new password through a link. A password the policy refuses leaves the link usable; a
/// good one uses it up (with every other link of the person's) and ends every session, in one
/// transaction.
pub async fn set_password_by_link(
    store: &dyn UserStore,
    token: &str,
    purposes: &[LinkPurpose],
    password: Secret,
    ctx: &Context,
) -> Result<(User, AccountLink)> {
    let (mut user, link) = link_user(store, token, purposes, ctx).await?;
    check_password(&password, &user.email)?;
    user.password_hash = Some(ims_core::password::hash(&password).await?);
    user.updated_at = ctx.now;
    user.sessions_valid_after = ctx.now;
    let action = match link.purpose {
        LinkPurpose::Invitation => "user.invitation_accept",
        LinkPurpose::Reset | LinkPurpose::Recovery => "user.password",
    };
    let event = ctx.event(
        action,
        &user.user_id,
        "success",
        json!({"through": link.purpose.as_str()}),
    );
    if !store
        .use_account_link(&link.token_digest, &user, ctx.now, &event)
        .await?
    {
        return Err(Error::not_found(crate::links::dead_link_message(Some(
            link.purpose,
        ))));
    }
    Ok((user, link))
}

/// A one-time-code enrolment shown to the person and not stored yet: the secret and the
/// recovery codes, and the same sealed under the master key (bound to the person and dated) for
/// the form to bring back with the first code. Nothing is stored until that code matches.
#[derive(Debug)]
pub struct PendingEnrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub recovery_codes: Vec<Secret>,
    pub sealed: String,
}

/// How long an enrolment page may wait for its first code.
pub const ENROLMENT_SECS: i64 = 3600;

fn enrolment_label(user_id: &str) -> String {
    format!("totp-enrolment:{user_id}")
}

/// A new enrolment for `user`, to show.
pub fn start_enrolment(
    master: &ims_core::keys::MasterKey,
    user: &User,
    issuer_name: &str,
    now: Now,
) -> Result<PendingEnrolment> {
    let e = crate::totp::enrol();
    let codes: Vec<&str> = e.recovery_codes.iter().map(Secret::expose).collect();
    let mut plain = zeroize::Zeroizing::new(now.millis().to_be_bytes().to_vec());
    plain.extend_from_slice(&e.key);
    plain.extend_from_slice(codes.join(" ").as_bytes());
    Ok(PendingEnrolment {
        secret_base32: crate::totp::base32(&e.key),
        otpauth_uri: crate::totp::otpauth_uri(issuer_name, &user.email, &e.key),
        sealed: master.seal(&enrolment_label(&user.user_id), &plain)?,
        recovery_codes: e.recovery_codes,
    })
}

/// What a sealed pending enrolment holds: the key and the recovery codes, while it is this
/// person's and not older than [`ENROLMENT_SECS`].
fn open_enrolment(
    master: &ims_core::keys::MasterKey,
    user_id: &str,
    sealed: &str,
    now: Now,
) -> Result<(zeroize::Zeroizing<Vec<u8>>, Vec<String>)> {
    let stale =
        || Error::invalid_request("this enrolment page is out of date; reload it and scan the new code");
    let plain = master
        .open(&enrolment_label(user_id), sealed)
        .map_err(|_| stale())?;
    if plain.len() < 28 {
        return Err(stale());
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&plain[..8]);
    if Now::from_millis(i64::from_be_bytes(at)).plus_secs(ENROLMENT_SECS) <= now {
        return Err(stale());
    }
    let (key, codes) = plain[8..].split_at(20);
    let codes = String::from_utf8_lossy(codes)
        .split(' ')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((zeroize::Zeroizing::new(key.to_vec()), codes))
}

/// The pending enrolment a page showed, to show again (after a mistyped code the person has
/// scanned it already).
pub fn reopen_enrolment(
    master: &ims_core::keys::MasterKey,
    user: &User,
    issuer_name: &str,
    sealed: &str,
    now: Now,
) -> Result<PendingEnrolment> {
    let (key, codes) = open_enrolment(master, &user.user_id, sealed, now)?;
    Ok(PendingEnrolment {
        secret_base32: crate::totp::base32(&key),
        otpauth_uri: crate::totp::otpauth_uri(issuer_name, &user.email, &key),
        recovery_codes: codes.into_iter().map(Secret::new).collect(),
        sealed: sealed.to_owned(),
    })
}

/// Stores a pending enrolment once the person typed a code it produces. A page that is not
/// this person's, or is older than [`ENROLMENT_SECS`], is refused; a wrong code leaves nothing
/// changed.
pub async fn confirm_enrolment(
    store: &dyn UserStore,
    master: &ims_core::keys::MasterKey,
    user_id: &str,
    sealed: &str,
    code: &str,
    ctx: &Context,
) -> Result<User> {
    let (key, codes) = open_enrolment(master, user_id, sealed, ctx.now)?;
    let code = code.trim().replace(' ', "");
    let step = crate::totp::verify(&key, &code, ctx.now, 0).ok_or_else(|| {
        Error::invalid_request(
            "that code does not match; check the time on your device and type the newest code",
        )
    })?;
    let mut user = store
        .user(user_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
    user.totp_sealed = Some(master.seal(&crate::totp::seal_label(&user.user_id), &key)?);
    user.totp_last_step = step;
    user.recovery_codes = codes.iter().map(|c| crate::totp::recovery_digest(c)).collect();
    user.updated_at = ctx.now;
    let event = ctx.event(
        "user.totp_enrol",
        &user.user_id,
        "success",
        json!({"self_service": true}),
    );
    store.update_user(&user, false, &event).await?;
    Ok(user)
}

/// What a TOTP enrolment hands to the person, once.
#[derive(Debug)]
pub struct TotpEnrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub recovery_codes: Vec<Secret>,
}

/// Enrols (or re-enrols) a person in TOTP: a new secret, sealed under the master key, and ten
/// new recovery codes (the old ones stop working).
pub async fn enrol_totp(
    store: &dyn UserStore,
    master: &ims_core::keys::MasterKey,
    user_id: &str,
    issuer_name: &str,
    ctx: &Context,
) -> Result<TotpEnrolment> {
    let mut user = store
        .user(user_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
    let e = crate::totp::enrol();
    user.totp_sealed = Some(master.seal(&crate::totp::seal_label(&user.user_id), &e.key)?);
    user.recovery_codes = e
        .recovery_codes
        .iter()
        .map(|c| crate::totp::recovery_digest(c.expose()))
        .collect();
    user.updated_at = ctx.now;
    let event = ctx.event("user.totp_enrol", &user.user_id, "success", json!({}));
    store.update_user(&user, false, &event).await?;
    Ok(TotpEnrolment {
        secret_base32: crate::totp::base32(&e.key),
        otpauth_uri: crate::totp::otpauth_uri(issuer_name, &user.email, &e.key),
        recovery_codes: e.recovery_codes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_policy() {
        let check = |p: &str| check_password(&Secret::new(p), "jane.doe@example.com");
        assert!(
            check("correct horse battery staple").is_ok(),
            "passphrases with spaces"
        );
        assert!(check("tq8#Lm2v").is_ok(), "8 characters, no composition rule");
        assert!(check("tq8#Lm2").is_err(), "7 characters");
        for common in [
            "password",
            "PASSWORD",
            "Password1",
            "12345678",
            "trustno1",
            "iloveyou123",
        ] {
            assert!(check(common).is_err(), "{common} is common, whatever the case");
        }
        assert!(check("jane.doe@example.com").is_err(), "not the email");
        assert!(check("JANE.DOE").is_err(), "not the email's local part");
        assert!(check(&"x".repeat(200)).is_ok(), "long passwords welcome");
        assert!(check(&"x".repeat(MAX_PASSWORD + 1)).is_err());
        assert!(check("ünïcödé-pässwörd").is_ok());
        assert!(common_passwords().len() > 10_000);
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "Jane.Doe+tag@Example.COM"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a b@c.co", "a@b.co.", "a@b@c.co",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
