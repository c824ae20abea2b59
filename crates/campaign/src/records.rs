//! The instance's data through SOAP: queries on the schemas it serves, recipients written with
//! `xtk:session#Write`, and the real-time events of a Message Center instance.

use std::sync::Arc;

use ims_core::error::StoreError;
use ims_core::Now;
use ims_core::StoreResult;

use crate::fault::Fault;
use crate::model::Operator;
use crate::operator_admin::Operators;
use crate::service::{effective_rights, holds, Caller, InstanceKind, ADMINISTRATION};
use crate::store::{EventStore, QueryStore, RecipientStore};

/// Queries, recipients and events, each checked against the caller's rights and folders.
pub struct Records {
    queries: Arc<dyn QueryStore>,
    recipients: Arc<dyn RecipientStore>,
    events: Arc<dyn EventStore>,
    /// Rights are read from the operators' store, and an `xtk:operator` document written with
    /// `Write` goes through operator management like the console's changes.
    pub(crate) admin: Operators,
}

/// The answer to a query: what the vendor's server sends back in `pdomOutput`, before it is
/// written as XML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryAnswer {
    /// `count`: how many rows match.
    Count { element: &'static str, count: i64 },
    /// `get` and `getIfExists`: the first row (`None` only for `getIfExists`, which answers an
    /// empty element when nothing matches).
    One {
        element: &'static str,
        row: Option<QueryRow>,
    },
    /// `select`: the rows, in the order asked.
    Many {
        element: &'static str,
        rows: Vec<QueryRow>,
    },
}

/// One row of a query's answer: the attributes asked for, in their order, `None` where the
/// value is absent (left out of the answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRow {
    pub fields: Vec<(String, Option<String>)>,
}

impl Records {
    pub(crate) fn new(
        queries: Arc<dyn QueryStore>,
        recipients: Arc<dyn RecipientStore>,
        events: Arc<dyn EventStore>,
        admin: Operators,
    ) -> Self {
        Records {
            queries,
            recipients,
            events,
            admin,
        }
    }

    async fn rights(&self, op: &Operator) -> Result<Vec<String>, Fault> {
        effective_rights(self.admin.operators.as_ref(), op).await
    }

    /// `xtk:queryDef#ExecuteQuery` on a schema we serve, for `op`.
    pub async fn execute_query(
        &self,
        op: &Operator,
        doc: &ims_wire::soap::Element,
    ) -> Result<QueryAnswer, Fault> {
        use crate::query::{Operation, QueryDef};
        let q = QueryDef::from_element(doc).map_err(|e| Fault::bad_request(e.0))?;
        let rights = self.rights(op).await?;
        if let Some(right) = q.schema.right {
            if !holds(&rights, right) {
                return Err(Fault::forbidden(format!(
                    "reading {} needs the {right} right",
                    q.schema.id
                )));
            }
        }
        let mut filter = q.where_sql().map_err(|e| Fault::bad_request(e.0))?;
        if let Some(column) = q.schema.folder_column {
            if !holds(&rights, ADMINISTRATION) {
                let folders = self.recipients.readable_folders(op.id).await?;
                filter = Some(crate::query::and_in(filter, column, &folders));
            }
        }
        let element = q.schema.element;
        if q.operation == Operation::Count {
            let count = self.queries.count(q.schema.table, filter.as_ref()).await?;
            return Ok(QueryAnswer::Count { element, count });
        }
        let columns: Vec<&'static str> = q.select.iter().map(|(_, c)| *c).collect();
        let limit = match q.operation {
            Operation::Get | Operation::GetIfExists => Some(1),
            _ => q.line_count,
        };
        let rows = self
            .queries
            .select(
                q.schema.table,
                &columns,
                filter.as_ref(),
                &q.order,
                limit,
                q.start_line,
            )
            .await?;
        let mut rows = rows.into_iter().map(|row| QueryRow {
            fields: q.select.iter().map(|(attr, _)| attr.clone()).zip(row).collect(),
        });
        match q.operation {
            Operation::Get => match rows.next() {
                Some(row) => Ok(QueryAnswer::One {
                    element,
                    row: Some(row),
                }),
                None => Err(Fault::not_found(format!("No {element} matches the query"))),
            },
            Operation::GetIfExists => Ok(QueryAnswer::One {
                element,
                row: rows.next(),
            }),
            _ => Ok(QueryAnswer::Many {
                element,
                rows: rows.collect(),
            }),
        }
    }
}

/// Largest real-time event context accepted, in bytes of XML.
pub const MAX_EVENT_CTX: usize = 64 * 1024;
/// Queue size `mcPing.jsp` reports against.
pub const EVENT_QUEUE_SIZE: i64 = 400;

impl Records {
    /// `nms:rtEvent#PushEvent` on a Message Center instance, for an operator holding the
    /// Message Center right (or ADMINISTRATION). Returns the event id.
    pub async fn push_event(
        &self,
        op: &Operator,
        event: &ims_wire::soap::Element,
        now: Now,
    ) -> Result<i64, Fault> {
        if self.admin.shared.info.kind != InstanceKind::MessageCenter {
            return Err(Fault::unknown_method("PushEvent", "urn:nms:rtEvent"));
        }
        if !holds(&self.rights(op).await?, "messageCenter") {
            return Err(Fault::forbidden("pushing events needs the Message Center right"));
        }
        if event.name != "rtEvent" {
            return Err(Fault::bad_request("the event must be an <rtEvent> element"));
        }
        let event_type = event
            .attr("type")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Fault::bad_request("the event has no type"))?;
        let ctx = serialize(event);
        if ctx.len() > MAX_EVENT_CTX {
            return Err(Fault::bad_request(format!(
                "the event exceeds {MAX_EVENT_CTX} bytes"
            )));
        }
        Ok(self
            .events
            .push_event(event_type, event.attr("email"), &ctx, op.id, now)
            .await?)
    }

    /// `mcPing.jsp`: pending events and the queue size.
    pub async fn mc_ping(&self) -> Result<(i64, i64), Fault> {
        Ok((self.events.pending_events().await?, EVENT_QUEUE_SIZE))
    }
}

/// Writes an element back as XML (the stored context of an event).
fn serialize(el: &ims_wire::soap::Element) -> String {
    use ims_wire::soap::{escape, Node};
    let mut out = format!("<{}", el.name);
    for (k, v) in &el.attrs {
        out.push_str(&format!(" {k}=\"{}\"", escape(v)));
    }
    out.push('>');
    for child in &el.children {
        match child {
            Node::Element(e) => out.push_str(&serialize(e)),
            Node::Text(t) => out.push_str(&escape(t)),
        }
    }
    out.push_str(&format!("</{}>", el.name));
    out
}

/// Folder new recipients go to unless the document names one.
pub const DEFAULT_RECIPIENT_FOLDER: &str = "nmsRootRecipient";

impl Records {
    /// `xtk:session#Write` (the `xtk:persist` interface) of an `xtk:operator` document (see
    /// [`crate::operators::parse_document`]) or an `nms:recipient` document. For recipients:
    /// `_operation` insert, update, insertOrUpdate (the default) or delete, `_key` `@id` (the
    /// default) or `@email`. Needs the write right on the folder written to and, for a change, on
    /// the folder the recipient is in (ADMINISTRATION writes everywhere).
    pub async fn write(
        &self,
        op: &Operator,
        doc: &ims_wire::soap::Element,
        now: Now,
        caller: &Caller,
    ) -> Result<(), Fault> {
        use crate::model::Recipient;
        use crate::store::RecipientKey;
        let schema = doc.attr("xtkschema").unwrap_or_default();
        match (schema, doc.name.as_str()) {
            ("nms:recipient", "recipient") => {}
            ("xtk:operator", "operator") => {
                let d = crate::operators::parse_document(doc)?;
                return self
                    .admin
                    .change_operator(op, &d.key, d.mode, d.edit, now, caller)
                    .await
                    .map(drop);
            }
            _ => {
                return Err(Fault::bad_request(format!(
                    "this instance writes nms:recipient and xtk:operator documents, not {schema:?}"
                )))
            }
        }
        let admin = holds(&self.rights(op).await?, ADMINISTRATION);
        let writable = if admin {
            Vec::new()
        } else {
            self.recipients.writable_folders(op.id).await?
        };
        let may_write = |folder: Option<i64>| admin || folder.is_some_and(|f| writable.contains(&f));
        let key = match doc.attr("_key").unwrap_or("@id") {
            "@id" => RecipientKey::Id,
            "@email" => RecipientKey::Email,
            other => return Err(Fault::bad_request(format!("_key {other:?}: use @id or @email"))),
        };
        let key_value = match key {
            RecipientKey::Id => doc.attr("id"),
            RecipientKey::Email => doc.attr("email"),
        };
        let existing = match key_value {
            Some(v) => self.recipients.recipient_by(key, v).await?,
            None => None,
        };
        let folder = match doc.attr("folder-id") {
            Some(f) => Some(
                f.trim()
                    .parse::<i64>()
                    .map_err(|_| Fault::bad_request("folder-id must be a number"))?,
            ),
            None => match &existing {
                Some(r) => r.folder_id,
                None => self.recipients.folder_by_name(DEFAULT_RECIPIENT_FOLDER).await?,
            },
        };
        let text = |name: &str, old: Option<String>| doc.attr(name).map(str::to_owned).or(old);
        // The database refuses a folder that does not exist (a foreign key): that is the
        // caller's mistake, said as such, not a server fault.
        let written = |r: StoreResult<()>| match r {
            Err(StoreError::Conflict(_)) => Err(Fault::bad_request(format!(
                "folder-id {} is not a folder of this instance",
                folder.map(|f| f.to_string()).unwrap_or_default()
            ))),
            other => other.map_err(Fault::from),
        };
        let operation = doc.attr("_operation").unwrap_or("insertOrUpdate");
        match (operation, existing) {
            ("delete", Some(r)) => {
                if !may_write(r.folder_id) {
                    return Err(Fault::forbidden("no write right on the recipient's folder"));
                }
                self.recipients.delete_recipient(r.id).await?;
            }
            ("delete", None) => return Err(Fault::not_found("No recipient matches the key")),
            ("update" | "insertOrUpdate", Some(r)) => {
                if !may_write(r.folder_id) || !may_write(folder) {
                    return Err(Fault::forbidden("no write right on the recipient's folder"));
                }
                let updated = Recipient {
                    email: text("email", r.email.clone()),
                    first_name: text("firstName", r.first_name.clone()),
                    last_name: text("lastName", r.last_name.clone()),
                    folder_id: folder,
                    modified_at: now,
                    ..r
                };
                written(self.recipients.update_recipient(&updated).await)?;
            }
            ("update", None) => return Err(Fault::not_found("No recipient matches the key")),
            ("insert" | "insertOrUpdate", _) => {
                if !may_write(folder) {
                    return Err(Fault::forbidden("no write right on the folder"));
                }
                let email = doc.attr("email").map(str::trim).filter(|e| !e.is_empty());
                if email.is_some_and(|e| e.len() > 320 || !e.contains('@')) {
                    return Err(Fault::bad_request("email is not an email address"));
                }
                written(
                    self.recipients
                        .create_recipient(&Recipient {
                            id: 0,
                            email: email.map(str::to_owned),
                            first_name: doc.attr("firstName").map(str::to_owned),
                            last_name: doc.attr("lastName").map(str::to_owned),
                            folder_id: folder,
                            created_at: now,
                            modified_at: now,
                        })
                        .await
                        .map(drop),
                )?;
            }
            (other, _) => return Err(Fault::bad_request(format!("unsupported _operation {other:?}"))),
        }
        Ok(())
    }
}
