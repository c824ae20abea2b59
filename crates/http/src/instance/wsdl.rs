//! WSDL 1.1 of a served schema's methods, written from the instance's description of them
//! ([`ims_campaign::wsdl::describe`]) for `/nl/jsp/schemawsdl.jsp?schema=...`.

use ims_campaign::wsdl::{Part, SchemaService};
use ims_wire::soap::escape;

/// The WSDL document of schema `id`, whose router is at `location`; `None` for schemas we do not
/// serve.
pub(crate) fn wsdl(id: &str, location: &str) -> Option<String> {
    ims_campaign::wsdl::describe(id).map(|service| document(&service, location))
}

fn parts(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|p| format!(r#"<wsdl:part name="{}" type="{}"/>"#, escape(&p.name), p.xsd_type))
        .collect()
}

fn document(service_of: &SchemaService, location: &str) -> String {
    let id = &service_of.id;
    let urn = format!("urn:{id}");
    let service = id.replace(':', "_");
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut binding_ops = String::new();
    for m in &service_of.methods {
        let name = &m.name;
        let input = parts(&m.inputs);
        let output = parts(&m.outputs);
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
    format!(
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ims_wire::soap::{parse_document, Limits};

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
