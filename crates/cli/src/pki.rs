//! The private CA of an embedded deployment and the server certificate it signs, so that `ims up`
//! serves HTTPS from its first start (the vendor's clients insist on https for token calls).

use anyhow::{Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// Loads the CA and server certificate from `dir`, creating them when any piece is missing.
pub fn ensure(dir: &Path) -> Result<Pki> {
    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    let ca_key = dir.join("ca.key");
    if [&pki.ca_cert, &ca_key, &pki.server_cert, &pki.server_key]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(pki);
    }
    let ca_keypair = KeyPair::generate().context("CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ims private CA");
    dn.push(DnType::OrganizationName, "ims");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_keypair).context("self-signing the CA")?;

    let server_keypair = KeyPair::generate().context("server key")?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).context("server parameters")?;
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    server.subject_alt_names.push(SanType::IpAddress("::1".parse()?));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    server.distinguished_name = dn;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = rcgen::date_time_ymd(2025, 1, 1);
    server.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let issuer = rcgen::Issuer::from_params(&ca, &ca_keypair);
    let server_cert = server
        .signed_by(&server_keypair, &issuer)
        .context("signing the server certificate")?;

    crate::files::write_private(&ca_key, ca_keypair.serialize_pem().as_bytes())?;
    crate::files::write_private(&pki.server_key, server_keypair.serialize_pem().as_bytes())?;
    crate::files::write_public(&pki.ca_cert, ca_cert.pem().as_bytes())?;
    crate::files::write_public(&pki.server_cert, server_cert.pem().as_bytes())?;
    Ok(pki)
}
