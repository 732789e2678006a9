//! Keys, signatures and the ring, tested without a node.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::clock::{Clock, ManualClock};

fn key(name: &str, zone: &str) -> UpdateKey {
    UpdateKey::generate(name, zone).unwrap()
}

fn zone(text: &str) -> Name {
    Name::parse(text).unwrap()
}

fn fields() -> SignedFields {
    let mut fields = SignedFields::new("register");
    fields
        .put("zone", "finance.acme")
        .put("name", "analyst")
        .put("url", "http://127.0.0.1:7300/mcp")
        .put_u64("lease", 60)
        .put_list("tags", &["a".to_string(), "b".to_string()]);
    fields
}

fn ring(keys: Vec<UpdateKey>) -> (KeyRing, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let ring = KeyRing::new(keys, clock.clone()).unwrap();
    (ring, clock)
}

fn now_secs(clock: &ManualClock) -> u64 {
    clock.unix_ms() / 1000
}

#[test]
fn canonical_encoding_is_unambiguous() {
    let mut one = SignedFields::new("register");
    one.put("a", "x\nb=1:y").put("b", "");
    let mut two = SignedFields::new("register");
    two.put("a", "x").put("b", "1:y\nb=0:");
    assert_ne!(one.as_bytes(), two.as_bytes());

    let mut lists_a = SignedFields::new("op");
    lists_a
        .put_list("tags", &["a,b".into()])
        .put_list("caps", &[]);
    let mut lists_b = SignedFields::new("op");
    lists_b
        .put_list("tags", &["a".into(), "b".into()])
        .put_list("caps", &[]);
    assert_ne!(lists_a.as_bytes(), lists_b.as_bytes());

    let mut exact = SignedFields::new("register");
    exact
        .put("name", "é")
        .put_u64("lease", 60)
        .put_list("tags", &["t".into()]);
    assert_eq!(
        exact.as_bytes(),
        "aop-update-v1\nop=8:register\nname=2:é\nlease=2:60\ntags#=1:1\ntags[0]=1:t\n".as_bytes()
    );
}

#[test]
fn sign_then_verify_passes() {
    let key = key("ci-bot", "finance.acme");
    let (ring, clock) = ring(vec![key.clone()]);
    let proof = key.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    let entries = proof.entries();
    let read = Proof::from_entries(|entry| {
        entries
            .iter()
            .filter(|(name, _)| *name == entry)
            .map(|(_, value)| Some(value.as_str()))
            .collect::<Vec<_>>()
    })
    .unwrap()
    .unwrap();
    assert_eq!(read, proof);
    ring.verify(&zone("finance.acme"), &fields(), Some(&read))
        .unwrap();
}

#[test]
fn missing_proof_says_whether_the_zone_has_keys() {
    let (ring, _clock) = ring(vec![key("ci-bot", "finance.acme")]);
    let error = ring
        .verify(&zone("finance.acme"), &fields(), None)
        .unwrap_err();
    assert!(matches!(
        error,
        AuthError::Missing {
            zone_has_keys: true,
            ..
        }
    ));
    assert!(error.to_string().contains("--key-file"), "{error}");

    let error = ring.verify(&zone("acme"), &fields(), None).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("zone acme accepts no updates: no update key is configured for it"),
        "{error}"
    );
    let error = ring.verify(&Name::root(), &fields(), None).unwrap_err();
    assert!(error.to_string().starts_with("zone . accepts"), "{error}");
    assert!(!error.is_permission_denied());
}

#[test]
fn unknown_key_is_refused() {
    let (ring, clock) = ring(vec![key("ci-bot", "finance.acme")]);
    let stranger = key("stranger", "finance.acme");
    let proof = stranger.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    let error = ring
        .verify(&zone("finance.acme"), &fields(), Some(&proof))
        .unwrap_err();
    assert_eq!(
        error,
        AuthError::UnknownKey {
            key: "stranger".into()
        }
    );
}

#[test]
fn tampered_fields_or_wrong_secret_are_bad_signatures() {
    let key = key("ci-bot", "finance.acme");
    let (ring, clock) = ring(vec![key.clone()]);
    let proof = key.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    let mut tampered = fields();
    tampered.put("extra", "x");
    let error = ring
        .verify(&zone("finance.acme"), &tampered, Some(&proof))
        .unwrap_err();
    assert_eq!(
        error,
        AuthError::BadSignature {
            key: "ci-bot".into()
        }
    );

    // Same name, other secret.
    let impostor = UpdateKey::generate("ci-bot", "finance.acme").unwrap();
    let proof = impostor.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    let error = ring
        .verify(&zone("finance.acme"), &fields(), Some(&proof))
        .unwrap_err();
    assert!(matches!(error, AuthError::BadSignature { .. }));

    // The time and nonce are signed too.
    let mut proof = key.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    proof.time -= 1;
    let error = ring
        .verify(&zone("finance.acme"), &fields(), Some(&proof))
        .unwrap_err();
    assert!(matches!(error, AuthError::BadSignature { .. }));
    assert!(!error.to_string().contains(&BASE64.encode(&key.secret)));
}

#[test]
fn proofs_outside_the_window_are_stale_either_way() {
    let key = key("ci-bot", "finance.acme");
    let (ring, clock) = ring(vec![key.clone()]);
    let zone = zone("finance.acme");

    let old = key.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    let future = key.sign(&fields(), now_secs(&clock) + 301, &Proof::new_nonce());
    let edge = key.sign(&fields(), now_secs(&clock) + 300, &Proof::new_nonce());
    ring.verify(&zone, &fields(), Some(&edge)).unwrap();
    let error = ring.verify(&zone, &fields(), Some(&future)).unwrap_err();
    assert_eq!(
        error,
        AuthError::Stale {
            key: "ci-bot".into(),
            skew_secs: -301
        }
    );
    assert!(
        error
            .to_string()
            .contains("is dated 301 s in the future (limit 300 s): check the client's clock"),
        "{error}"
    );

    clock.advance(Duration::from_secs(301));
    let error = ring.verify(&zone, &fields(), Some(&old)).unwrap_err();
    assert_eq!(
        error,
        AuthError::Stale {
            key: "ci-bot".into(),
            skew_secs: 301
        }
    );
    assert_eq!(
        error.to_string(),
        "update signed with key \"ci-bot\" is 301 s old (limit 300 s): check the client's clock"
    );
}

#[test]
fn a_key_of_another_zone_is_permission_denied() {
    let key = key("ci-bot.finance.acme", "finance.acme");
    let (ring, clock) = ring(vec![key.clone()]);
    let proof = key.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    let error = ring
        .verify(&zone("acme"), &fields(), Some(&proof))
        .unwrap_err();
    assert!(error.is_permission_denied());
    assert_eq!(
        error.to_string(),
        "key \"ci-bot.finance.acme\" may update zone finance.acme, not zone acme"
    );
}

#[test]
fn a_replayed_nonce_is_refused() {
    let key = key("ci-bot", "finance.acme");
    let (ring, clock) = ring(vec![key.clone()]);
    let zone = zone("finance.acme");
    let proof = key.sign(&fields(), now_secs(&clock), &Proof::new_nonce());
    ring.verify(&zone, &fields(), Some(&proof)).unwrap();
    let error = ring.verify(&zone, &fields(), Some(&proof)).unwrap_err();
    assert_eq!(
        error,
        AuthError::Replayed {
            key: "ci-bot".into()
        }
    );
    assert!(!error.is_permission_denied());

    // A refused proof does not burn its nonce.
    let nonce = Proof::new_nonce();
    let bad = key.sign(&fields(), now_secs(&clock) + 1000, &nonce);
    assert!(ring.verify(&zone, &fields(), Some(&bad)).is_err());
    let good = key.sign(&fields(), now_secs(&clock), &nonce);
    ring.verify(&zone, &fields(), Some(&good)).unwrap();
}

#[test]
fn of_concurrent_identical_requests_exactly_one_passes() {
    let key = key("ci-bot", "finance.acme");
    let (ring, clock) = ring(vec![key.clone()]);
    let zone = zone("finance.acme");
    let fields = fields();
    let proof = key.sign(&fields, now_secs(&clock), &Proof::new_nonce());
    let threads = 16;
    let barrier = std::sync::Barrier::new(threads);
    let passed = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    ring.verify(&zone, &fields, Some(&proof))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .filter(Result::is_ok)
            .count()
    });
    assert_eq!(passed, 1);
}

#[test]
fn duplicate_key_names_are_refused() {
    let error = KeyRing::new(
        vec![key("ci-bot", "acme"), key("CI-Bot", "finance.acme")],
        ManualClock::new(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("\"ci-bot\""), "{error}");
}

#[test]
fn ring_lists_zones_with_keys() {
    let (ring, _clock) = ring(vec![key("a", "acme"), key("b", "acme"), key("c", ".")]);
    assert_eq!(ring.len(), 3);
    assert!(!ring.is_empty());
    assert_eq!(ring.zones(), vec![Name::root(), zone("acme")]);
}

#[test]
fn key_validation_names_the_field_and_rule() {
    let short = BASE64.encode([0u8; 8]);
    let error = UpdateKey::new("ci-bot", "acme", &short).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("8 bytes long (at least 16 bytes required"),
        "{error}"
    );
    let error = UpdateKey::new("ci-bot", "acme", "not base64!").unwrap_err();
    assert!(error.to_string().contains("secret is not standard base64"));
    let good = BASE64.encode([7u8; 16]);
    let error = UpdateKey::new("ci_bot", "acme", &good).unwrap_err();
    assert!(error.to_string().starts_with("update key name"), "{error}");
    let error = UpdateKey::new(".", "acme", &good).unwrap_err();
    assert!(error.to_string().contains("not a key name"), "{error}");
    let error = UpdateKey::new("ci-bot", "acme..x", &good).unwrap_err();
    assert!(error.to_string().starts_with("update key zone"), "{error}");
    let root = UpdateKey::new("ci-bot", ".", &good).unwrap();
    assert!(root.zone().is_root());
}

#[test]
fn key_file_round_trips() {
    let key = key("ci-bot", "finance.acme");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ci-bot.key");
    let text = key.to_key_file();
    assert!(text.starts_with('#'));
    assert!(text.contains("aop register --key-file"));
    assert!(text.contains("aop node --update-key"));
    std::fs::write(&path, &text).unwrap();
    let loaded = UpdateKey::load_file(&path).unwrap();
    assert_eq!(loaded.name(), "ci-bot");
    assert_eq!(loaded.zone(), &zone("finance.acme"));
    let a = key.sign(&fields(), 42, "nonce-0001");
    let b = loaded.sign(&fields(), 42, "nonce-0001");
    assert_eq!(a, b);

    let root = UpdateKey::generate("root-bot", ".").unwrap();
    std::fs::write(&path, root.to_key_file()).unwrap();
    assert!(UpdateKey::load_file(&path).unwrap().zone().is_root());
}

#[test]
fn key_file_errors_name_the_place_and_not_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.key");
    let secret = BASE64.encode([9u8; 32]);
    std::fs::write(
        &path,
        format!("name = \"ci-bot\"\nzone = \"acme\"\nsecret = \"{secret}\"\ncolour = \"blue\"\n"),
    )
    .unwrap();
    let error = UpdateKey::load_file(&path).unwrap_err().to_string();
    assert!(
        error.contains("bad.key:4:1: unknown field `colour`"),
        "{error}"
    );
    assert!(!error.contains(&secret), "{error}");

    let short = BASE64.encode([9u8; 8]);
    std::fs::write(
        &path,
        format!("name = \"ci-bot\"\nzone = \"acme\"\nsecret = \"{short}\"\n"),
    )
    .unwrap();
    let error = UpdateKey::load_file(&path).unwrap_err().to_string();
    assert!(
        error.contains("bad.key:3:10: secret is 8 bytes long"),
        "{error}"
    );
    assert!(!error.contains(&short), "{error}");

    std::fs::write(
        &path,
        format!(
            "name = \"ci-bot\"\nzone = \"acme\"\nalgorithm = \"hmac-md5\"\nsecret = \"{secret}\"\n"
        ),
    )
    .unwrap();
    let error = UpdateKey::load_file(&path).unwrap_err().to_string();
    assert!(error.contains("bad.key:3:13: algorithm"), "{error}");

    // A mistyped secret quoted by serde's type error is redacted.
    std::fs::write(
        &path,
        "name = \"ci-bot\"\nzone = \"acme\"\nsecret = 123456789\n",
    )
    .unwrap();
    let error = UpdateKey::load_file(&path).unwrap_err().to_string();
    assert!(error.contains("bad.key:3:"), "{error}");
    assert!(!error.contains("123456789"), "{error}");

    let missing = dir.path().join("missing.key");
    let error = UpdateKey::load_file(&missing).unwrap_err().to_string();
    assert!(error.contains("missing.key: cannot read"), "{error}");
}

#[test]
fn debug_never_shows_the_secret() {
    let key = key("ci-bot", "finance.acme");
    let secret = BASE64.encode(&key.secret);
    let debug = format!("{key:?}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(!debug.contains(&secret), "{debug}");
    let (ring, _clock) = ring(vec![key]);
    assert!(!format!("{ring:?}").contains(&secret));
}

#[test]
fn node_config_lines_are_an_update_key_table() {
    let key = key("ci-bot", "finance.acme");
    let value: toml::Table = toml::from_str(&key.node_config_lines()).unwrap();
    let keys = value["update_key"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let config: UpdateKeyConfig = keys[0].clone().try_into().unwrap();
    let parsed = UpdateKey::try_from(config).unwrap();
    assert_eq!(parsed.name(), "ci-bot");
    assert_eq!(
        parsed.sign(&fields(), 7, "nonce-0001"),
        key.sign(&fields(), 7, "nonce-0001")
    );
}
