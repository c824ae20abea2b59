//! The instance's configuration in the vendor's form: `serverConf.xml` (shared by the instances
//! of a server: the `imsConfig` switches) and `config-<instance>.xml` (one instance: its own IMS
//! credential, set with `-setimsoauth`). A real file carries much more (`dataStore`, `web`,
//! `module`, `mta`, ...): elements outside `shared/imsConfig` are not read, and are kept as they
//! are when the file is written (only the `imsConfig` element is replaced). Inside `imsConfig`
//! reading is strict: an unknown element or attribute, a value that is not what the key takes, or
//! broken XML is an error naming the file, the line and the key, and the instance does not start
//! on a guess.

use ims_core::secret::Secret;
use ims_wire::soap::{escape, line_of, parse_document, Element, Limits};

use crate::connect::ImsAccount;
use crate::version::Build;
use ims_wire::association::AssociationMask;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// The `imsConfig` switches of `serverConf.xml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ImsSwitches {
    /// `nonIMSOperatorMgmtInClientConsole/@nonIMSOperatorMgmtInClientConsoleRestricted`
    pub operator_management_restricted: bool,
    /// `nonIMSAuthnAPI/@disableAPI`
    pub native_api_disabled: bool,
    /// `nonIMSAuthnAPI/allowOperator/@name`, each entry possibly `a|b`; empty means the default.
    pub allow_list: Vec<String>,
}

/// The instance's own IMS credential (`-setimsoauth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImsOAuth {
    pub org_id: String,
    pub client_id: String,
    pub technical_account_id: String,
    /// As stored: sealed under the data directory's master key (`enc:...`).
    pub sealed_secret: String,
}

struct Reader<'a> {
    file: &'a str,
    text: &'a str,
}

impl Reader<'_> {
    fn error(&self, el: &Element, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: line_of(self.text, el.offset),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn parse(&self) -> Result<Element, ConfigError> {
        parse_document(self.text, Limits::default()).map_err(|e| ConfigError {
            file: self.file.to_owned(),
            line: e
                .0
                .split("line ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            key: "(document)".into(),
            message: e.0,
        })
    }

    /// Refuses attributes other than `allowed`.
    fn only_attrs(&self, el: &Element, path: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        match el.attrs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(self.error(el, &format!("{path}/@{k}"), "unknown attribute")),
            None => Ok(()),
        }
    }

    fn only_children(&self, el: &Element, path: &str, allowed: &[&str]) -> Result<(), ConfigError> {
        match el.elements().find(|c| !allowed.contains(&c.name.as_str())) {
            Some(c) => Err(self.error(c, &format!("{path}/{}", c.name), "unknown element")),
            None => Ok(()),
        }
    }

    fn boolean(&self, el: &Element, path: &str, attr: &str) -> Result<bool, ConfigError> {
        match el.attr(attr) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(self.error(
                el,
                &format!("{path}/@{attr}"),
                format!("expected true or false, found {other:?}"),
            )),
        }
    }
}

/// The restriction elements one file sets. `config-<instance>.xml` may carry them too: each
/// element it has replaces the shared one from `serverConf.xml` for that instance, as the
/// vendor's instance files override the server's.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SwitchElements {
    /// `nonIMSOperatorMgmtInClientConsole`, when present.
    pub operator_management_restricted: Option<bool>,
    /// `nonIMSAuthnAPI` (`disableAPI` and its allow-list), when present.
    pub native_api: Option<(bool, Vec<String>)>,
}

impl SwitchElements {
    /// `base` with these elements laid over it.
    pub fn over(&self, base: &ImsSwitches) -> ImsSwitches {
        let mut out = base.clone();
        if let Some(ui) = self.operator_management_restricted {
            out.operator_management_restricted = ui;
        }
        if let Some((disabled, allow)) = &self.native_api {
            out.native_api_disabled = *disabled;
            out.allow_list = allow.clone();
        }
        out
    }

    /// Every element, as `switches` has them.
    pub fn all(switches: &ImsSwitches) -> Self {
        SwitchElements {
            operator_management_restricted: Some(switches.operator_management_restricted),
            native_api: Some((switches.native_api_disabled, switches.allow_list.clone())),
        }
    }
}

/// The restriction elements under `imsConfig`; `build` decides whether they may be switched on.
fn read_switch_elements(
    r: &Reader<'_>,
    ims: &Element,
    base: &str,
    build: &Build,
) -> Result<SwitchElements, ConfigError> {
    let mut out = SwitchElements::default();
    let refuse_on_build = |el: &Element, path: &str| {
        r.error(
            el,
            path,
            format!(
                "build {build} has no restriction switches; builds that do: {}",
                Build::RESTRICTION_BUILDS
            ),
        )
    };
    if let Some(ui) = ims.element("nonIMSOperatorMgmtInClientConsole") {
        let path = format!("{base}/nonIMSOperatorMgmtInClientConsole");
        r.only_attrs(ui, &path, &["nonIMSOperatorMgmtInClientConsoleRestricted"])?;
        let on = r.boolean(ui, &path, "nonIMSOperatorMgmtInClientConsoleRestricted")?;
        if on && !build.supports_restrictions() {
            return Err(refuse_on_build(ui, &path));
        }
        out.operator_management_restricted = Some(on);
    }
    if let Some(api) = ims.element("nonIMSAuthnAPI") {
        let path = format!("{base}/nonIMSAuthnAPI");
        r.only_attrs(api, &path, &["disableAPI"])?;
        r.only_children(api, &path, &["allowOperator"])?;
        let disabled = r.boolean(api, &path, "disableAPI")?;
        if disabled && !build.supports_restrictions() {
            return Err(refuse_on_build(api, &path));
        }
        let mut allow_list = Vec::new();
        for allow in api.elements() {
            let apath = format!("{path}/allowOperator");
            r.only_attrs(allow, &apath, &["name"])?;
            let name = allow.attr("name").map(str::trim).unwrap_or_default();
            if !ims_wire::operators::valid_allow_entry(name) {
                return Err(r.error(
                    allow,
                    &format!("{apath}/@name"),
                    "an operator name, or names separated by |",
                ));
            }
            allow_list.push(name.to_owned());
        }
        out.native_api = Some((disabled, allow_list));
    }
    Ok(out)
}

/// The vendor spells the root both ways in its samples.
fn is_root(el: &Element) -> bool {
    el.name == "serverConf" || el.name == "serverconf"
}

/// The `imsConfig` element of a configuration file, if any. What else the file holds is named
/// in a notice and left alone.
fn ims_config<'e>(
    r: &Reader<'_>,
    root: &'e Element,
    allowed: &[&str],
) -> Result<Option<&'e Element>, ConfigError> {
    if !is_root(root) {
        return Err(r.error(root, &root.name, "the root element must be serverConf"));
    }
    let shared = root.element("shared");
    let mut kept: Vec<String> = root
        .elements()
        .filter(|c| c.name != "shared")
        .map(|c| c.name.clone())
        .collect();
    kept.extend(
        shared
            .into_iter()
            .flat_map(Element::elements)
            .filter(|c| c.name != "imsConfig")
            .map(|c| format!("shared/{}", c.name)),
    );
    if !kept.is_empty() {
        kept.dedup();
        tracing::info!(file = r.file, kept = %kept.join(", "), "configuration elements kept as they are, not read here");
    }
    let Some(ims) = shared.and_then(|s| s.element("imsConfig")) else {
        return Ok(None);
    };
    r.only_attrs(ims, IMS_CONFIG, &[])?;
    r.only_children(ims, IMS_CONFIG, allowed)?;
    Ok(Some(ims))
}

const IMS_CONFIG: &str = "serverConf/shared/imsConfig";
const SWITCH_ELEMENTS: [&str; 2] = ["nonIMSOperatorMgmtInClientConsole", "nonIMSAuthnAPI"];

/// Reads `serverConf.xml`. `build` decides whether the switches may be set at all.
pub fn read_server_conf(file: &str, text: &str, build: &Build) -> Result<ImsSwitches, ConfigError> {
    let r = Reader { file, text };
    let root = r.parse()?;
    match ims_config(&r, &root, &SWITCH_ELEMENTS)? {
        Some(ims) => Ok(read_switch_elements(&r, ims, IMS_CONFIG, build)?.over(&ImsSwitches::default())),
        None => Ok(ImsSwitches::default()),
    }
}

/// What `config-<instance>.xml` holds: the instance's IMS credential and its own restriction
/// elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceConf {
    pub oauth: Option<ImsOAuth>,
    /// How people sign in through the IMS (`imsAccount`): at most one per instance.
    pub account: Option<ImsAccount>,
    pub switches: SwitchElements,
}

/// Reads `config-<instance>.xml`.
pub fn read_instance_conf(file: &str, text: &str, build: &Build) -> Result<InstanceConf, ConfigError> {
    let r = Reader { file, text };
    let root = r.parse()?;
    let mut allowed = SWITCH_ELEMENTS.to_vec();
    allowed.extend(["imsOAuth", ACCOUNT]);
    let Some(ims) = ims_config(&r, &root, &allowed)? else {
        return Ok(InstanceConf::default());
    };
    let switches = read_switch_elements(&r, ims, IMS_CONFIG, build)?;
    let account = read_account(&r, ims)?;
    let Some(o) = ims.element("imsOAuth") else {
        return Ok(InstanceConf {
            oauth: None,
            account,
            switches,
        });
    };
    let path = format!("{IMS_CONFIG}/imsOAuth");
    r.only_attrs(
        o,
        &path,
        &["orgId", "clientId", "technicalAccountId", "clientSecret"],
    )?;
    let get = |k: &str| -> Result<String, ConfigError> {
        o.attr(k)
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| r.error(o, &format!("{path}/@{k}"), "missing"))
    };
    let oauth = ImsOAuth {
        org_id: get("orgId")?,
        client_id: get("clientId")?,
        technical_account_id: get("technicalAccountId")?,
        sealed_secret: get("clientSecret")?,
    };
    if !oauth.org_id.ends_with("@AdobeOrg") {
        return Err(r.error(
            o,
            &format!("{path}/@orgId"),
            "an organisation id ends with @AdobeOrg",
        ));
    }
    if !oauth.sealed_secret.starts_with("enc:") {
        return Err(r.error(
            o,
            &format!("{path}/@clientSecret"),
            "the secret must be stored sealed (set it with -setimsoauth)",
        ));
    }
    Ok(InstanceConf {
        oauth: Some(oauth),
        account,
        switches,
    })
}

const ACCOUNT: &str = "imsAccount";

/// The `imsAccount` element: the IMS people sign in through. An instance has exactly one IMS
/// configuration, so a second element is an error naming both lines.
fn read_account(r: &Reader<'_>, ims: &Element) -> Result<Option<ImsAccount>, ConfigError> {
    let mut found = ims.elements().filter(|e| e.name == ACCOUNT);
    let Some(el) = found.next() else {
        return Ok(None);
    };
    let path = format!("{IMS_CONFIG}/{ACCOUNT}");
    if let Some(second) = found.next() {
        return Err(r.error(
            second,
            &path,
            format!(
                "a second IMS configuration (the first is on line {}); an instance has exactly one",
                line_of(r.text, el.offset)
            ),
        ));
    }
    r.only_attrs(
        el,
        &path,
        &[
            "url",
            "orgId",
            "clientId",
            "clientSecret",
            "callbackUrl",
            "associationMask",
            "productContext",
            "scopes",
        ],
    )?;
    let required = |k: &str| -> Result<String, ConfigError> {
        el.attr(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| r.error(el, &format!("{path}/@{k}"), "missing"))
    };
    let optional = |k: &str| {
        el.attr(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let mask = AssociationMask::parse(&required("associationMask")?)
        .map_err(|m| r.error(el, &format!("{path}/@associationMask"), m))?;
    let account = ImsAccount {
        url: required("url")?,
        org_id: required("orgId")?,
        client_id: optional("clientId"),
        sealed_secret: optional("clientSecret"),
        callback_url: required("callbackUrl")?,
        mask,
        product_context: optional("productContext")
            .unwrap_or_else(|| crate::connect::DEFAULT_PRODUCT_CONTEXT.to_owned()),
        scopes: match optional("scopes") {
            Some(list) => list
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => crate::connect::DEFAULT_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        },
    };
    crate::connect::check_account(&account).map_err(|(key, m)| r.error(el, &format!("{path}/@{key}"), m))?;
    Ok(Some(account))
}

/// The restriction elements as XML lines under `imsConfig`.
fn switch_xml(elements: &SwitchElements) -> String {
    let mut out = String::new();
    if let Some(ui) = elements.operator_management_restricted {
        out.push_str(&format!(
            "      <nonIMSOperatorMgmtInClientConsole nonIMSOperatorMgmtInClientConsoleRestricted=\"{ui}\"/>\n"
        ));
    }
    if let Some((disabled, allow_list)) = &elements.native_api {
        out.push_str(&format!("      <nonIMSAuthnAPI disableAPI=\"{disabled}\">\n"));
        let entries: Vec<&str> = if allow_list.is_empty() {
            ims_wire::operators::DEFAULT_ALLOW_LIST.to_vec()
        } else {
            allow_list.iter().map(String::as_str).collect()
        };
        for entry in entries {
            out.push_str(&format!("        <allowOperator name=\"{}\"/>\n", escape(entry)));
        }
        out.push_str("      </nonIMSAuthnAPI>\n");
    }
    out
}

fn conf_file(ims_config: &str) -> String {
    format!("<serverConf>\n  <shared>\n    <imsConfig>\n{ims_config}    </imsConfig>\n  </shared>\n</serverConf>\n")
}

/// `existing` (a configuration file as it stands) with its `shared/imsConfig` element replaced
/// by one holding `inner`, or added where it is missing; every other byte kept. A new file when
/// there is none, or when it is not one this reader reads (then writing it whole is what the
/// caller asked for anyway: such a file would not have been read).
fn with_ims_config(existing: Option<&str>, inner: &str) -> String {
    let spliced = existing.and_then(|text| {
        let root = parse_document(text, Limits::default()).ok().filter(is_root)?;
        let element = format!("<imsConfig>\n{inner}    </imsConfig>");
        let Some(shared) = root.element("shared") else {
            let close = text.rfind(&format!("</{}", root.name))?;
            return Some(format!(
                "{}  <shared>\n    {element}\n  </shared>\n{}",
                &text[..close],
                &text[close..]
            ));
        };
        if let Some(ims) = shared.element("imsConfig") {
            let end = element_end(text, ims.offset, "imsConfig")?;
            return Some(format!("{}{element}{}", &text[..ims.offset], &text[end..]));
        }
        let tag_end = start_tag_end(text, shared.offset)?;
        if text[..tag_end].ends_with("/>") {
            return Some(format!(
                "{}>\n    {element}\n  </shared>{}",
                text[..tag_end - 2].trim_end(),
                &text[tag_end..]
            ));
        }
        let close = tag_end + text[tag_end..].find("</shared")?;
        Some(format!("{}  {element}\n  {}", &text[..close], &text[close..]))
    });
    spliced.unwrap_or_else(|| conf_file(inner))
}

/// Just after the `>` of the start tag that begins at `start`, quotes respected.
fn start_tag_end(text: &str, start: usize) -> Option<usize> {
    let mut quote = None;
    for (i, c) in text.get(start..)?.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(start + i + 1),
            _ => {}
        }
    }
    None
}

/// Just after the end of element `name` that begins at `start` (its own end tag, or the start
/// tag itself when it closes itself). The elements we replace never nest in themselves.
fn element_end(text: &str, start: usize, name: &str) -> Option<usize> {
    let tag_end = start_tag_end(text, start)?;
    if text[..tag_end].ends_with("/>") {
        return Some(tag_end);
    }
    let close = tag_end + text[tag_end..].find(&format!("</{name}"))?;
    Some(close + text[close..].find('>')? + 1)
}

/// `config-<instance>.xml` holding `conf`: `existing` (the file as it stands, if any) with its
/// `imsConfig` element replaced.
pub fn write_instance_conf(existing: Option<&str>, conf: &InstanceConf) -> String {
    let mut inner = String::new();
    if let Some(oauth) = &conf.oauth {
        inner.push_str(&format!(
            "      <imsOAuth orgId=\"{}\" clientId=\"{}\" technicalAccountId=\"{}\" clientSecret=\"{}\"/>\n",
            escape(&oauth.org_id),
            escape(&oauth.client_id),
            escape(&oauth.technical_account_id),
            escape(&oauth.sealed_secret)
        ));
    }
    if let Some(a) = &conf.account {
        let mut attrs = vec![("url", a.url.clone()), ("orgId", a.org_id.clone())];
        if let (Some(id), Some(secret)) = (&a.client_id, &a.sealed_secret) {
            attrs.push(("clientId", id.clone()));
            attrs.push(("clientSecret", secret.clone()));
        }
        attrs.extend([
            ("callbackUrl", a.callback_url.clone()),
            ("associationMask", a.mask.as_str().to_owned()),
            ("productContext", a.product_context.clone()),
            ("scopes", a.scopes.join(",")),
        ]);
        inner.push_str("      <imsAccount");
        for (k, v) in attrs {
            inner.push_str(&format!("\n          {k}=\"{}\"", escape(&v)));
        }
        inner.push_str("/>\n");
    }
    inner.push_str(&switch_xml(&conf.switches));
    with_ims_config(existing, &inner)
}

/// `serverConf.xml` holding `switches`: `existing` (the file as it stands, if any) with its
/// `imsConfig` element replaced. An empty allow-list is written as the default one, which it
/// stands for.
pub fn write_server_conf(existing: Option<&str>, switches: &ImsSwitches) -> String {
    with_ims_config(existing, &switch_xml(&SwitchElements::all(switches)))
}

/// Parses the vendor's `-setimsoauth:<org-id>/<client-id>/<technical-account-id>/<client-secret>`.
pub fn parse_setimsoauth(value: &str) -> Result<(String, String, String, Secret), String> {
    let parts: Vec<&str> = value.splitn(4, '/').collect();
    match parts.as_slice() {
        [org, client, ta, secret] if ![org, client, ta, secret].iter().any(|p| p.trim().is_empty()) => {
            if !org.ends_with("@AdobeOrg") {
                return Err(format!("{org:?} is not an organisation id (…@AdobeOrg)"));
            }
            Ok((
                org.to_string(),
                client.to_string(),
                ta.to_string(),
                Secret::new(*secret),
            ))
        }
        _ => Err("expected -setimsoauth:<org-id>/<client-id>/<technical-account-id>/<client-secret>".into()),
    }
}

/// The `serverConf.xml` a new installation starts with: switches present and off.
pub const DEFAULT_SERVER_CONF: &str = r#"<serverConf>
  <shared>
    <imsConfig>
      <nonIMSOperatorMgmtInClientConsole nonIMSOperatorMgmtInClientConsoleRestricted="false"/>
      <nonIMSAuthnAPI disableAPI="false">
        <allowOperator name="admin"/>
        <allowOperator name="aemserver"/>
        <allowOperator name="campaign-loginmonitor"/>
        <allowOperator name="internal|monitoring"/>
      </nonIMSAuthnAPI>
    </imsConfig>
  </shared>
</serverConf>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Build {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_reads_back() {
        let s = read_server_conf("serverConf.xml", DEFAULT_SERVER_CONF, &b("7.4.1")).unwrap();
        assert!(!s.native_api_disabled && !s.operator_management_restricted);
        assert_eq!(
            s.allow_list,
            vec![
                "admin",
                "aemserver",
                "campaign-loginmonitor",
                "internal|monitoring"
            ]
        );
    }

    #[test]
    fn written_switches_read_back() {
        assert_eq!(
            write_server_conf(None, &ImsSwitches::default()),
            DEFAULT_SERVER_CONF
        );
        let switches = ImsSwitches {
            operator_management_restricted: true,
            native_api_disabled: true,
            allow_list: vec!["admin".into(), "svc-a|svc-b".into()],
        };
        let text = write_server_conf(None, &switches);
        assert_eq!(
            read_server_conf("serverConf.xml", &text, &b("8.5.2")).unwrap(),
            switches
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let typo = DEFAULT_SERVER_CONF.replace("disableAPI=\"false\"", "disableApi=\"false\"");
        let e = read_server_conf("serverConf.xml", &typo, &b("7.4.1")).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_str()),
            (
                "serverConf.xml",
                5,
                "serverConf/shared/imsConfig/nonIMSAuthnAPI/@disableApi"
            )
        );
        let bad_value = DEFAULT_SERVER_CONF.replace("disableAPI=\"false\"", "disableAPI=\"yes\"");
        let e = read_server_conf("serverConf.xml", &bad_value, &b("7.4.1")).unwrap_err();
        assert!(e.message.contains("true or false") && e.line == 5, "{e}");
        let broken = DEFAULT_SERVER_CONF.replace("</imsConfig>", "");
        let e = read_server_conf("serverConf.xml", &broken, &b("7.4.1")).unwrap_err();
        assert!(e.to_string().starts_with("serverConf.xml:"), "{e}");
        // Inside imsConfig, what we act on, an unknown element is an error; outside it, a
        // vendor file's own elements are kept (`a_vendor_shaped_server_conf_...`).
        let unknown = DEFAULT_SERVER_CONF.replace("<imsConfig>", "<imsConfig>\n      <mystery/>");
        let e = read_server_conf("serverConf.xml", &unknown, &b("7.4.1")).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (4, "serverConf/shared/imsConfig/mystery")
        );
    }

    /// A `serverConf.xml` shaped like the vendor's: prolog, comments, the lower-case root, the
    /// shared parameters and the process sections with attributes of their own (`_autoStart`
    /// as the vendor's samples use to disable a process), and the switches switched on.
    const VENDOR_SERVER_CONF: &str = r#"<?xml version='1.0'?>
<!-- Configuration of the server: shared parameters, then one section per process. -->
<serverconf>
  <shared>
    <authentication checkIPConsistent="false" defaultMode="nl" longSessionTimeOutSec="1296000"
                    securityTimeOutSec="86400" sessionCacheSec="600" sessionTimeOutSec="86400">
      <xtk internalPassword="@ZBcK7uX0e2Tfe" internalSecurityZone="lan"/>
    </authentication>
    <dataStore hosts="*" lang="en_US" uploadAllowlist=".+">
      <mapping logical="*" physical="default"/>
      <dataSource name="default">
        <dbcnx provider="PostgreSQL" server="db.internal" login="neolane:campaign" password="@XYZ" dbSchema="public"/>
        <pool aliveTestDelaySec="600" freeCnx="5" maxCnx="50"/>
      </dataSource>
      <virtualDir name="images" path="/usr/local/neolane/nl6/var/res/$(INSTANCE_NAME)/img/"/>
    </dataStore>
    <proxyConfig enabled="false" override="localhost*"/>
    <threadPool maxThreadCount="50"/>
    <urlPermission action="blocking" debugTrace="false">
      <url dnsSuffix="example.com" urlRegEx=".*"/>
    </urlPermission>
    <securityZone name="public" label="Public Network" allowDebug="false" allowHTTP="false">
      <subNetwork name="all" label="All addresses" mask="*" proxy="127.0.0.1, ::1"/>
    </securityZone>
    <imsConfig>
      <nonIMSOperatorMgmtInClientConsole nonIMSOperatorMgmtInClientConsoleRestricted="true"/>
      <nonIMSAuthnAPI disableAPI="true">
        <allowOperator name="admin"/>
        <allowOperator name="crm-sync"/>
      </nonIMSAuthnAPI>
    </imsConfig>
  </shared>
  <web httpAllowed="false"><jsp classpath="..." maxThreads="75"/></web>
  <module defaultNameSpace="cus"/>
  <mta _autoStart="true" statServerAddress="localhost"><child maxMsgPerSession="1000"/></mta>
  <wfserver autoStart="true"/>
  <inMail autoStart="false"/>
  <stat autoStart="true"/>
  <syslogd maxNumberOfLoggingThreads="5"/>
  <trackinglogd autoStart="true"/>
  <watchdog autoStart="true"/>
  <exec user="neolane"/>
</serverconf>
"#;

    #[test]
    fn a_vendor_shaped_server_conf_is_read_and_written_without_losing_anything() {
        let s = read_server_conf("serverConf.xml", VENDOR_SERVER_CONF, &b("7.4.1")).unwrap();
        assert!(s.operator_management_restricted && s.native_api_disabled);
        assert_eq!(s.allow_list, ["admin", "crm-sync"]);

        // Written back with other switches: only the imsConfig element changes.
        let off = ImsSwitches {
            operator_management_restricted: false,
            native_api_disabled: false,
            allow_list: vec!["admin".into()],
        };
        let written = write_server_conf(Some(VENDOR_SERVER_CONF), &off);
        assert_eq!(
            read_server_conf("serverConf.xml", &written, &b("7.4.1")).unwrap(),
            off
        );
        let start = VENDOR_SERVER_CONF.find("<imsConfig>").unwrap();
        let end = VENDOR_SERVER_CONF.find("</imsConfig>").unwrap() + "</imsConfig>".len();
        assert!(written.starts_with(&VENDOR_SERVER_CONF[..start]), "{written}");
        assert!(written.ends_with(&VENDOR_SERVER_CONF[end..]), "{written}");

        // Without an imsConfig element, one is added inside shared; without shared, a shared.
        let none = format!("{}{}", &VENDOR_SERVER_CONF[..start], &VENDOR_SERVER_CONF[end..]);
        assert_eq!(
            read_server_conf("serverConf.xml", &none, &b("7.4.1")).unwrap(),
            ImsSwitches::default()
        );
        let added = write_server_conf(Some(&none), &off);
        assert_eq!(
            read_server_conf("serverConf.xml", &added, &b("7.4.1")).unwrap(),
            off
        );
        assert!(added.contains("<web httpAllowed=\"false\">") && added.contains("<exec user=\"neolane\"/>"));
        let bare = "<serverconf>\n  <web httpAllowed=\"false\"/>\n</serverconf>\n";
        let added = write_server_conf(Some(bare), &off);
        assert_eq!(
            read_server_conf("serverConf.xml", &added, &b("7.4.1")).unwrap(),
            off
        );
        assert!(added.contains("<web httpAllowed=\"false\"/>"), "{added}");
        let empty_shared = "<serverConf><shared/><web/></serverConf>";
        let added = write_server_conf(Some(empty_shared), &off);
        assert_eq!(
            read_server_conf("serverConf.xml", &added, &b("7.4.1")).unwrap(),
            off
        );

        // A broken vendor file still names file, line and key.
        let bad = VENDOR_SERVER_CONF.replace("disableAPI=\"true\"", "disableAPI=\"maybe\"");
        let e = read_server_conf("serverConf.xml", &bad, &b("7.4.1")).unwrap_err();
        let line = VENDOR_SERVER_CONF
            .lines()
            .position(|l| l.contains("<nonIMSAuthnAPI"))
            .unwrap()
            + 1;
        assert_eq!(
            (e.line, e.key.as_str()),
            (line, "serverConf/shared/imsConfig/nonIMSAuthnAPI/@disableAPI"),
            "{e}"
        );
        let broken = VENDOR_SERVER_CONF.replace("</dataStore>", "");
        let e = read_server_conf("serverConf.xml", &broken, &b("7.4.1")).unwrap_err();
        assert!(e.to_string().starts_with("serverConf.xml:"), "{e}");
    }

    #[test]
    fn an_instance_file_keeps_what_it_holds_beside_the_ims_configuration() {
        let existing = "<serverConf>\n  <shared>\n    <dataStore lang=\"fr_FR\"/>\n  </shared>\n  <web/>\n</serverConf>\n";
        let conf = InstanceConf {
            oauth: None,
            account: None,
            switches: SwitchElements {
                operator_management_restricted: Some(true),
                native_api: None,
            },
        };
        let written = write_instance_conf(Some(existing), &conf);
        assert!(
            written.contains("<dataStore lang=\"fr_FR\"/>") && written.contains("<web/>"),
            "{written}"
        );
        assert_eq!(
            read_instance_conf("config-x.xml", &written, &b("7.4.1"))
                .unwrap()
                .switches,
            conf.switches
        );
    }

    #[test]
    fn switches_need_a_build_that_has_them() {
        let on = DEFAULT_SERVER_CONF.replace("disableAPI=\"false\"", "disableAPI=\"true\"");
        let e = read_server_conf("serverConf.xml", &on, &b("7.3.5")).unwrap_err();
        assert!(e.message.contains("7.4.1 and later"), "{e}");
        assert!(
            read_server_conf("serverConf.xml", &on, &b("8.5.2"))
                .unwrap()
                .native_api_disabled
        );
    }

    #[test]
    fn imsoauth_round_trip_and_parsing() {
        let (org, client, ta, secret) = parse_setimsoauth("ABC@AdobeOrg/cid/TA@techacct.x/s3cr/et").unwrap();
        assert_eq!(
            (org.as_str(), client.as_str(), ta.as_str(), secret.expose()),
            ("ABC@AdobeOrg", "cid", "TA@techacct.x", "s3cr/et")
        );
        assert!(parse_setimsoauth("ABC/cid/ta/s").is_err());
        assert!(parse_setimsoauth("ABC@AdobeOrg/cid/ta").is_err());
        let o = ImsOAuth {
            org_id: org,
            client_id: client,
            technical_account_id: ta,
            sealed_secret: "enc:abc".into(),
        };
        let conf = InstanceConf {
            oauth: Some(o.clone()),
            account: None,
            switches: SwitchElements::default(),
        };
        let build = b("7.4.1");
        assert_eq!(
            read_instance_conf("config-x.xml", &write_instance_conf(None, &conf), &build).unwrap(),
            conf
        );
        let plain = write_instance_conf(
            None,
            &InstanceConf {
                oauth: Some(ImsOAuth {
                    sealed_secret: "plain".into(),
                    ..o
                }),
                account: None,
                switches: SwitchElements::default(),
            },
        );
        assert!(
            read_instance_conf("config-x.xml", &plain, &build).is_err(),
            "secrets are stored sealed"
        );
    }

    #[test]
    fn an_instance_file_overrides_the_shared_elements_it_has() {
        let shared = ImsSwitches {
            operator_management_restricted: true,
            native_api_disabled: false,
            allow_list: vec!["admin".into()],
        };
        let conf = InstanceConf {
            oauth: None,
            account: None,
            switches: SwitchElements {
                operator_management_restricted: None,
                native_api: Some((true, vec!["ops|svc".into()])),
            },
        };
        let text = write_instance_conf(None, &conf);
        let read = read_instance_conf("config-x.xml", &text, &b("8.5.2")).unwrap();
        assert_eq!(read, conf);
        let effective = read.switches.over(&shared);
        assert!(effective.operator_management_restricted && effective.native_api_disabled);
        assert_eq!(effective.allow_list, vec!["ops|svc".to_owned()]);
        let e = read_instance_conf("config-x.xml", &text, &b("7.4.0")).unwrap_err();
        assert!(e.message.contains("7.4.1 and later"), "{e}");
    }

    #[test]
    fn the_ims_account_round_trips_and_is_checked_at_reading() {
        let account = ImsAccount {
            url: "https://ims.example.com".into(),
            org_id: "ABC@AdobeOrg".into(),
            client_id: Some("instance-client".into()),
            sealed_secret: Some("enc:abc".into()),
            callback_url: "https://acc.example.com/console/ims/callback".into(),
            mask: AssociationMask::parse("campaign - acc & co - (.*)").unwrap(),
            product_context: "dma_campaign_classic".into(),
            scopes: vec!["openid".into(), "email".into()],
        };
        let conf = InstanceConf {
            oauth: None,
            account: Some(account),
            switches: SwitchElements::default(),
        };
        let text = write_instance_conf(None, &conf);
        let build = b("7.4.1");
        assert_eq!(read_instance_conf("config-acc.xml", &text, &build).unwrap(), conf);
        // Defaults: the product context and scopes; client from -setimsoauth.
        let minimal = "<serverConf><shared><imsConfig>\n<imsAccount url=\"http://127.0.0.1:9\" orgId=\"A@AdobeOrg\" callbackUrl=\"http://127.0.0.1:10/console/ims/callback\" associationMask=\"campaign - a - (.*)\"/>\n</imsConfig></shared></serverConf>";
        let a = read_instance_conf("c.xml", minimal, &build)
            .unwrap()
            .account
            .unwrap();
        assert_eq!(a.product_context, "dma_campaign_classic");
        assert!(a
            .scopes
            .contains(&"additional_info.projectedProductContext".to_owned()));
        assert_eq!(a.client_id, None);
        // Exactly one per instance: the second is refused with both lines.
        let twice = minimal.replace(
            "</imsConfig>",
            &format!("{}\n</imsConfig>", minimal.lines().nth(1).unwrap()),
        );
        let e = read_instance_conf("c.xml", &twice, &build).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(
            e.message.contains("line 2") && e.message.contains("exactly one"),
            "{e}"
        );
        // Each rule names its attribute.
        let no_capture = minimal.replace("(.*)", ".*");
        let e = read_instance_conf("c.xml", &no_capture, &build).unwrap_err();
        assert!(e.key.ends_with("imsAccount/@associationMask"), "{e}");
        let plain_http = minimal.replace("http://127.0.0.1:10", "http://acc.example.com");
        let e = read_instance_conf("c.xml", &plain_http, &build).unwrap_err();
        assert!(
            e.key.ends_with("@callbackUrl") && e.message.contains("https"),
            "{e}"
        );
        let missing = minimal.replace(" orgId=\"A@AdobeOrg\"", "");
        let e = read_instance_conf("c.xml", &missing, &build).unwrap_err();
        assert!(e.key.ends_with("@orgId") && e.message == "missing", "{e}");
    }
}
