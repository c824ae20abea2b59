//! WSDL 1.1 of a schema's methods (`/nl/jsp/schemawsdl.jsp?schema=...`): what SOAP toolkits
//! (zeep, the vendor's console generators) read to build their calls. Generated from the compiled
//! schema the instance serves, so the description and the router cannot disagree.

use ims_wire::soap::{escape, parse_document, Element, Limits};

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

/// The WSDL document of schema `id`, whose router is at `location`; `None` for schemas we do not serve.
pub fn wsdl(id: &str, location: &str) -> Option<String> {
    let compiled = crate::schemas::compiled(id)?;
    let schema = parse_document(compiled, Limits::default()).ok()?;
    let urn = format!("urn:{id}");
    let service = id.replace(':', "_");
    let methods: Vec<&Element> = schema
        .element("methods")
        .map(|m| m.elements().filter(|e| e.name == "method").collect())
        .unwrap_or_default();
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut binding_ops = String::new();
    for m in &methods {
        let name = m.attr("name").unwrap_or_default();
        let params: Vec<&Element> = m
            .element("parameters")
            .map(|p| p.elements().collect())
            .unwrap_or_default();
        let mut input = String::from(r#"<wsdl:part name="sessiontoken" type="xsd:string"/>"#);
        if m.attr("static") != Some("true") {
            input.push_str(r#"<wsdl:part name="document" type="tns:Element"/>"#);
        }
        let mut output = String::new();
        for p in &params {
            let part = format!(
                r#"<wsdl:part name="{}" type="{}"/>"#,
                escape(p.attr("name").unwrap_or_default()),
                xsd_type(p.attr("type").unwrap_or_default())
            );
            if p.attr("inout") == Some("out") {
                output.push_str(&part);
            } else {
                input.push_str(&part);
            }
        }
        messages.push_str(&format!(
            r#"<wsdl:message name="{name}In">{input}</wsdl:message><wsdl:message name="{name}Out">{output}</wsdl:message>"#
        ));
        port_ops.push_str(&format!(
            r#"<wsdl:operation name="{name}"><wsdl:input message="tns:{name}In"/><wsdl:output message="tns:{name}Out"/></wsdl:operation>"#
        ));
        let body = format!(
            r#"<soap:body use="encoded" namespace="{urn}" encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"/>"#
        );
        binding_ops.push_str(&format!(
            r#"<wsdl:operation name="{name}"><soap:operation soapAction="{id}#{name}" style="rpc"/><wsdl:input>{body}</wsdl:input><wsdl:output>{body}</wsdl:output></wsdl:operation>"#
        ));
    }
    Some(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" "#,
            r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:tns="{urn}" targetNamespace="{urn}" name="{service}">"#,
            r#"<wsdl:types><xsd:schema targetNamespace="{urn}"><xsd:complexType name="Element"><xsd:sequence>"#,
            r#"<xsd:any processContents="lax" minOccurs="0" maxOccurs="unbounded"/></xsd:sequence>"#,
            r#"<xsd:anyAttribute processContents="lax"/></xsd:complexType></xsd:schema></wsdl:types>"#,
            r#"{messages}<wsdl:portType name="{service}PortType">{port_ops}</wsdl:portType>"#,
            r#"<wsdl:binding name="{service}Binding" type="tns:{service}PortType"><soap:binding style="rpc" transport="http://schemas.xmlsoap.org/soap/http"/>{binding_ops}</wsdl:binding>"#,
            r#"<wsdl:service name="{service}"><wsdl:port name="{service}Port" binding="tns:{service}Binding"><soap:address location="{location}"/></wsdl:port></wsdl:service>"#,
            r#"</wsdl:definitions>"#
        ),
        urn = escape(&urn),
        service = escape(&service),
        messages = messages,
        port_ops = port_ops,
        binding_ops = binding_ops,
        location = escape(location)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_of_rt_event_describes_push_event() {
        let doc = wsdl("nms:rtEvent", "https://mc.example/nl/jsp/soaprouter.jsp").unwrap();
        let root = parse_document(&doc, Limits::default()).unwrap();
        assert_eq!(root.name, "definitions");
        assert_eq!(root.attr("targetNamespace"), Some("urn:nms:rtEvent"));
        let binding = root.element("binding").unwrap();
        let op = binding.element("operation").unwrap();
        assert_eq!(op.attr("name"), Some("PushEvent"));
        assert_eq!(
            op.element("operation").unwrap().attr("soapAction"),
            Some("nms:rtEvent#PushEvent")
        );
        let input = root
            .elements()
            .find(|e| e.attr("name") == Some("PushEventIn"))
            .unwrap();
        let parts: Vec<_> = input.elements().filter_map(|p| p.attr("name")).collect();
        assert_eq!(parts, vec!["sessiontoken", "domEvent"]);
        assert!(wsdl("nms:nothing", "x").is_none());
    }
}
