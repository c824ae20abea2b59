//! Errors of the instance, as SOAP faults with the vendor's codes (clients take the
//! `ABC-123456` prefix of the fault string as the error code).

use ims_core::error::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct Fault {
    /// `XSV-350024`, `SOP-330006`, ...
    pub code: &'static str,
    pub message: String,
    /// Client-side fault (`SOAP-ENV:Client`) or server-side.
    pub client: bool,
}

impl Fault {
    fn client(code: &'static str, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
            client: true,
        }
    }

    pub fn invalid_login() -> Self {
        Fault::client("XSV-350024", "Invalid login or password")
    }

    pub fn session_expired() -> Self {
        Fault::client(
            "XSV-350008",
            "Session has expired or is invalid. Please reconnect.",
        )
    }

    /// The session fault (clients sign in again on its code), saying what was missing.
    pub fn session_expired_because(why: &str) -> Self {
        Fault::client("XSV-350008", format!("Session has expired or is invalid: {why}."))
    }

    pub fn unknown_method(method: &str, urn: &str) -> Self {
        Fault::client(
            "SOP-330006",
            format!("The method '{method}' is not defined in SOAP service '{urn}'."),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Fault::client("SOP-330011", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Fault::client("XSV-350122", message)
    }

    /// A change or sign-in the lock-down restrictions refuse
    /// ([`crate::restrictions::RESTRICTED_CODE`]).
    pub fn restricted(message: impl Into<String>) -> Self {
        Fault::client(crate::restrictions::RESTRICTED_CODE, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Fault::client("XSV-350123", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Fault {
            code: "XSV-350001",
            message: message.into(),
            client: false,
        }
    }

    pub fn internal() -> Self {
        Fault {
            code: "XSV-350000",
            message: "The server could not complete the request".into(),
            client: false,
        }
    }
}

impl From<StoreError> for Fault {
    /// The database's words are logged, never sent.
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "instance store failure");
        Fault::internal()
    }
}
