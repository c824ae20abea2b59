//! Domain errors with stable codes. Each protocol maps them to its own shape in exactly one place
//! (the OAuth mapping lives in the HTTP crate); the messages here are safe to show to a caller,
//! while storage and internal details stay in `Internal` and are logged, never sent.

use thiserror::Error;

/// A storage failure, as the domain sees it.
#[derive(Debug, Error)]
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

#[derive(Debug, Error)]
pub enum Error {
    /// The request is malformed (missing, repeated or unusable parameter).
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed: unknown client, wrong or expired secret, disabled account.
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    /// The client exists but may not use this grant.
    #[error("{0}")]
    UnauthorizedClient(String),
    #[error("{0}")]
    UnsupportedGrantType(String),
    #[error("{0}")]
    InvalidScope(String),
    /// A code or refresh token that is unknown, spent, expired, revoked or someone else's.
    #[error("{0}")]
    InvalidGrant(String),
    /// A person's sign-in failed. One message whatever the reason (unknown email, wrong password,
    /// locked, disabled), so the answer says nothing about the account.
    #[error("the email address or password is incorrect, or the account cannot sign in now")]
    InvalidCredentials,
    /// The request is larger than the endpoint accepts.
    #[error("{0}")]
    TooLarge(String),
    /// A bearer token is missing, malformed, expired, revoked or not ours.
    #[error("{0}")]
    InvalidToken(String),
    /// A valid token without the scope this resource needs (the scope is named).
    #[error("this resource needs the {0} scope")]
    InsufficientScope(String),
    /// Authenticated, but the caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The store is behind: the service answers but cannot serve yet.
    #[error("service unavailable")]
    Unavailable(String),
    /// Anything else; the text is logged and replaced by a generic message on the wire.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    /// Stable, searchable code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) | Error::TooLarge(_) => "invalid_request",
            Error::InvalidClient { .. } => "invalid_client",
            Error::UnauthorizedClient(_) => "unauthorized_client",
            Error::UnsupportedGrantType(_) => "unsupported_grant_type",
            Error::InvalidScope(_) => "invalid_scope",
            Error::InvalidGrant(_) => "invalid_grant",
            Error::InvalidCredentials => "invalid_credentials",
            Error::InvalidToken(_) => "invalid_token",
            Error::InsufficientScope(_) => "insufficient_scope",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unavailable(_) => "temporarily_unavailable",
            Error::Internal(_) => "server_error",
        }
    }

    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Error::InvalidRequest(msg.into())
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Error::Conflict(m),
            StoreError::Schema(m) => Error::Unavailable(m),
            StoreError::Backend(m) => Error::Internal(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub type StoreResult<T> = std::result::Result<T, StoreError>;
