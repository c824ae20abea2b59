//! The schemas the instance serves: their compiled form for `xtk:persist#GetEntityIfMoreRecent`
//! (what the reference client needs to build calls), and for the queryable ones the whitelist of
//! attributes a query may name, with the column each maps to.

/// A queryable schema.
#[derive(Debug)]
pub struct QuerySchema {
    /// `xtk:operator`
    pub id: &'static str,
    /// The XML element of one row (`operator`).
    pub element: &'static str,
    /// The table (one of ours, never caller text).
    pub table: &'static str,
    /// Attribute name -> column.
    pub attributes: &'static [(&'static str, &'static str)],
    /// Named right needed to read it (`None`: any signed-in operator).
    pub right: Option<&'static str>,
    /// The column naming a row's folder: rows are then visible only in folders the reader may
    /// read (ADMINISTRATION sees every folder).
    pub folder_column: Option<&'static str>,
}

impl QuerySchema {
    pub fn column(&self, attr: &str) -> Option<&'static str> {
        self.attributes.iter().find(|(a, _)| *a == attr).map(|(_, c)| *c)
    }
}

pub const OPERATOR: QuerySchema = QuerySchema {
    id: "xtk:operator",
    element: "operator",
    table: "operators",
    attributes: &[
        ("id", "operator_id"),
        ("name", "login"),
        ("label", "label"),
        ("email", "email"),
        ("authType", "auth_type"),
        ("disabled", "disabled"),
        ("builtin", "builtin"),
        ("created", "created_at"),
        ("lastModified", "modified_at"),
    ],
    right: Some("admin"),
    folder_column: None,
};

pub const RECIPIENT: QuerySchema = QuerySchema {
    id: "nms:recipient",
    element: "recipient",
    table: "recipients",
    attributes: &[
        ("id", "recipient_id"),
        ("email", "email"),
        ("firstName", "first_name"),
        ("lastName", "last_name"),
        ("folder-id", "folder_id"),
        ("created", "created_at"),
        ("lastModified", "modified_at"),
    ],
    right: None,
    folder_column: Some("folder_id"),
};

pub const RT_EVENT: QuerySchema = QuerySchema {
    id: "nms:rtEvent",
    element: "rtEvent",
    table: "rt_events",
    attributes: &[
        ("id", "event_id"),
        ("type", "event_type"),
        ("email", "email"),
        ("status", "status"),
        ("created", "created_at"),
    ],
    right: Some("messageCenter"),
    folder_column: None,
};

/// Operator groups (`xtk:group`); their named rights are read with the operators'.
pub const GROUP: QuerySchema = QuerySchema {
    id: "xtk:group",
    element: "group",
    table: "operator_groups",
    attributes: &[("id", "group_id"), ("name", "name"), ("label", "label")],
    right: Some("admin"),
    folder_column: None,
};

pub const QUERY_SCHEMAS: &[&QuerySchema] = &[&OPERATOR, &GROUP, &RECIPIENT, &RT_EVENT];

pub fn query_schema(id: &str) -> Option<&'static QuerySchema> {
    QUERY_SCHEMAS.iter().copied().find(|s| s.id == id)
}

/// Compiled schema documents, by `namespace:name`.
pub fn compiled(id: &str) -> Option<&'static str> {
    Some(match id {
        "xtk:session" => concat!(
            r#"<schema name="session" namespace="xtk" implements="xtk:persist"><element name="session"/><element name="userInfo"/>"#,
            r#"<interface name="persist"><method name="Write" static="true"><parameters><param name="doc" type="DOMDocument"/></parameters></method></interface>"#,
            r#"<methods>"#,
            r#"<method name="GetOption" static="true"><parameters><param name="name" type="string"/><param inout="out" name="value" type="string"/><param inout="out" name="type" type="byte"/></parameters></method>"#,
            r#"<method name="GetUserInfo" static="true"><parameters><param inout="out" name="userInfo" type="DOMElement"/></parameters></method>"#,
            r#"<method name="GetServerTime" static="true"><parameters><param inout="out" name="time" type="datetime"/></parameters></method>"#,
            r#"</methods></schema>"#
        ),
        "xtk:persist" => concat!(
            r#"<schema name="persist" namespace="xtk"><element name="persist"/><methods>"#,
            r#"<method name="GetEntityIfMoreRecent" static="true"><parameters><param name="pk" type="string"/><param name="md5" type="string"/><param name="mustExist" type="boolean"/><param inout="out" name="doc" type="DOMDocument"/></parameters></method>"#,
            r#"</methods></schema>"#
        ),
        "xtk:queryDef" => concat!(
            r#"<schema name="queryDef" namespace="xtk"><element name="queryDef"/><methods>"#,
            r#"<method const="true" name="ExecuteQuery"><parameters><param inout="out" name="output" type="DOMDocument"/></parameters></method>"#,
            r#"</methods></schema>"#
        ),
        "xtk:operator" => concat!(
            r#"<schema name="operator" namespace="xtk"><element name="operator">"#,
            r#"<attribute name="id" type="long"/><attribute name="name" type="string"/><attribute name="label" type="string"/>"#,
            r#"<attribute name="email" type="string"/><attribute name="authType" type="string"/><attribute name="disabled" type="boolean"/>"#,
            r#"<attribute name="builtin" type="boolean"/><attribute name="created" type="datetime"/><attribute name="lastModified" type="datetime"/>"#,
            r#"<attribute name="password" type="string"/><attribute name="forbidRichClient" type="boolean"/>"#,
            r#"<attribute name="trustedIpMask" type="string"/><attribute name="securityZone" type="string"/>"#,
            r#"<element name="group" unbound="true"><attribute name="name" type="string"/></element>"#,
            r#"<element name="right" unbound="true"><attribute name="name" type="string"/></element>"#,
            r#"</element></schema>"#
        ),
        "xtk:group" => concat!(
            r#"<schema name="group" namespace="xtk"><element name="group">"#,
            r#"<attribute name="id" type="long"/><attribute name="name" type="string"/><attribute name="label" type="string"/>"#,
            r#"</element></schema>"#
        ),
        "nms:recipient" => concat!(
            r#"<schema name="recipient" namespace="nms"><element name="recipient">"#,
            r#"<attribute name="id" type="long"/><attribute name="email" type="string"/><attribute name="firstName" type="string"/>"#,
            r#"<attribute name="lastName" type="string"/><attribute name="folder-id" type="long"/>"#,
            r#"<attribute name="created" type="datetime"/><attribute name="lastModified" type="datetime"/>"#,
            r#"</element></schema>"#
        ),
        "nms:rtEvent" => concat!(
            r#"<schema name="rtEvent" namespace="nms"><element name="rtEvent">"#,
            r#"<attribute name="id" type="int64"/><attribute name="type" type="string"/><attribute name="email" type="string"/>"#,
            r#"<attribute name="status" type="string"/><attribute name="created" type="datetime"/><element name="ctx"/>"#,
            r#"</element><methods>"#,
            r#"<method name="PushEvent" static="true"><parameters><param name="domEvent" type="DOMElement"/><param inout="out" name="plId" type="int64"/></parameters></method>"#,
            r#"</methods></schema>"#
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_schemas_are_well_formed_and_queryable_ones_are_served() {
        for id in [
            "xtk:session",
            "xtk:persist",
            "xtk:queryDef",
            "xtk:operator",
            "xtk:group",
            "nms:recipient",
            "nms:rtEvent",
        ] {
            let xml = compiled(id).unwrap();
            let root = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap();
            assert_eq!(root.name, "schema");
            assert_eq!(
                format!(
                    "{}:{}",
                    root.attr("namespace").unwrap(),
                    root.attr("name").unwrap()
                ),
                id
            );
        }
        for s in QUERY_SCHEMAS {
            assert!(compiled(s.id).is_some(), "{} is served", s.id);
        }
        assert!(compiled("nms:unknown").is_none());
    }
}
