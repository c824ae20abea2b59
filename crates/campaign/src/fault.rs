//! Errors of the instance, as SOAP faults with the vendor's codes (clients take the
//! `ABC-123456` prefix of the fault string as the error code).

use ims_core::error::StoreError;

/// The vendor's fault codes we answer with. Clients branch on the code (a session fault makes
/// them sign in again), so each kind of refusal has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// `XSV-350024`: wrong login or password, or an account that cannot sign in.
    InvalidLogin,
    /// `XSV-350008`: no session, or one that has ended.
    SessionExpired,
    /// `SOP-330006`: the method is not part of the service.
    UnknownMethod,
    /// `SOP-330011`: the request is malformed or names something that cannot be.
    BadRequest,
    /// `XSV-350122`: authenticated, but without the right this needs.
    Forbidden,
    /// `XSV-350260`: refused by the lock-down restrictions.
    Restricted,
    /// `XSV-350123`: nothing by that key.
    NotFound,
    /// `XSV-350001`: the instance cannot serve right now.
    Unavailable,
    /// `XSV-350000`: anything else (details are logged, never sent).
    Internal,
}

impl FaultCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultCode::InvalidLogin => "XSV-350024",
            FaultCode::SessionExpired => "XSV-350008",
            FaultCode::UnknownMethod => "SOP-330006",
            FaultCode::BadRequest => "SOP-330011",
            FaultCode::Forbidden => "XSV-350122",
            FaultCode::Restricted => "XSV-350260",
            FaultCode::NotFound => "XSV-350123",
            FaultCode::Unavailable => "XSV-350001",
            FaultCode::Internal => "XSV-350000",
        }
    }
}

impl std::fmt::Display for FaultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code compares equal to its wire text, as clients see it.
impl PartialEq<&str> for FaultCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The instance's domain error: a code clients branch on, a message any caller may read, and a
/// debug text (what the database or the system said) that the edge answering the fault logs
/// and never sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {message}")]
pub struct Fault {
    pub code: FaultCode,
    pub message: String,
    /// Client-side fault (`SOAP-ENV:Client`) or server-side.
    pub client: bool,
    debug: Option<String>,
}

impl Fault {
    fn client(code: FaultCode, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
            client: true,
            debug: None,
        }
    }

    /// Adds what an operator needs to know (logged, never sent).
    #[must_use]
    pub fn with_debug(mut self, debug: impl std::fmt::Display) -> Self {
        self.debug = Some(debug.to_string());
        self
    }

    /// What only the logs may hold.
    pub fn debug(&self) -> Option<&str> {
        self.debug.as_deref()
    }

    pub fn invalid_login() -> Self {
        Fault::client(FaultCode::InvalidLogin, "Invalid login or password")
    }

    pub fn session_expired() -> Self {
        Fault::client(
            FaultCode::SessionExpired,
            "Session has expired or is invalid. Please reconnect.",
        )
    }

    /// The session fault (clients sign in again on its code), saying what was missing.
    pub fn session_expired_because(why: &str) -> Self {
        Fault::client(
            FaultCode::SessionExpired,
            format!("Session has expired or is invalid: {why}."),
        )
    }

    pub fn unknown_method(method: &str, urn: &str) -> Self {
        Fault::client(
            FaultCode::UnknownMethod,
            format!("The method '{method}' is not defined in SOAP service '{urn}'."),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Fault::client(FaultCode::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Fault::client(FaultCode::Forbidden, message)
    }

    /// A change or sign-in the lock-down restrictions refuse.
    pub fn restricted(message: impl Into<String>) -> Self {
        Fault::client(FaultCode::Restricted, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Fault::client(FaultCode::NotFound, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Fault {
            code: FaultCode::Unavailable,
            message: message.into(),
            client: false,
            debug: None,
        }
    }

    pub fn internal() -> Self {
        Fault {
            code: FaultCode::Internal,
            message: "The server could not complete the request".into(),
            client: false,
            debug: None,
        }
    }
}

impl From<StoreError> for Fault {
    /// The database's words go to the debug text: logged, never sent.
    fn from(e: StoreError) -> Self {
        Fault::internal().with_debug(format!("instance store failure: {e}"))
    }
}

impl From<ims_core::Error> for Fault {
    /// A domain error of the layers below the instance (a request body refused, say), in the
    /// instance's terms; its debug text carries over.
    fn from(e: ims_core::Error) -> Self {
        use ims_core::ErrorKind;
        let fault = match e.kind() {
            ErrorKind::Internal => Fault::internal(),
            ErrorKind::Unavailable => Fault::unavailable(e.description()),
            ErrorKind::Forbidden | ErrorKind::InsufficientScope { .. } => Fault::forbidden(e.description()),
            ErrorKind::NotFound => Fault::not_found(e.description()),
            _ => Fault::bad_request(e.description()),
        };
        match e.debug() {
            Some(debug) => fault.with_debug(debug),
            None => fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_keeps_the_databases_words_out_of_the_fault_string() {
        let f = Fault::from(StoreError::Backend(
            "relation \"operators\" does not exist".into(),
        ));
        assert_eq!(f.code, FaultCode::Internal);
        assert!(!f.client);
        assert!(!f.to_string().contains("relation"));
        assert!(!f.message.contains("relation"));
        assert!(f.debug().unwrap().contains("relation \"operators\""));
    }

    #[test]
    fn domain_errors_below_keep_their_kind_and_their_debug_text() {
        let f = Fault::from(ims_core::Error::too_large("the request body exceeds 10 bytes"));
        assert_eq!((f.code, f.client), (FaultCode::BadRequest, true));
        assert_eq!(f.message, "the request body exceeds 10 bytes");
        let f = Fault::from(ims_core::Error::internal("disk full"));
        assert_eq!((f.code, f.client), (FaultCode::Internal, false));
        assert!(!f.message.contains("disk"));
        assert_eq!(f.debug(), Some("disk full"));
    }
}
