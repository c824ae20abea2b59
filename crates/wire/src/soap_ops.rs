//! The SOAP operations an instance serves, read from an envelope into typed requests. One table
//! names every operation, its schema and method, and how many parameters it takes; the router
//! matches on [`Operation`] and never reads parameters by position itself.
//!
//! Parameters follow the vendor's convention: the first is always the session token (empty when
//! the call authenticates otherwise), so an operation's own arguments start at the second.

use crate::soap::{Element, Envelope};

/// A document argument: borrowed from the envelope, or why it is missing. Kept as a result
/// rather than refused while parsing, because the caller is authenticated first: a stranger
/// learns nothing about an operation's arguments.
pub type Document<'e> = Result<&'e Element, OperationError>;

/// An operation, parsed. Documents stay borrowed from the envelope.
#[derive(Debug, PartialEq, Eq)]
pub enum Operation<'e> {
    /// `xtk:session#Logon`: a native password sign-in.
    Logon {
        login: String,
        password: String,
        /// `rememberMe="true"` on the parameters element: a longer session.
        remember: bool,
    },
    /// `xtk:session#BearerTokenLogon`: a session from an IMS access token.
    BearerTokenLogon {
        token: String,
    },
    Logoff,
    GetServerTime,
    GetOption {
        name: String,
    },
    GetUserInfo,
    /// `xtk:persist#GetEntityIfMoreRecent`: `pk` is `schema|id`.
    GetEntityIfMoreRecent {
        pk: String,
    },
    /// `xtk:session#Write` and its aliases: one document to write.
    Write {
        document: Document<'e>,
    },
    /// `nms:rtEvent#PushEvent`: the `rtEvent` element.
    PushEvent {
        event: Document<'e>,
    },
    /// `xtk:queryDef#ExecuteQuery`: the `queryDef` document.
    ExecuteQuery {
        query: Document<'e>,
    },
    /// Anything else: the caller must still be authenticated before it hears that the method
    /// is unknown, so that the answer does not tell strangers which methods exist.
    Unknown {
        name: String,
        ns: String,
    },
}

/// Why an envelope names no usable operation: a client fault with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationError(pub String);

impl std::fmt::Display for OperationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OperationError {}

/// Which operation a row of [`TABLE`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Logon,
    BearerTokenLogon,
    Logoff,
    GetServerTime,
    GetOption,
    GetUserInfo,
    GetEntityIfMoreRecent,
    Write,
    PushEvent,
    ExecuteQuery,
}

/// One operation: `schema#method` as the envelope names it, its kind, and at most how many
/// parameters it takes (`None`: not checked, as the vendor's server does not either).
struct Row {
    name: &'static str,
    kind: Kind,
    max_params: Option<(usize, &'static str)>,
}

const TABLE: &[Row] = &[
    Row {
        name: "xtk:session#Logon",
        kind: Kind::Logon,
        max_params: Some((4, "Logon takes at most four parameters")),
    },
    Row {
        name: "xtk:session#BearerTokenLogon",
        kind: Kind::BearerTokenLogon,
        max_params: Some((2, "BearerTokenLogon takes two parameters")),
    },
    Row {
        name: "xtk:session#Logoff",
        kind: Kind::Logoff,
        max_params: None,
    },
    Row {
        name: "xtk:session#GetServerTime",
        kind: Kind::GetServerTime,
        max_params: None,
    },
    Row {
        name: "xtk:session#GetOption",
        kind: Kind::GetOption,
        max_params: None,
    },
    Row {
        name: "xtk:session#GetUserInfo",
        kind: Kind::GetUserInfo,
        max_params: None,
    },
    Row {
        name: "xtk:persist#GetEntityIfMoreRecent",
        kind: Kind::GetEntityIfMoreRecent,
        max_params: None,
    },
    Row {
        name: "xtk:session#Write",
        kind: Kind::Write,
        max_params: None,
    },
    Row {
        name: "xtk:persist#Write",
        kind: Kind::Write,
        max_params: None,
    },
    Row {
        name: "xtk:persist|xtk:session#Write",
        kind: Kind::Write,
        max_params: None,
    },
    Row {
        name: "nms:rtEvent#PushEvent",
        kind: Kind::PushEvent,
        max_params: None,
    },
    Row {
        name: "xtk:queryDef#ExecuteQuery",
        kind: Kind::ExecuteQuery,
        max_params: None,
    },
];

impl<'e> Operation<'e> {
    /// Reads the operation of `env` and its arguments.
    pub fn parse(env: &'e Envelope) -> Result<Self, OperationError> {
        let name = env.operation();
        let Some(row) = TABLE.iter().find(|r| r.name == name) else {
            return Ok(Operation::Unknown {
                name: env.method.name.clone(),
                ns: env.method.ns.clone(),
            });
        };
        let params = env.params();
        if let Some((max, why)) = row.max_params {
            if params.len() > max {
                return Err(OperationError(why.to_owned()));
            }
        }
        let text = |i: usize| params.get(i).map(|p| p.text()).unwrap_or_default();
        let first_child = |i: usize, why: &str| {
            params
                .get(i)
                .and_then(|p| p.elements().next())
                .ok_or_else(|| OperationError(why.to_owned()))
        };
        Ok(match row.kind {
            Kind::Logon => Operation::Logon {
                login: text(1),
                password: text(2),
                remember: params
                    .get(3)
                    .and_then(|p| p.attr("rememberMe"))
                    .is_some_and(|v| v == "true"),
            },
            Kind::BearerTokenLogon => Operation::BearerTokenLogon { token: text(1) },
            Kind::Logoff => Operation::Logoff,
            Kind::GetServerTime => Operation::GetServerTime,
            Kind::GetOption => Operation::GetOption { name: text(1) },
            Kind::GetUserInfo => Operation::GetUserInfo,
            Kind::GetEntityIfMoreRecent => Operation::GetEntityIfMoreRecent { pk: text(1) },
            Kind::Write => Operation::Write {
                document: first_child(1, "Write needs a document"),
            },
            // The event is the parameter itself when it is named `rtEvent`, else its first child.
            Kind::PushEvent => Operation::PushEvent {
                event: params
                    .get(1)
                    .and_then(|p| {
                        if p.name == "rtEvent" {
                            Some(*p)
                        } else {
                            p.elements().next()
                        }
                    })
                    .ok_or_else(|| OperationError("PushEvent needs an rtEvent element".into())),
            },
            Kind::ExecuteQuery => Operation::ExecuteQuery {
                query: first_child(1, "ExecuteQuery needs a queryDef document"),
            },
        })
    }

    /// Whether the operation starts a session (and so needs no credentials of its own).
    pub fn is_logon(&self) -> bool {
        matches!(self, Operation::Logon { .. } | Operation::BearerTokenLogon { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::{parse_envelope, Limits};

    fn envelope(method: &str, urn: &str, params: &str) -> Envelope {
        let xml = format!(
            r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="{urn}"><SOAP-ENV:Body><ns:{method}>{params}</ns:{method}></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
        );
        parse_envelope(&xml, Limits::default()).unwrap()
    }

    #[test]
    fn logon_reads_login_password_and_remember() {
        let env = envelope(
            "Logon",
            "urn:xtk:session",
            r#"<sessiontoken/><strLogin>jdoe</strLogin><strPassword>pw</strPassword><elemParameters rememberMe="true"/>"#,
        );
        assert_eq!(
            Operation::parse(&env).unwrap(),
            Operation::Logon {
                login: "jdoe".into(),
                password: "pw".into(),
                remember: true,
            }
        );
    }

    #[test]
    fn too_many_parameters_is_a_client_error() {
        let env = envelope(
            "BearerTokenLogon",
            "urn:xtk:session",
            "<sessiontoken/><token>t</token><extra/>",
        );
        assert_eq!(
            Operation::parse(&env).unwrap_err().0,
            "BearerTokenLogon takes two parameters"
        );
    }

    #[test]
    fn documents_are_required_where_an_operation_needs_one() {
        let env = envelope("ExecuteQuery", "urn:xtk:queryDef", "<sessiontoken/>");
        assert_eq!(
            Operation::parse(&env).unwrap(),
            Operation::ExecuteQuery {
                query: Err(OperationError("ExecuteQuery needs a queryDef document".into()))
            }
        );
        let env = envelope(
            "ExecuteQuery",
            "urn:xtk:queryDef",
            r#"<sessiontoken/><entity><queryDef schema="nms:recipient"/></entity>"#,
        );
        match Operation::parse(&env).unwrap() {
            Operation::ExecuteQuery { query } => assert_eq!(query.unwrap().name, "queryDef"),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn an_unknown_method_is_named_not_refused() {
        let env = envelope("Nothing", "urn:xtk:session", "<sessiontoken/>");
        assert_eq!(
            Operation::parse(&env).unwrap(),
            Operation::Unknown {
                name: "Nothing".into(),
                ns: "urn:xtk:session".into(),
            }
        );
    }
}
