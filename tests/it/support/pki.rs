//! A development CA and certificates signed by it, made by the project's own issuing code
//! (`aop::tls::issue`, behind `aop cert`), in a temporary directory: the PKI of every test
//! over real TLS.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aop::tls::issue::{self, Subject};
use aop::tls::{ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};

/// A CA and certificates signed by it, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        issue::write_ca(dir.path()).unwrap();
        Pki { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `NAME.pem`/`NAME.key` for 127.0.0.1 and the DNS names given.
    pub fn issue(&self, name: &str, dns: &[&str]) -> (PathBuf, PathBuf) {
        let subject = Subject {
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ips: vec![IpAddr::from([127, 0, 0, 1])],
        };
        issue::write_issued(self.dir.path(), name, &subject, self.dir.path()).unwrap()
    }

    pub fn server(&self, name: &str, client_ca: bool) -> Arc<ServerTls> {
        let (cert, key) = self.issue(name, &[]);
        ServerTls::grpc(ServerTlsFiles {
            cert,
            key,
            client_ca: client_ca.then(|| self.ca()),
        })
        .unwrap()
    }

    /// A client trusting this CA, presenting a certificate named `identity` if given.
    pub fn client(&self, identity: Option<&str>) -> Arc<ClientTls> {
        let (cert, key) = match identity {
            Some(name) => {
                let (cert, key) = self.issue(name, &[name]);
                (Some(cert), Some(key))
            }
            None => (None, None),
        };
        ClientTls::load(ClientTlsFiles {
            ca: Some(self.ca()),
            cert,
            key,
        })
        .unwrap()
    }
}

impl Pki {
    /// An HTTPS door's settings (ALPN http/1.1) with a certificate named `name`.
    pub fn https(&self, name: &str) -> Arc<ServerTls> {
        let (cert, key) = self.issue(name, &["localhost"]);
        ServerTls::https(ServerTlsFiles {
            cert,
            key,
            client_ca: None,
        })
        .unwrap()
    }

    /// An HTTP client (reqwest over rustls) trusting this CA beside the system roots.
    pub fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(self.client(None).http_config())
            .build()
            .unwrap()
    }
}
