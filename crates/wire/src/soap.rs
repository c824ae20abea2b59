//! SOAP 1.1 envelopes of the Campaign instance API: a hardened reader and the writers of
//! responses and faults, shared by the instance server, the migration engine's client and tests.
//!
//! Reading is done with quick-xml, which never expands entities, and refuses anything a SOAP
//! message has no use for and an attacker has: a DOCTYPE, processing instructions, comments inside
//! the envelope, declarations of an encoding other than UTF-8, unknown entities, excessive depth,
//! element, attribute or namespace counts. Parameters are read by position; names and prefixes do
//! not matter, namespaces are matched by URI.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Limits of what the reader accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_depth: usize,
    pub max_elements: usize,
    pub max_attributes: usize,
    pub max_namespace_declarations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_elements: 50_000,
            max_attributes: 64,
            max_namespace_declarations: 64,
        }
    }
}

/// Why an envelope was refused. The text is safe to return in a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

fn err(msg: impl Into<String>) -> EnvelopeError {
    EnvelopeError(msg.into())
}

/// An element with its namespace resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace URI, empty when unbound.
    pub ns: String,
    pub name: String,
    /// Attributes by local name (namespace declarations left out), in document order.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Byte offset of the element's start tag in the source (see [`line_of`]).
    pub offset: usize,
}

/// The 1-based line of a byte offset in `text` (for messages that point into a file).
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    pub fn attributes_len(&self) -> usize {
        self.attrs.len()
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn element(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    /// The concatenated text of the element's direct text children.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

/// A parsed request envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Children of `Header`, if any.
    pub header: Vec<Element>,
    /// The Body's only child: the method element.
    pub method: Element,
}

impl Envelope {
    /// `schema#Method` named by the body, e.g. `xtk:session#Logon` from `urn:xtk:session`.
    pub fn operation(&self) -> String {
        let schema = self.method.ns.strip_prefix("urn:").unwrap_or(&self.method.ns);
        format!("{schema}#{}", self.method.name)
    }

    /// Parameters by position.
    pub fn params(&self) -> Vec<&Element> {
        self.method.elements().collect()
    }

    pub fn header_text(&self, name: &str) -> Option<String> {
        self.header
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name))
            .map(Element::text)
    }
}

fn check_declaration(decl: &quick_xml::events::BytesDecl<'_>) -> Result<(), EnvelopeError> {
    if let Some(Ok(enc)) = decl.encoding() {
        let enc = enc.to_ascii_lowercase();
        if enc != "utf-8" && enc != "utf8" {
            return Err(err(format!("encoding {enc:?} is not accepted; send UTF-8")));
        }
    }
    Ok(())
}

struct Builder {
    limits: Limits,
    stack: Vec<Element>,
    elements: usize,
    ns_decls: usize,
    root: Option<Element>,
}

impl Builder {
    fn open(
        &mut self,
        ns: Result<String, EnvelopeError>,
        start: &BytesStart<'_>,
        offset: usize,
    ) -> Result<Element, EnvelopeError> {
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(err("too many elements"));
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(err("elements nested too deeply"));
        }
        let ns = ns?;
        let mut attrs = Vec::new();
        let mut count = 0;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| err(format!("malformed attribute: {e}")))?;
            count += 1;
            if count > self.limits.max_attributes {
                return Err(err("too many attributes"));
            }
            let key = attr.key.as_ref();
            if key == "xmlns" || key.starts_with("xmlns:") {
                self.ns_decls += 1;
                if self.ns_decls > self.limits.max_namespace_declarations {
                    return Err(err("too many namespace declarations"));
                }
                continue;
            }
            let local = attr.key.local_name();
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| err(format!("bad attribute value: {e}")))?;
            attrs.push((local.as_ref().to_owned(), value.into_owned()));
        }
        Ok(Element {
            ns,
            name: start.local_name().as_ref().to_owned(),
            attrs,
            children: Vec::new(),
            offset,
        })
    }

    fn close(&mut self, el: Element) -> Result<(), EnvelopeError> {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(Node::Element(el)),
            None if self.root.is_none() => self.root = Some(el),
            None => return Err(err("more than one root element")),
        }
        Ok(())
    }

    fn text(&mut self, t: &str) -> Result<(), EnvelopeError> {
        match self.stack.last_mut() {
            Some(parent) => {
                if let Some(Node::Text(prev)) = parent.children.last_mut() {
                    prev.push_str(t);
                } else {
                    parent.children.push(Node::Text(t.to_owned()));
                }
                Ok(())
            }
            None if t.trim().is_empty() => Ok(()),
            None => Err(err("text outside the root element")),
        }
    }
}

fn predefined(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

/// Parses a whole XML document into its root element, under `limits`.
pub fn parse_document(xml: &str, limits: Limits) -> Result<Element, EnvelopeError> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut b = Builder {
        limits,
        stack: Vec::new(),
        elements: 0,
        ns_decls: 0,
        root: None,
    };
    let mut first = true;
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let read = reader.read_resolved_event().map_err(|e| e.to_string());
        let (ns, event) = match read {
            Ok(pair) => pair,
            Err(e) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(offset);
                return Err(err(format!("malformed XML at line {}: {e}", line_of(xml, at))));
            }
        };
        let ns = match ns {
            ResolveResult::Bound(n) => Ok(n.as_ref().to_owned()),
            ResolveResult::Unbound => Ok(String::new()),
            ResolveResult::Unknown(p) => Err(err(format!("undeclared namespace prefix {p:?}"))),
        };
        let at_start = std::mem::replace(&mut first, false);
        match event {
            Event::Decl(d) if at_start => check_declaration(&d)?,
            Event::Decl(_) => return Err(err("an XML declaration is allowed only at the start")),
            Event::DocType(_) => return Err(err("a DOCTYPE is not allowed in a SOAP message")),
            Event::PI(_) => return Err(err("processing instructions are not allowed")),
            Event::Comment(_) if b.stack.is_empty() => {}
            Event::Comment(_) => return Err(err("comments are not allowed inside the envelope")),
            Event::Start(s) => {
                let el = b.open(ns, &s, offset)?;
                b.stack.push(el);
            }
            Event::Empty(s) => {
                let el = b.open(ns, &s, offset)?;
                b.close(el)?;
            }
            Event::End(_) => {
                let el = b.stack.pop().ok_or_else(|| err("unbalanced end tag"))?;
                b.close(el)?;
            }
            Event::Text(t) => b.text(&t.xml10_content())?,
            Event::CData(c) => b.text(&c.xml10_content())?,
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => predefined(&r).ok_or_else(|| err(format!("unknown entity &{};", &*r)))?,
                    Err(e) => return Err(err(format!("bad character reference: {e}"))),
                };
                b.text(ch.encode_utf8(&mut [0u8; 4]))?;
            }
            Event::Eof => break,
        }
    }
    if !b.stack.is_empty() {
        return Err(err("unclosed element"));
    }
    b.root.ok_or_else(|| err("empty document"))
}

/// Parses a SOAP request: one `Envelope`, an optional `Header`, a `Body` with exactly one child.
pub fn parse_envelope(xml: &str, limits: Limits) -> Result<Envelope, EnvelopeError> {
    let root = parse_document(xml, limits)?;
    if root.ns != SOAP_ENV_NS || root.name != "Envelope" {
        return Err(err("the document is not a SOAP 1.1 Envelope"));
    }
    let mut header = Vec::new();
    let mut body = None;
    for el in root.elements() {
        match (el.ns == SOAP_ENV_NS, el.name.as_str()) {
            (true, "Header") if header.is_empty() && body.is_none() => {
                header = el.elements().cloned().collect()
            }
            (true, "Body") if body.is_none() => body = Some(el),
            _ => return Err(err(format!("unexpected element {} in the Envelope", el.name))),
        }
    }
    if root
        .children
        .iter()
        .any(|n| matches!(n, Node::Text(t) if !t.trim().is_empty()))
    {
        return Err(err("text in the Envelope"));
    }
    let body = body.ok_or_else(|| err("the Envelope has no Body"))?;
    let mut methods = body.elements();
    let method = methods.next().ok_or_else(|| err("the Body is empty"))?.clone();
    if methods.next().is_some() {
        return Err(err("the Body must hold exactly one element"));
    }
    Ok(Envelope { header, method })
}

/// Whether a `SOAPAction` (header or `soapAction` URL parameter) names the operation the Body
/// holds. The action's schema part may list interfaces (`xtk:persist|xtk:session#Write`); quotes
/// around the header value are tolerated.
pub fn action_matches(action: &str, envelope: &Envelope) -> bool {
    let action = action.trim().trim_matches('"');
    let Some((schemas, method)) = action.rsplit_once('#') else {
        return false;
    };
    let body = envelope
        .method
        .ns
        .strip_prefix("urn:")
        .unwrap_or(&envelope.method.ns);
    // Interface methods name `interface|schema` on either side (`xtk:persist|xtk:session`).
    let same =
        schemas == body || schemas.split('|').any(|s| s == body) || body.split('|').any(|s| s == schemas);
    method == envelope.method.name && same
}

// ----- writing --------------------------------------------------------------------------------

/// Escapes text for element content and attribute values (both quote kinds).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A typed value of a response, written with the `xsi:type` the reference client checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    PrimaryKey(String),
    Boolean(bool),
    Byte(i8),
    Short(i16),
    /// `long` in the instance's schemas, `xsd:int` on the wire.
    Long(i32),
    /// `int64`, `xsd:long` on the wire.
    Int64(i64),
    /// ISO 8601 text, `xsd:dateTime`.
    DateTime(String),
    Date(String),
    /// Serialised XML of a DOM element, `ns:Element`.
    Element(String),
}

const ENVELOPE_OPEN: &str = "<SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema' xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:xtk:session' xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'><SOAP-ENV:Body>";
const ENVELOPE_CLOSE: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

/// A method response: `<{method}Response xmlns='{urn}'>` with the values by position.
pub fn response(method: &str, urn: &str, values: &[(&str, Value)]) -> String {
    let mut out = String::from(ENVELOPE_OPEN);
    out.push_str(&format!(
        "<{method}Response xmlns='{}' SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>",
        escape(urn)
    ));
    for (name, value) in values {
        let (ty, body, literal) = match value {
            Value::String(s) => ("xsd:string", escape(s), false),
            Value::PrimaryKey(s) => ("xsd:primarykey", escape(s), false),
            Value::Boolean(b) => (
                "xsd:boolean",
                if *b { "true".into() } else { "false".into() },
                false,
            ),
            Value::Byte(v) => ("xsd:byte", v.to_string(), false),
            Value::Short(v) => ("xsd:short", v.to_string(), false),
            Value::Long(v) => ("xsd:int", v.to_string(), false),
            Value::Int64(v) => ("xsd:long", v.to_string(), false),
            Value::DateTime(s) => ("xsd:dateTime", escape(s), false),
            Value::Date(s) => ("xsd:date", escape(s), false),
            Value::Element(xml) => ("ns:Element", xml.clone(), true),
        };
        if literal {
            out.push_str(&format!(
                "<{name} xsi:type='{ty}' SOAP-ENV:encodingStyle='http://xml.apache.org/xml-soap/literalxml'>{body}</{name}>"
            ));
        } else {
            out.push_str(&format!("<{name} xsi:type='{ty}'>{body}</{name}>"));
        }
    }
    out.push_str(&format!("</{method}Response>"));
    out.push_str(ENVELOPE_CLOSE);
    out
}

/// A fault. `faultstring` starts with the error code (`XSV-350024 ...`), which clients extract.
pub fn fault(client_side: bool, faultstring: &str, detail: &str) -> String {
    let code = if client_side {
        "SOAP-ENV:Client"
    } else {
        "SOAP-ENV:Server"
    };
    format!(
        "{ENVELOPE_OPEN}<SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring><detail>{}</detail></SOAP-ENV:Fault>{ENVELOPE_CLOSE}",
        escape(faultstring),
        escape(detail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOGON: &str = r#"<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="http://xml.apache.org/xml-soap">
 <SOAP-ENV:Header><Cookie>__sessiontoken=ST</Cookie><X-Security-Token>SEC</X-Security-Token></SOAP-ENV:Header>
 <SOAP-ENV:Body>
  <m:Logon xmlns:m="urn:xtk:session" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
   <sessiontoken xsi:type="xsd:string"></sessiontoken>
   <login xsi:type="xsd:string">admin</login>
   <password xsi:type="xsd:string">s&amp;cr&#x65;t&lt;</password>
   <parameters xsi:type="ns:Element" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml"/>
  </m:Logon></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;

    fn parse(xml: &str) -> Result<Envelope, EnvelopeError> {
        parse_envelope(xml, Limits::default())
    }

    #[test]
    fn reads_the_reference_clients_logon() {
        let env = parse(LOGON).unwrap();
        assert_eq!(env.operation(), "xtk:session#Logon");
        let p = env.params();
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].text(), "admin");
        assert_eq!(
            p[2].text(),
            "s&cret<",
            "entities and character references resolved"
        );
        assert_eq!(env.header_text("x-security-token").as_deref(), Some("SEC"));
        assert!(action_matches("xtk:session#Logon", &env));
        assert!(action_matches("\"xtk:persist|xtk:session#Logon\"", &env));
        assert!(!action_matches("xtk:session#Logoff", &env));
        assert!(!action_matches("xtk:queryDef#Logon", &env));
    }

    #[test]
    fn prefixes_do_not_matter_namespaces_do() {
        let xml = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><urn:PushEvent xmlns:urn="urn:nms:rtEvent"><urn:sessiontoken/><urn:domEvent><rtEvent type="x" email="a@b.c"/></urn:domEvent></urn:PushEvent></soap:Body></soap:Envelope>"#;
        let env = parse(xml).unwrap();
        assert_eq!(env.operation(), "nms:rtEvent#PushEvent");
        assert_eq!(
            env.params()[1].element("rtEvent").unwrap().attr("email"),
            Some("a@b.c")
        );
        let wrong_ns = xml.replace("http://schemas.xmlsoap.org/soap/envelope/", "urn:not-soap");
        assert!(parse(&wrong_ns).is_err());
    }

    #[test]
    fn hostile_documents_are_refused() {
        let cases = [
            ("doctype", format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{LOGON}")),
            ("xxe", r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m xmlns="urn:a">&e;</m></SOAP-ENV:Body></SOAP-ENV:Envelope>"#.to_owned()),
            ("undeclared entity", LOGON.replace("admin", "&lol;")),
            ("processing instruction", LOGON.replace("<SOAP-ENV:Body>", "<SOAP-ENV:Body><?evil x?>")),
            ("comment splitting a credential", LOGON.replace("admin", "ad<!-- -->min")),
            ("utf-16 declaration", format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{LOGON}")),
            ("utf-7 declaration", format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{LOGON}")),
            ("two body children", LOGON.replace("</m:Logon>", "</m:Logon><m:Logoff xmlns:m=\"urn:xtk:session\"/>")),
            ("no body", "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"/>".to_owned()),
            ("undeclared prefix", LOGON.replace("<m:Logon xmlns:m=\"urn:xtk:session\"", "<q:Logon")),
            ("unbalanced", LOGON.replace("</SOAP-ENV:Envelope>", "")),
        ];
        for (what, xml) in cases {
            assert!(parse(&xml).is_err(), "{what} must be refused");
        }
        // A declaration of UTF-8 at the start is fine.
        assert!(parse(&format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{LOGON}")).is_ok());
        // CDATA is text.
        let cdata = LOGON.replace(">admin<", "><![CDATA[ad]]>min<");
        assert_eq!(parse(&cdata).unwrap().params()[1].text(), "admin");
    }

    #[test]
    fn limits_hold() {
        let deep = format!("{}{}", "<a>".repeat(1_000_000), "</a>".repeat(1_000_000));
        assert!(parse_document(&deep, Limits::default())
            .unwrap_err()
            .0
            .contains("deeply"));
        let mut many_ns = String::from("<a");
        for i in 0..100_000 {
            many_ns.push_str(&format!(" xmlns:p{i}=\"urn:{i}\""));
        }
        many_ns.push_str("/>");
        assert!(parse_document(&many_ns, Limits::default()).is_err());
        let wide = format!("<a>{}</a>", "<b/>".repeat(60_000));
        assert!(parse_document(&wide, Limits::default())
            .unwrap_err()
            .0
            .contains("too many elements"));
        // Billion laughs cannot even start: no DOCTYPE, no custom entity.
        let laughs =
            "<!DOCTYPE l [<!ENTITY l \"lol\"><!ENTITY l2 \"&l;&l;&l;&l;&l;&l;&l;&l;&l;&l;\">]><a>&l2;</a>";
        assert!(parse_document(laughs, Limits::default()).is_err());
    }

    #[test]
    fn responses_and_faults_round_trip_through_the_reader() {
        let xml = response(
            "Logon",
            "urn:xtk:session",
            &[
                ("pstrSessionToken", Value::String("a<b&'\"".into())),
                (
                    "pSessionInfo",
                    Value::Element("<sessionInfo><serverInfo buildNumber=\"1\"/></sessionInfo>".into()),
                ),
                ("n", Value::Long(7)),
            ],
        );
        assert!(xml.contains("<pstrSessionToken xsi:type='xsd:string'>"));
        let root = parse_document(&xml, Limits::default()).unwrap();
        let body = root.element("Body").unwrap();
        let resp = body.element("LogonResponse").unwrap();
        assert_eq!(resp.ns, "urn:xtk:session");
        let values: Vec<&Element> = resp.elements().collect();
        assert_eq!(values[0].text(), "a<b&'\"");
        assert!(values[1].element("sessionInfo").is_some());
        let f = fault(true, "XSV-350024 Invalid login or password", "Logon <failed>");
        let root = parse_document(&f, Limits::default()).unwrap();
        let fault = root.element("Body").unwrap().element("Fault").unwrap();
        assert_eq!(
            fault.element("faultstring").unwrap().text(),
            "XSV-350024 Invalid login or password"
        );
        assert_eq!(fault.element("detail").unwrap().text(), "Logon <failed>");
    }

    proptest! {
        #[test]
        fn any_input_is_answered_without_panic(s in ".{0,400}") {
            let _ = parse_envelope(&s, Limits::default());
        }

        #[test]
        fn escaped_text_round_trips(s in "\\PC{0,60}") {
            let xml = format!("<a>{}</a>", escape(&s));
            let root = parse_document(&xml, Limits::default()).unwrap();
            prop_assert_eq!(root.text().replace("\r\n", "\n"), s.replace("\r\n", "\n").replace('\r', "\n"));
        }

        #[test]
        fn mutated_logons_never_panic(cut in 0usize..800, insert in "[<>&;!?/\\[\\]-]{0,4}") {
            let mut s = LOGON.to_owned();
            let at = s.char_indices().map(|(i, _)| i).nth(cut % LOGON.chars().count()).unwrap_or(0);
            s.insert_str(at, &insert);
            let _ = parse_envelope(&s, Limits::default());
        }
    }
}
