//! A development certificate authority: what `aop cert ca|issue`, `aop demo --tls` and the
//! tests use to get a TLS federation without an outside PKI.
//!
//! The CA's subject is [`CA_COMMON_NAME`] and a digest of its public key, so a certificate
//! can be signed with nothing but the CA's key file: the issuer is rebuilt from the same
//! parameters; and two development CAs never share a name (a verifier that finds a CA by
//! name would otherwise report a bad signature instead of an unknown issuer). Every
//! certificate issued is verified against `ca.pem` before it is written, so a CA directory of another origin fails with a clear error instead of
//! producing certificates nobody accepts. Private keys are written readable by the owner
//! only (0600).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::{TlsError, load_certs, load_roots, provider};

/// The subject of every CA this module makes.
pub const CA_COMMON_NAME: &str = "AOP development CA";
/// The file names in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What a certificate is issued for: its DNS names and addresses (subjectAltNames).
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Subject {
    /// Exactly the names given, or `127.0.0.1` and `localhost` when none is.
    pub fn or_loopback(self) -> Subject {
        if self.dns.is_empty() && self.ips.is_empty() {
            Subject {
                dns: vec!["localhost".into()],
                ips: vec![IpAddr::from([127, 0, 0, 1])],
            }
        } else {
            self
        }
    }
}

fn issue_error(error: rcgen::Error) -> TlsError {
    TlsError::Issue {
        reason: error.to_string(),
    }
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, and never a leading zero byte that DER would strip.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, length: Duration) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + length;
}

/// The CA's parameters, its name derived from its key.
fn ca_params(key: &KeyPair) -> CertificateParams {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.public_key_raw());
    let id: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("{CA_COMMON_NAME} {id}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A new CA: a self-signed certificate and its key.
pub fn new_ca() -> Result<Pem, TlsError> {
    let key = KeyPair::generate().map_err(issue_error)?;
    let mut params = ca_params(&key);
    params.serial_number = Some(serial());
    validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key).map_err(issue_error)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `name` with exactly the SANs of `subject`, valid for server and client
/// authentication, signed by the CA `ca`.
pub fn issue(ca: &Pem, name: &str, subject: &Subject) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|error| TlsError::Issue {
        reason: format!("the CA key is not usable: {error}"),
    })?;
    let issuer = Issuer::new(ca_params(&ca_key), ca_key);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    for dns in &subject.dns {
        let san = dns.clone().try_into().map_err(|error| TlsError::Issue {
            reason: format!("--dns {dns:?} is not a DNS name: {error}"),
        })?;
        params.subject_alt_names.push(SanType::DnsName(san));
    }
    for ip in &subject.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    validity(&mut params, LEAF_VALIDITY);
    let key = KeyPair::generate().map_err(issue_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(issue_error)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Checks that `leaf` chains to the CA in `ca_pem` as a server certificate for `name`.
fn verify(leaf: &CertificateDer<'_>, ca_pem: &Path, name: ServerName<'_>) -> Result<(), TlsError> {
    let roots = load_roots(ca_pem)?;
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|error| TlsError::Issue {
                reason: error.to_string(),
            })?;
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|error| TlsError::Issue {
            reason: format!(
                "the certificate made does not verify against {} ({error}): is that directory \
                 a CA written by `aop cert ca`?",
                ca_pem.display()
            ),
        })
}

/// Writes `contents` to `path`; private keys (`secret`) readable by the owner only.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An existing file keeps its mode when opened: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(failed)?;
        }
    }
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(contents.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// `aop cert ca --out DIR`: writes `ca.pem` and `ca.key`; returns their paths.
pub fn write_ca(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    create_dir(dir)?;
    let ca = new_ca()?;
    let cert = dir.join(CA_CERT_FILE);
    let key = dir.join(CA_KEY_FILE);
    write_file(&key, &ca.key, true)?;
    write_file(&cert, &ca.cert, false)?;
    Ok((cert, key))
}

/// Reads the CA written by [`write_ca`] in `dir`.
pub fn read_ca(dir: &Path) -> Result<Pem, TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| TlsError::Read { path, source })
    };
    Ok(Pem {
        cert: read(CA_CERT_FILE)?,
        key: read(CA_KEY_FILE)?,
    })
}

/// `aop cert issue NAME --ca DIR --out DIR`: writes `NAME.pem` and `NAME.key` signed by the
/// CA in `ca_dir`, checked against it; returns their paths.
pub fn write_issued(
    ca_dir: &Path,
    name: &str,
    subject: &Subject,
    out: &Path,
) -> Result<(PathBuf, PathBuf), TlsError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(TlsError::Issue {
            reason: format!(
                "NAME {name:?} names the files NAME.pem and NAME.key: use letters, digits, '-', \
                 '_' and '.' (not first)"
            ),
        });
    }
    let ca = read_ca(ca_dir)?;
    let pem = issue(&ca, name, subject)?;
    let leaf = CertificateDer::from_pem_text(&pem.cert)?;
    let check_name = match (subject.ips.first(), subject.dns.first()) {
        (Some(ip), _) => ServerName::IpAddress((*ip).into()),
        (None, Some(dns)) => {
            ServerName::try_from(dns.clone()).map_err(|error| TlsError::Issue {
                reason: format!("--dns {dns:?}: {error}"),
            })?
        }
        (None, None) => {
            return Err(TlsError::Issue {
                reason: "a certificate needs at least one --ip or --dns".into(),
            });
        }
    };
    verify(&leaf, &ca_dir.join(CA_CERT_FILE), check_name)?;
    create_dir(out)?;
    let cert = out.join(format!("{name}.pem"));
    let key = out.join(format!("{name}.key"));
    write_file(&key, &pem.key, true)?;
    write_file(&cert, &pem.cert, false)?;
    // Proof it reads back as the rest of the project reads it.
    load_certs(&cert)?;
    Ok((cert, key))
}

trait FromPemText: Sized {
    fn from_pem_text(text: &str) -> Result<Self, TlsError>;
}

impl FromPemText for CertificateDer<'static> {
    fn from_pem_text(text: &str) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(text.as_bytes()).map_err(|error| TlsError::Issue {
            reason: format!("the certificate made is not PEM: {error}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_exactly_the_sans_given_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = write_ca(dir.path()).unwrap();
        assert!(ca_cert.is_file());
        let subject = Subject {
            dns: vec!["node1.acme.example".into()],
            ips: vec![IpAddr::from([10, 0, 0, 7])],
        };
        let (cert, key) = write_issued(dir.path(), "node1", &subject, dir.path()).unwrap();
        let leaf = load_certs(&cert).unwrap().remove(0);
        assert_eq!(super::super::dns_names(&leaf), ["node1.acme.example"]);
        #[cfg(unix)]
        for path in [&ca_key, &key] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        // None given: 127.0.0.1 and localhost.
        let loopback = Subject::default().or_loopback();
        let (cert, _) = write_issued(dir.path(), "local", &loopback, dir.path()).unwrap();
        let leaf = load_certs(&cert).unwrap().remove(0);
        assert_eq!(super::super::dns_names(&leaf), ["localhost"]);
        // A CA directory of another CA's certificate with this key: refused before writing.
        let other = tempfile::tempdir().unwrap();
        write_ca(other.path()).unwrap();
        std::fs::copy(
            other.path().join(CA_CERT_FILE),
            dir.path().join(CA_CERT_FILE),
        )
        .unwrap();
        let error = write_issued(dir.path(), "bad", &loopback, dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("does not verify against"),
            "{error}"
        );
        assert!(!dir.path().join("bad.pem").exists());
        let error = write_issued(dir.path(), "../x", &loopback, dir.path()).unwrap_err();
        assert!(error.to_string().contains("NAME"), "{error}");
    }
}
