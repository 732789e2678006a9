//! TLS on the gRPC door and its clients, over real TLS on loopback with certificates the
//! test makes (`aop::tls::issue`, the code behind `aop cert`): what a plaintext client, a
//! client of another CA and a client without a certificate under mTLS are told; recursion
//! across a federation of TLS nodes; a SIGHUP that swaps a node's certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aop::answer::Outcome;
use aop::grpc::connect_with;
use aop::node::{GrpcListener, NodeHandle, ServeOptions};
use aop::record::ServerAddress;
use aop::tls::{ClientTls, ClientTlsFiles};

use crate::support::pki::Pki;
use crate::support::process::NodeProcess;
use crate::support::{AOP, bind, eventually, free_addr, zone};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(5));

/// Zone acme, served at `url`, with one agent.
fn acme(url: &str) -> String {
    format!(
        r#"
[zone]
origin = "acme"
serial = 1
servers = [{{ grpc = "{url}" }}]
[[agent]]
name = "analyst"
description = "Analyst."
endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]
"#
    )
}

async fn tls_node(pki: &Pki, client_ca: bool) -> NodeHandle {
    let listener = bind().await.tls(pki.server("node", client_ca));
    let zones = vec![zone(&acme(&listener.url()))];
    listener.serve(None, zones).unwrap()
}

#[tokio::test]
async fn a_tls_node_answers_tls_clients_that_trust_its_ca() {
    let pki = Pki::new();
    let node = tls_node(&pki, false).await;
    assert!(
        node.grpc_url().starts_with("https://"),
        "{}",
        node.grpc_url()
    );
    let mut client = connect_with(&node.grpc_url(), &pki.client(None))
        .await
        .unwrap();
    let answer = client
        .resolve("analyst.acme", false, false, TIMEOUT)
        .await
        .unwrap();
    assert!(matches!(answer.outcome, Outcome::Answer(_)), "{answer:?}");
}

#[tokio::test]
async fn a_plaintext_client_fails_naming_the_url_and_the_node_keeps_serving() {
    let pki = Pki::new();
    let node = tls_node(&pki, false).await;
    let plaintext = format!("http://{}", node.grpc_addr());
    // The connection may open (TCP) before HTTP/2 fails: the first call is what fails.
    let error = match connect_with(&plaintext, &pki.client(None)).await {
        Err(error) => error.to_string(),
        Ok(mut client) => client
            .resolve("analyst.acme", false, false, TIMEOUT)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(error.contains(&plaintext), "{error}");
    let mut client = connect_with(&node.grpc_url(), &pki.client(None))
        .await
        .unwrap();
    client
        .resolve("analyst.acme", false, false, TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_naming_the_url_and_the_reason() {
    let pki = Pki::new();
    let other = Pki::new();
    let node = tls_node(&pki, false).await;
    let error = connect_with(&node.grpc_url(), &other.client(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains(&node.grpc_url()), "{error}");
    assert!(
        error.contains("not signed by a CA this client trusts"),
        "{error}"
    );
    assert!(!error.contains("transport error"), "{error}");
    // The system roots alone do not know a development CA either.
    let error = aop::grpc::connect(&node.grpc_url())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no --ca given"), "{error}");
}

#[tokio::test]
async fn under_mtls_a_client_without_a_certificate_is_refused_and_one_with_is_served() {
    let pki = Pki::new();
    let node = tls_node(&pki, true).await;
    let error = match connect_with(&node.grpc_url(), &pki.client(None)).await {
        Err(error) => error.to_string(),
        // TLS 1.3: the client's handshake ends before the server judges it; the refusal
        // arrives on the first read.
        Ok(mut client) => client
            .resolve("analyst.acme", false, false, TIMEOUT)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(error.contains(&node.grpc_url()), "{error}");
    assert!(error.contains("requires a client certificate"), "{error}");
    // A certificate of another CA is refused too.
    let other = Pki::new();
    let (cert, key) = other.issue("stranger", &["stranger"]);
    let stranger = ClientTls::load(ClientTlsFiles {
        ca: Some(pki.ca()),
        cert: Some(cert),
        key: Some(key),
    })
    .unwrap();
    let refused = match connect_with(&node.grpc_url(), &stranger).await {
        Err(error) => error.to_string(),
        Ok(mut client) => client
            .resolve("analyst.acme", false, false, TIMEOUT)
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(
        refused.contains("refused this client's certificate"),
        "{refused}"
    );
    let mut client = connect_with(&node.grpc_url(), &pki.client(Some("ops")))
        .await
        .unwrap();
    let answer = client
        .resolve("analyst.acme", false, false, TIMEOUT)
        .await
        .unwrap();
    assert!(matches!(answer.outcome, Outcome::Answer(_)), "{answer:?}");
}

/// Root, acme and a resolver, every door TLS with mTLS, every node presenting its own
/// certificate to the others: a recursive query from the resolver follows the https://
/// referral.
#[tokio::test]
async fn recursion_across_a_tls_federation() {
    let pki = Pki::new();
    let root_listener = bind().await.tls(pki.server("root", true));
    let acme_listener = bind().await.tls(pki.server("acme", true));
    let resolver_listener = bind().await.tls(pki.server("resolver", true));
    let root_url = root_listener.url();
    let acme_url = acme_listener.url();
    assert!(acme_url.starts_with("https://"));
    let root_zone = zone(&format!(
        r#"
[zone]
origin = "."
serial = 1
servers = [{{ grpc = "{root_url}" }}]
[[delegation]]
zone = "acme"
servers = [{{ grpc = "{acme_url}" }}]
"#
    ));
    let hints = vec![ServerAddress::new(&root_url, None).unwrap()];
    let serve = |listener: GrpcListener, name: &str, zones| {
        listener
            .serve_with(
                ServeOptions::new(zones)
                    .roots(hints.clone())
                    .client_tls(pki.client(Some(name))),
            )
            .unwrap()
    };
    let _root = serve(root_listener, "root", vec![root_zone]);
    let _acme = serve(acme_listener, "acme", vec![zone(&acme(&acme_url))]);
    let resolver = serve(resolver_listener, "resolver", vec![]);
    let mut client = connect_with(&resolver.grpc_url(), &pki.client(Some("cli")))
        .await
        .unwrap();
    let answer = client
        .resolve("analyst.acme", true, true, TIMEOUT)
        .await
        .unwrap();
    assert!(matches!(answer.outcome, Outcome::Answer(_)), "{answer:?}");
    // Node ids default to the gRPC address: the resolver asked the root, then acme.
    let servers: Vec<&str> = answer
        .trace
        .iter()
        .map(|step| step.server.as_str())
        .collect();
    for url in [&root_url, &acme_url] {
        let addr = url.trim_start_matches("https://");
        assert!(
            servers.iter().any(|s| s.contains(addr)),
            "{addr} in {servers:?}"
        );
    }
    // A resolver whose channels do not trust the CA fails, naming the server and why.
    let blind = bind()
        .await
        .serve_with(ServeOptions::new(vec![]).roots(hints.clone()))
        .unwrap();
    let mut client = connect_with(&blind.grpc_url(), &pki.client(None))
        .await
        .unwrap();
    let error = client
        .resolve("analyst.acme", true, false, TIMEOUT)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not signed by a CA this client trusts"),
        "{error}"
    );
}

/// The DNS names of the certificate a node presents to a new connection.
async fn presented_names(url: &str, tls: &ClientTls) -> Vec<String> {
    let addr = url.trim_start_matches("https://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tls.connect("127.0.0.1", tcp).await.unwrap();
    let chain = stream.peer_certificates().unwrap();
    aop::tls::dns_names(&chain[0])
}

fn write_node_cert(pki: &Pki, dir: &Path, san: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = pki.issue(san, &[san]);
    let (to_cert, to_key) = (dir.join("node.pem"), dir.join("node.key"));
    std::fs::copy(cert, &to_cert).unwrap();
    std::fs::copy(key, &to_key).unwrap();
    (to_cert, to_key)
}

/// `aop node` re-reads its certificate on SIGHUP: a new connection gets the new one, a
/// connection opened before keeps working. The new certificate comes from another CA, so a
/// client that trusts only the first CA can use only a connection opened before the reload.
#[tokio::test]
async fn sighup_swaps_the_certificate_and_open_connections_stay() {
    let (first, second) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("acme.toml");
    let grpc = free_addr().to_string();
    std::fs::write(&zone_file, acme(&format!("https://{grpc}"))).unwrap();
    let (cert, key) = write_node_cert(&first, dir.path(), "first.test");
    let both = dir.path().join("both.pem");
    let mut pem = std::fs::read_to_string(first.ca()).unwrap();
    pem.push_str(&std::fs::read_to_string(second.ca()).unwrap());
    std::fs::write(&both, pem).unwrap();
    let trusts_both = ClientTls::load(ClientTlsFiles {
        ca: Some(both),
        ..ClientTlsFiles::default()
    })
    .unwrap();
    let mut node = NodeProcess::spawn_command(&[
        AOP,
        "node",
        "--zone",
        zone_file.to_str().unwrap(),
        "--grpc",
        &grpc,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = node.ready().await;
    assert_eq!(url, format!("https://{grpc}"));
    assert_eq!(presented_names(&url, &trusts_both).await, ["first.test"]);
    let trusts_first = first.client(None);
    let mut open = connect_with(&url, &trusts_first).await.unwrap();
    open.resolve("analyst.acme", false, false, TIMEOUT)
        .await
        .unwrap();

    write_node_cert(&second, dir.path(), "second.test");
    node.signal(libc::SIGHUP);
    node.line_containing("TLS certificates and keys re-read")
        .await;
    eventually(Duration::from_secs(10), "the new certificate", || {
        let (url, tls) = (url.clone(), Arc::clone(&trusts_both));
        async move { presented_names(&url, &tls).await == ["second.test"] }
    })
    .await;
    let error = connect_with(&url, &trusts_first)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not signed by a CA this client trusts"),
        "{error}"
    );
    // The connection opened before the reload still has the first certificate's session.
    for _ in 0..3 {
        open.resolve("analyst.acme", false, false, TIMEOUT)
            .await
            .unwrap();
    }

    // A broken file keeps the certificate in force.
    std::fs::write(dir.path().join("node.pem"), "not a certificate").unwrap();
    node.signal(libc::SIGHUP);
    node.line_containing("TLS files not reloaded").await;
    assert_eq!(presented_names(&url, &trusts_both).await, ["second.test"]);
}

fn zone_at(origin: &str, url: &str) -> String {
    format!("[zone]\norigin = \"{origin}\"\nserial = 1\nservers = [{{ grpc = \"{url}\" }}]\n")
}

/// `--update-identity acme=ci.acme`: a client whose mTLS certificate carries ci.acme
/// updates acme without a signature; the same identity for another zone of the node is
/// PERMISSION_DENIED and changes nothing; a certificate no rule names needs a signature; an
/// HMAC key keeps working beside identities.
#[tokio::test]
async fn updates_by_mtls_identity_for_its_zone_only() {
    use crate::support::process::register_body;
    use aop::keys::UpdateKey;
    use aop::keys::identity::UpdateIdentity;
    use tonic::Code;

    let pki = Pki::new();
    let listener = bind().await.tls(pki.server("node", true));
    let url = listener.url();
    let key = UpdateKey::generate("other-bot", "other").unwrap();
    let node = listener
        .serve_with(
            ServeOptions::new(vec![zone(&acme(&url)), zone(&zone_at("other", &url))])
                .update_identity(UpdateIdentity::parse("acme=ci.acme").unwrap())
                .update_key(key.clone()),
        )
        .unwrap();
    let serial = |zone: &str| {
        node.catalog()
            .zone(&aop::name::Name::parse(zone).unwrap())
            .map(|z| z.serial())
            .ok()
    };
    let mut ci = connect_with(&url, &pki.client(Some("ci.acme")))
        .await
        .unwrap();
    let done = ci
        .register(
            register_body("acme", "builder.acme", 60, "CI builder."),
            None,
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(done.serial > 1, "{done:?}");
    ci.renew(
        aop::grpc::pb::RenewRequest {
            zone: "acme".into(),
            name: "builder.acme".into(),
            url: "http://127.0.0.1:9/mcp/builder.acme".into(),
            lease_seconds: 60,
        },
        None,
        TIMEOUT,
    )
    .await
    .unwrap();

    let before = serial("other");
    let error = ci
        .register(
            register_body("other", "intruder.other", 60, "No."),
            None,
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::PermissionDenied), "{error}");
    assert!(
        error
            .message()
            .contains("ci.acme may update zone acme, not zone other"),
        "{error}"
    );
    assert_eq!(serial("other"), before, "nothing changed");

    // A certificate no rule names: the update needs a signature.
    let mut stranger = connect_with(&url, &pki.client(Some("stranger.acme")))
        .await
        .unwrap();
    let error = stranger
        .register(
            register_body("acme", "intruder.acme", 60, "No."),
            None,
            TIMEOUT,
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::Unauthenticated), "{error}");

    // HMAC keys keep working beside identities, over the same mTLS connection.
    stranger
        .register(
            register_body("other", "signed.other", 60, "Signed."),
            Some(&key),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert!(serial("other") > before);

    ci.deregister(
        aop::grpc::pb::DeregisterRequest {
            zone: "acme".into(),
            name: "builder.acme".into(),
            url: String::new(),
        },
        None,
        TIMEOUT,
    )
    .await
    .unwrap();
}
