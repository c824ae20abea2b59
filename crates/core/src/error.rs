//! The domain error every service returns, and the storage error beneath it.
//!
//! An [`Error`] has a [`ErrorKind`] (what went wrong, with a stable code every protocol maps to
//! its own shape in one place of the HTTP crate), a description safe to show any caller, an
//! optional hint that tells the caller how to succeed, and an optional debug text that is logged
//! and never sent. Storage and internal details go only into the debug text, so no protocol can
//! leak them by printing the error.

use std::fmt;

use thiserror::Error as ThisError;

/// A storage failure, as the domain sees it.
#[derive(Debug, ThisError)]
pub enum StoreError {
    /// A uniqueness or foreign-key rule refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database is unreachable or answered with an error.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The schema is older or newer than this build.
    #[error("schema: {0}")]
    Schema(String),
}

/// What went wrong. Each kind has one stable code; the protocols choose their status and body
/// from the kind alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed (missing, repeated or unusable parameter).
    InvalidRequest,
    /// The request is larger than the endpoint accepts.
    TooLarge,
    /// Client authentication failed: unknown client, wrong or expired secret, disabled account.
    /// `basic` when the client authenticated with HTTP Basic (the answer then challenges it).
    InvalidClient {
        basic: bool,
    },
    /// The client exists but may not use this grant.
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// A code or refresh token that is unknown, spent, expired, revoked or someone else's.
    InvalidGrant,
    /// A person's sign-in failed, whatever the reason (unknown email, wrong password, locked,
    /// disabled): one answer, so it says nothing about the account.
    InvalidCredentials,
    /// A bearer token is missing, malformed, expired, revoked or not ours.
    InvalidToken,
    /// A valid token without the scope this resource needs.
    InsufficientScope {
        scope: &'static str,
    },
    /// Authenticated, but the caller's role does not allow this.
    Forbidden,
    NotFound,
    Conflict,
    /// The store is behind: the service answers but cannot serve yet.
    Unavailable,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// The stable, searchable code (OAuth's where OAuth has one).
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::TooLarge => "invalid_request",
            ErrorKind::InvalidClient { .. } => "invalid_client",
            ErrorKind::UnauthorizedClient => "unauthorized_client",
            ErrorKind::UnsupportedGrantType => "unsupported_grant_type",
            ErrorKind::InvalidScope => "invalid_scope",
            ErrorKind::InvalidGrant => "invalid_grant",
            ErrorKind::InvalidCredentials => "invalid_credentials",
            ErrorKind::InvalidToken => "invalid_token",
            ErrorKind::InsufficientScope { .. } => "insufficient_scope",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "temporarily_unavailable",
            ErrorKind::Internal => "server_error",
        }
    }
}

/// A domain error: see the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    description: String,
    hint: Option<String>,
    /// Logged where the error is answered; never part of an answer.
    debug: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, description: impl Into<String>) -> Self {
        Error {
            kind,
            description: description.into(),
            hint: None,
            debug: None,
        }
    }

    /// Adds what the caller could do to succeed (safe to show).
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds what an operator needs to know (logged, never sent).
    #[must_use]
    pub fn with_debug(mut self, debug: impl fmt::Display) -> Self {
        self.debug = Some(debug.to_string());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code of the error's kind.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// What any caller may be told.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// What only the logs may hold.
    pub fn debug(&self) -> Option<&str> {
        self.debug.as_deref()
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidRequest, description)
    }

    pub fn too_large(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::TooLarge, description)
    }

    /// Every client authentication failure looks the same.
    pub fn invalid_client(basic: bool) -> Self {
        Error::new(ErrorKind::InvalidClient { basic }, "client authentication failed")
    }

    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::UnauthorizedClient, description)
    }

    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::UnsupportedGrantType, description)
    }

    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidScope, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidGrant, description)
    }

    /// One answer for every failed sign-in.
    pub fn invalid_credentials() -> Self {
        Error::new(
            ErrorKind::InvalidCredentials,
            "the email address or password is incorrect, or the account cannot sign in now",
        )
    }

    /// A refused bearer token. Why it was refused is only logged: telling a caller which check
    /// failed helps forgers more than clients.
    pub fn invalid_token(reason: impl fmt::Display) -> Self {
        Error::new(
            ErrorKind::InvalidToken,
            "the access token is invalid, expired or revoked",
        )
        .with_debug(reason)
    }

    pub fn insufficient_scope(scope: &'static str) -> Self {
        Error::new(
            ErrorKind::InsufficientScope { scope },
            format!("this resource needs the {scope} scope"),
        )
        .with_hint(format!("ask for a token that carries the {scope} scope"))
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::Forbidden, description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, description)
    }

    pub fn conflict(description: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, description)
    }

    /// The service cannot serve yet; `why` is logged.
    pub fn unavailable(why: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Unavailable, "the service is not ready; retry later").with_debug(why)
    }

    /// Anything else; `detail` is logged and the caller hears only that the request failed.
    pub fn internal(detail: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Internal, "the server could not complete the request").with_debug(detail)
    }
}

/// The description, which is what a caller may read. Logs use [`fmt::Debug`], which adds the
/// hint and the debug text.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description, self.kind.code())?;
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        if let Some(debug) = &self.debug {
            write!(f, "; debug: {debug}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Error::conflict(m),
            StoreError::Schema(m) => Error::unavailable(format!("schema: {m}")),
            StoreError::Backend(m) => Error::internal(format!("storage backend: {m}")),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub type StoreResult<T> = std::result::Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_details_stay_out_of_what_callers_read() {
        let e = Error::from(StoreError::Backend(
            "password authentication failed for user x".into(),
        ));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(!e.to_string().contains("password authentication"));
        assert!(e.debug().unwrap().contains("password authentication"));
        assert!(format!("{e:?}").contains("password authentication"));

        let e = Error::invalid_token("signature does not verify");
        assert_eq!(e.code(), "invalid_token");
        assert!(!e.to_string().contains("signature"));
        assert_eq!(e.debug(), Some("signature does not verify"));
    }

    #[test]
    fn a_conflict_says_what_conflicts() {
        let e = Error::from(StoreError::Conflict("that email is taken".into()));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.to_string(), "that email is taken");
    }

    #[test]
    fn insufficient_scope_names_the_scope_and_how_to_get_it() {
        let e = Error::insufficient_scope("openid");
        assert_eq!(e.kind(), ErrorKind::InsufficientScope { scope: "openid" });
        assert_eq!(e.to_string(), "this resource needs the openid scope");
        assert!(e.hint().unwrap().contains("openid"));
    }
}
