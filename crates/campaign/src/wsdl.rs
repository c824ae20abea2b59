//! What a schema's methods look like to SOAP toolkits (zeep, the vendor's console generators):
//! each method's input and output parts with their XML Schema types, read from the compiled
//! schema the instance serves, so the description and the router cannot disagree. The WSDL
//! document that carries it (`/nl/jsp/schemawsdl.jsp?schema=...`) is written at the HTTP edge.

use ims_wire::soap::{parse_document, Element, Limits};

/// The methods of one served schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaService {
    /// The schema (`nms:rtEvent`): its URN is `urn:<id>`.
    pub id: String,
    pub methods: Vec<MethodParts>,
}

/// One method's call: what it takes and what it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodParts {
    pub name: String,
    pub inputs: Vec<Part>,
    pub outputs: Vec<Part>,
}

/// A parameter of a call and its XML Schema type (`xsd:string`, or `tns:Element` for a DOM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub xsd_type: &'static str,
}

fn xsd_type(t: &str) -> &'static str {
    match t {
        "string" | "memo" => "xsd:string",
        "boolean" => "xsd:boolean",
        "byte" => "xsd:byte",
        "short" => "xsd:short",
        "long" => "xsd:int",
        "int64" => "xsd:long",
        "datetime" => "xsd:dateTime",
        "date" => "xsd:date",
        // DOM parameters: any XML content, declared in the WSDL's types.
        _ => "tns:Element",
    }
}

/// The methods of schema `id`; `None` for schemas we do not serve. Every call takes the session
/// token first and, unless the method is static, the document it applies to.
pub fn describe(id: &str) -> Option<SchemaService> {
    let compiled = crate::schemas::compiled(id)?;
    let schema = parse_document(compiled, Limits::default()).ok()?;
    let methods: Vec<&Element> = schema
        .element("methods")
        .map(|m| m.elements().filter(|e| e.name == "method").collect())
        .unwrap_or_default();
    let part = |name: &str, xsd_type: &'static str| Part {
        name: name.to_owned(),
        xsd_type,
    };
    let methods = methods
        .iter()
        .map(|m| {
            let mut inputs = vec![part("sessiontoken", "xsd:string")];
            if m.attr("static") != Some("true") {
                inputs.push(part("document", "tns:Element"));
            }
            let mut outputs = Vec::new();
            for p in m.element("parameters").iter().flat_map(|p| p.elements()) {
                let typed = part(
                    p.attr("name").unwrap_or_default(),
                    xsd_type(p.attr("type").unwrap_or_default()),
                );
                if p.attr("inout") == Some("out") {
                    outputs.push(typed);
                } else {
                    inputs.push(typed);
                }
            }
            MethodParts {
                name: m.attr("name").unwrap_or_default().to_owned(),
                inputs,
                outputs,
            }
        })
        .collect();
    Some(SchemaService {
        id: id.to_owned(),
        methods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rt_event_describes_push_event() {
        let service = describe("nms:rtEvent").unwrap();
        assert_eq!(service.id, "nms:rtEvent");
        let push = &service.methods[0];
        assert_eq!(push.name, "PushEvent");
        let inputs: Vec<_> = push.inputs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(inputs, vec!["sessiontoken", "domEvent"]);
        assert!(describe("nms:nothing").is_none());
    }
}
