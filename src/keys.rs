//! Update keys: who may register, renew and deregister agents in a zone, in the spirit of
//! DNS TSIG (RFC 8945).
//!
//! A client holding an [`UpdateKey`] signs each update with HMAC-SHA256 and sends the proof in
//! four gRPC metadata entries ([`KEY_HEADER`], [`TIME_HEADER`], [`NONCE_HEADER`],
//! [`SIGNATURE_HEADER`]). The MAC is computed over a canonical byte string of the request's
//! fields ([`SignedFields`]), never over the protobuf bytes: protobuf encoding is not
//! canonical (field order, default values, unknown fields and varint widths may differ
//! between encoders and across a proxy), so two honest parties could disagree on the bytes of
//! the same request. The canonical string is length-prefixed field by field, so no value can
//! be mistaken for another whatever bytes it holds.
//!
//! As in TSIG, the MAC also covers the key's name, a timestamp and a nonce. A node
//! ([`KeyRing`]) refuses a proof dated more than [`SIGNATURE_WINDOW_SECS`] away from its own
//! clock, and remembers every accepted (key, nonce) for twice that window, so a captured
//! request cannot be replayed. Nonces are recorded only once a proof has passed every other
//! check, so only a key holder can fill the replay cache.
//!
//! Secrets never leave this module in text meant for people: [`UpdateKey`]'s `Debug` redacts
//! it and no error message carries it. Only [`UpdateKey::to_key_file`] and
//! [`UpdateKey::node_config_lines`] write it, on purpose.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore as _;
use serde::Deserialize;
use sha2::Sha256;

use crate::clock::Clock;
use crate::name::Name;

/// How far a proof's timestamp may be from the verifying node's clock, either way.
pub const SIGNATURE_WINDOW_SECS: u64 = 300;

/// gRPC metadata entry carrying the key's name.
pub const KEY_HEADER: &str = "aop-key";
/// gRPC metadata entry carrying the signing time, decimal seconds since the Unix epoch.
pub const TIME_HEADER: &str = "aop-time";
/// gRPC metadata entry carrying the request's nonce.
pub const NONCE_HEADER: &str = "aop-nonce";
/// gRPC metadata entry carrying the MAC, standard base64.
pub const SIGNATURE_HEADER: &str = "aop-signature";

/// The only MAC algorithm, named as in key files (and as TSIG names it).
pub const ALGORITHM: &str = "hmac-sha256";

/// Fewest secret bytes a key may have (`aop key new` makes [`GENERATED_SECRET_LEN`]).
pub const MIN_SECRET_LEN: usize = 16;
/// Secret bytes of a generated key: the output size of SHA-256.
pub const GENERATED_SECRET_LEN: usize = 32;

/// First line of every canonical byte string; a new encoding gets a new version.
const VERSION_LINE: &[u8] = b"aop-update-v1\n";
/// Bytes of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;
/// Characters of a standard base64 (padded) 32-byte tag.
const SIGNATURE_TEXT_LEN: usize = 44;
const NONCE_MIN_LEN: usize = 8;
const NONCE_MAX_LEN: usize = 64;
/// Bytes of a nonce from [`Proof::new_nonce`].
const NONCE_BYTES: usize = 16;
/// Most replay-cache entries; each is a key name and a nonce, so this bounds it near 100 MB.
const REPLAY_CACHE_CAPACITY: u64 = 1_000_000;

type HmacSha256 = Hmac<Sha256>;

/// The canonical byte string of an update's fields: what a [`Proof`] signs.
///
/// It starts with the version line `aop-update-v1\n`, then field `op`, then the fields in the
/// order the caller puts them. Each field is written as
/// `<field>=<decimal byte length>:<value bytes>\n`, netstring-like: a reader knows where every
/// value ends from its length, so no value can be confused with another, whatever bytes it
/// holds (`=`, `:` or newlines included).
///
/// Field names are chosen by code, not by peers, and must be lowercase ASCII letters, digits,
/// `_` or `-` (a name containing `=` or a newline could forge a field boundary). Numbers are
/// decimal text ([`SignedFields::put_u64`]). A list `tags` of two items is written as the
/// count field `tags#=1:2\n` followed by `tags[0]=...\n` and `tags[1]=...\n`
/// ([`SignedFields::put_list`]).
///
/// Signer and verifier must put the same fields in the same order; the MAC then also appends
/// fields `key`, `time` and `nonce` (see [`UpdateKey::sign`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedFields {
    bytes: Vec<u8>,
}

impl SignedFields {
    /// Starts the string for an update `operation` (such as `register`): the version line, then
    /// field `op`.
    pub fn new(operation: &str) -> SignedFields {
        let mut fields = SignedFields {
            bytes: VERSION_LINE.to_vec(),
        };
        fields.put("op", operation);
        fields
    }

    /// Appends a text field.
    pub fn put(&mut self, field: &str, value: &str) -> &mut Self {
        debug_assert!(is_field_name(field), "bad signed field name {field:?}");
        self.push(field, value.as_bytes());
        self
    }

    /// Appends a number as decimal text.
    pub fn put_u64(&mut self, field: &str, value: u64) -> &mut Self {
        debug_assert!(is_field_name(field), "bad signed field name {field:?}");
        self.push(field, value.to_string().as_bytes());
        self
    }

    /// Appends a list: field `<field>#` with the item count, then `<field>[<i>]` for each item
    /// in order.
    pub fn put_list(&mut self, field: &str, items: &[String]) -> &mut Self {
        debug_assert!(is_field_name(field), "bad signed field name {field:?}");
        self.push(&format!("{field}#"), items.len().to_string().as_bytes());
        for (index, item) in items.iter().enumerate() {
            self.push(&format!("{field}[{index}]"), item.as_bytes());
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn push(&mut self, field: &str, value: &[u8]) {
        self.bytes.extend_from_slice(field.as_bytes());
        self.bytes.push(b'=');
        self.bytes
            .extend_from_slice(value.len().to_string().as_bytes());
        self.bytes.push(b':');
        self.bytes.extend_from_slice(value);
        self.bytes.push(b'\n');
    }
}

impl fmt::Debug for SignedFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SignedFields")
            .field(&String::from_utf8_lossy(&self.bytes))
            .finish()
    }
}

fn is_field_name(field: &str) -> bool {
    !field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What a proof's MAC covers beyond the request's fields: key name, time and nonce, as further
/// canonical fields.
fn proof_trailer(key: &str, time: u64, nonce: &str) -> SignedFields {
    let mut trailer = SignedFields { bytes: Vec::new() };
    trailer
        .put("key", key)
        .put_u64("time", time)
        .put("nonce", nonce);
    trailer
}

/// An update key as written in a key file or in a node config's `[[update_key]]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyConfig {
    /// The key's name, dotted like a DNS name (`ci-bot`, `ci-bot.finance.acme`).
    pub name: String,
    /// The zone the key may update (`.` for the root).
    pub zone: String,
    /// The MAC algorithm; only `hmac-sha256`, the default.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Standard base64 of at least [`MIN_SECRET_LEN`] bytes.
    pub secret: String,
}

impl fmt::Debug for UpdateKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateKeyConfig")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TryFrom<UpdateKeyConfig> for UpdateKey {
    type Error = KeyError;

    fn try_from(config: UpdateKeyConfig) -> Result<UpdateKey, KeyError> {
        if let Some(algorithm) = &config.algorithm {
            check_algorithm(algorithm)?;
        }
        UpdateKey::new(&config.name, &config.zone, &config.secret)
    }
}

/// The key file as parsed, with positions for errors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileSpanned {
    name: toml::Spanned<String>,
    zone: toml::Spanned<String>,
    #[serde(default)]
    algorithm: Option<toml::Spanned<String>>,
    secret: toml::Spanned<String>,
}

/// An update key: a name, the zone it may update, and a secret shared by the clients that
/// sign with it and the nodes that accept it.
#[derive(Clone)]
pub struct UpdateKey {
    name: String,
    zone: Name,
    secret: Arc<[u8]>,
    /// The MAC already keyed, cloned per use so the key is hashed once.
    mac: HmacSha256,
}

impl fmt::Debug for UpdateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateKey")
            .field("name", &self.name)
            .field("zone", &self.zone)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl UpdateKey {
    /// A new key with [`GENERATED_SECRET_LEN`] random bytes from a cryptographically secure
    /// generator.
    pub fn generate(name: &str, zone: &str) -> Result<UpdateKey, KeyError> {
        let mut secret = [0u8; GENERATED_SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        Self::from_parts(name, zone, &secret)
    }

    /// A key from its written form: `name` a dotted name (`ci-bot`, `ci-bot.finance.acme`),
    /// `zone` a zone name (`.` for the root), `secret_base64` standard base64 of at least
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn new(name: &str, zone: &str, secret_base64: &str) -> Result<UpdateKey, KeyError> {
        // The decode error is not shown: it quotes a byte and offset of the secret.
        let secret = BASE64
            .decode(secret_base64)
            .map_err(|_| KeyError::InvalidField {
                field: "secret",
                reason: "is not standard base64 (A-Z, a-z, 0-9, + and /, padded with =)".into(),
            })?;
        Self::from_parts(name, zone, &secret)
    }

    fn from_parts(name: &str, zone: &str, secret: &[u8]) -> Result<UpdateKey, KeyError> {
        let key_name = Name::parse(name).map_err(|error| KeyError::InvalidField {
            field: "name",
            reason: format!(
                "{error} (key names are dotted like DNS names, such as \"ci-bot\" or \"ci-bot.finance.acme\")"
            ),
        })?;
        if key_name.is_root() {
            return Err(KeyError::InvalidField {
                field: "name",
                reason: "\".\" is not a key name: key names are dotted like DNS names, such as \"ci-bot\" or \"ci-bot.finance.acme\"".into(),
            });
        }
        let zone = Name::parse(zone).map_err(|error| KeyError::InvalidField {
            field: "zone",
            reason: format!("{error} (the root zone is written \".\")"),
        })?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::InvalidField {
                field: "secret",
                reason: format!(
                    "is {} bytes long (at least {MIN_SECRET_LEN} bytes required; `aop key new` makes {GENERATED_SECRET_LEN})",
                    secret.len()
                ),
            });
        }
        // HMAC accepts a key of any length, so this cannot fail; map it anyway rather than
        // unwrap.
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::InvalidField {
            field: "secret",
            reason: "is not a usable HMAC-SHA256 key".into(),
        })?;
        Ok(UpdateKey {
            name: key_name.as_str().to_string(),
            zone,
            secret: Arc::from(secret),
            mac,
        })
    }

    /// The key's canonical (lowercase) name, as it goes into [`KEY_HEADER`] and the MAC.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone this key may update.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Reads a key file (see [`UpdateKey::to_key_file`]). Errors name the file, and the line
    /// and column where the file says something wrong; they never quote the secret.
    pub fn load_file(path: &Path) -> Result<UpdateKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |offset: usize, message: String| {
            let (line, column) = crate::zone::file::line_column(&text, offset);
            KeyError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let file: KeyFileSpanned = toml::from_str(&text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let message = redact_secret(&text, error.message().trim());
            invalid(offset, message)
        })?;
        let at = |spanned_start: usize, error: KeyError| match error {
            KeyError::InvalidField { field, reason } => {
                invalid(spanned_start, format!("{field} {reason}"))
            }
            other => other,
        };
        if let Some(algorithm) = &file.algorithm {
            check_algorithm(algorithm.get_ref()).map_err(|e| at(algorithm.span().start, e))?;
        }
        let secret = BASE64.decode(file.secret.get_ref()).map_err(|_| {
            invalid(
                file.secret.span().start,
                "secret is not standard base64 (A-Z, a-z, 0-9, + and /, padded with =)".into(),
            )
        })?;
        Self::from_parts(file.name.get_ref(), file.zone.get_ref(), &secret).map_err(|error| {
            let start = match &error {
                KeyError::InvalidField { field: "name", .. } => file.name.span().start,
                KeyError::InvalidField { field: "zone", .. } => file.zone.span().start,
                _ => file.secret.span().start,
            };
            at(start, error)
        })
    }

    /// The text of a key file for this key, secret included, with a comment saying how to use
    /// it. Whoever writes it to disk should make it readable by its owner only.
    pub fn to_key_file(&self) -> String {
        format!(
            "# AOP update key {name:?} for zone {zone}.\n\
             # Keep this file secret: whoever holds it can change the agents of zone {zone}.\n\
             # Sign updates with `aop register --key-file FILE` (or `aop deregister --key-file FILE`);\n\
             # accept it in a node with `aop node --update-key FILE`.\n\
             name = \"{name}\"\n\
             zone = \"{zone}\"\n\
             algorithm = \"{ALGORITHM}\"\n\
             secret = \"{secret}\"\n",
            name = self.name,
            zone = self.zone,
            secret = BASE64.encode(&self.secret),
        )
    }

    /// The lines a node config file (`deploy/nodes/*.toml`) uses to accept this key.
    pub fn node_config_lines(&self) -> String {
        // Names are LDH labels and base64 has no quote or backslash, so plain quoting is
        // valid TOML.
        format!(
            "[[update_key]]\nname = \"{}\"\nzone = \"{}\"\nsecret = \"{}\"\n",
            self.name,
            self.zone,
            BASE64.encode(&self.secret),
        )
    }

    /// Signs an update's `fields` as of `unix_secs` with a fresh `nonce` (see
    /// [`Proof::new_nonce`]).
    pub fn sign(&self, fields: &SignedFields, unix_secs: u64, nonce: &str) -> Proof {
        let tag = self
            .keyed_mac(fields, unix_secs, nonce)
            .finalize()
            .into_bytes();
        Proof {
            key: self.name.clone(),
            time: unix_secs,
            nonce: nonce.to_string(),
            signature: BASE64.encode(tag),
        }
    }

    /// Signs with the system clock and a new nonce: what a client does for each request.
    pub fn sign_now(&self, fields: &SignedFields) -> Proof {
        let unix_secs = crate::clock::system_unix_ms() / 1000;
        self.sign(fields, unix_secs, &Proof::new_nonce())
    }

    fn keyed_mac(&self, fields: &SignedFields, time: u64, nonce: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(fields.as_bytes());
        mac.update(proof_trailer(&self.name, time, nonce).as_bytes());
        mac
    }
}

fn check_algorithm(algorithm: &str) -> Result<(), KeyError> {
    if algorithm == ALGORITHM {
        Ok(())
    } else {
        Err(KeyError::InvalidField {
            field: "algorithm",
            reason: format!(
                "{:?} is not supported (the only algorithm is \"{ALGORITHM}\")",
                abbreviate(algorithm)
            ),
        })
    }
}

/// Belt and braces for TOML error messages: serde's type errors quote the offending value,
/// which could be a mistyped secret. Replaces the text of any `secret = ...` value.
fn redact_secret(text: &str, message: &str) -> String {
    let mut message = message.to_string();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("secret") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if value.len() >= 4 && message.contains(value) {
            message = message.replace(value, "<redacted>");
        }
    }
    message
}

/// The proof an update carries: which key signed it, when, with which nonce, and the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The key's canonical name.
    pub key: String,
    /// Signing time, seconds since the Unix epoch.
    pub time: u64,
    /// 8 to 64 characters of `0-9A-Za-z_-`, never reused with the same key.
    pub nonce: String,
    /// Standard base64 of the 32-byte HMAC-SHA256.
    pub signature: String,
}

impl Proof {
    /// A new random nonce: 16 bytes as 32 lowercase hex characters.
    pub fn new_nonce() -> String {
        let mut bytes = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads the four proof entries an update carried (in gRPC metadata, say): `values`
    /// gives every value of an entry, `None` for a value that is not printable ASCII.
    /// `Ok(None)` when no entry is present; an error when some are present but one is
    /// missing, repeated or invalid.
    pub fn from_entries<'a>(
        values: impl Fn(&'static str) -> Vec<Option<&'a str>>,
    ) -> Result<Option<Proof>, AuthError> {
        if PROOF_ENTRIES.iter().all(|entry| values(entry).is_empty()) {
            return Ok(None);
        }
        let header = |name: &'static str| one_value(name, values(name));
        let key_text = header(KEY_HEADER)?;
        let key = match Name::parse(key_text) {
            Ok(name) if !name.is_root() => name.as_str().to_string(),
            Ok(_) => return Err(malformed(format!("{KEY_HEADER} \".\" is not a key name"))),
            Err(error) => return Err(malformed(format!("{KEY_HEADER}: {error}"))),
        };
        let time_text = header(TIME_HEADER)?;
        let time = parse_time(time_text).ok_or_else(|| {
            malformed(format!(
                "{TIME_HEADER} {:?} is not a decimal number of seconds since the Unix epoch",
                abbreviate(time_text)
            ))
        })?;
        let nonce = header(NONCE_HEADER)?;
        check_nonce(nonce)?;
        let signature = header(SIGNATURE_HEADER)?;
        decode_signature(signature)?;
        Ok(Some(Proof {
            key,
            time,
            nonce: nonce.to_string(),
            signature: signature.to_string(),
        }))
    }

    /// The four proof entries, as an update carries them.
    pub fn entries(&self) -> [(&'static str, String); 4] {
        [
            (KEY_HEADER, self.key.clone()),
            (TIME_HEADER, self.time.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

/// The entries of a proof, in the order they are read and written.
pub const PROOF_ENTRIES: [&str; 4] = [KEY_HEADER, TIME_HEADER, NONCE_HEADER, SIGNATURE_HEADER];

fn malformed(reason: String) -> AuthError {
    AuthError::Malformed { reason }
}

/// The one value of a proof entry, as text.
fn one_value<'a>(name: &'static str, values: Vec<Option<&'a str>>) -> Result<&'a str, AuthError> {
    let mut values = values.into_iter();
    let Some(value) = values.next() else {
        return Err(malformed(format!(
            "{name} is missing (an update proof is the four entries {KEY_HEADER}, {TIME_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER})"
        )));
    };
    if values.next().is_some() {
        return Err(malformed(format!("{name} is given more than once")));
    }
    value.ok_or_else(|| malformed(format!("{name} is not printable ASCII")))
}

fn parse_time(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn check_nonce(nonce: &str) -> Result<(), AuthError> {
    let ok_chars = nonce
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok_chars && (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len()) {
        return Ok(());
    }
    Err(malformed(format!(
        "{NONCE_HEADER} {:?} must be {NONCE_MIN_LEN} to {NONCE_MAX_LEN} characters of 0-9, A-Z, a-z, _ and - (it has {} bytes)",
        abbreviate(nonce),
        nonce.len()
    )))
}

fn decode_signature(signature: &str) -> Result<Vec<u8>, AuthError> {
    let wrong = || {
        malformed(format!(
            "{SIGNATURE_HEADER} must be the standard base64 of a {MAC_LEN}-byte HMAC-SHA256 ({SIGNATURE_TEXT_LEN} characters)"
        ))
    };
    // Length first, so a huge value is refused without decoding it.
    if signature.len() != SIGNATURE_TEXT_LEN {
        return Err(wrong());
    }
    match BASE64.decode(signature) {
        Ok(tag) if tag.len() == MAC_LEN => Ok(tag),
        _ => Err(wrong()),
    }
}

/// Keeps messages readable when a peer sends a huge value.
fn abbreviate(text: &str) -> String {
    const KEEP: usize = 64;
    if text.chars().count() <= KEEP {
        text.to_string()
    } else {
        let head: String = text.chars().take(KEEP).collect();
        format!("{head}...")
    }
}

/// The update keys a node accepts, and the nonces it has recently accepted.
pub struct KeyRing {
    keys: HashMap<String, UpdateKey>,
    /// Accepted (key name, nonce) pairs. A proof is accepted within ±window of its time, so a
    /// pair must be remembered for 2 × window (plus a second for rounding) to refuse every
    /// replay.
    seen: moka::sync::Cache<(String, String), ()>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&UpdateKey> = self.keys.values().collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        f.debug_struct("KeyRing")
            .field("keys", &keys)
            .field("seen_nonces", &self.seen.entry_count())
            .finish()
    }
}

impl KeyRing {
    /// A ring of `keys`; two keys with the same name are an error naming it.
    pub fn new(keys: Vec<UpdateKey>, clock: Arc<dyn Clock>) -> Result<KeyRing, KeyError> {
        let mut by_name = HashMap::with_capacity(keys.len());
        for key in keys {
            if by_name.contains_key(&key.name) {
                return Err(KeyError::DuplicateKey { name: key.name });
            }
            by_name.insert(key.name.clone(), key);
        }
        let seen = moka::sync::Cache::builder()
            .max_capacity(REPLAY_CACHE_CAPACITY)
            .time_to_live(Duration::from_secs(2 * SIGNATURE_WINDOW_SECS + 1))
            .build();
        Ok(KeyRing {
            keys: by_name,
            seen,
            clock,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The zones that have at least one key, sorted.
    pub fn zones(&self) -> Vec<Name> {
        let mut zones: Vec<Name> = self.keys.values().map(|key| key.zone.clone()).collect();
        zones.sort();
        zones.dedup();
        zones
    }

    fn zone_has_keys(&self, zone: &Name) -> bool {
        self.keys.values().any(|key| &key.zone == zone)
    }

    /// Checks that an update of `zone` whose canonical fields are `fields` carries a valid,
    /// fresh, first-seen proof by a key of that zone, and records its nonce.
    ///
    /// Checks in order: a well-formed proof is present ([`AuthError::Missing`],
    /// [`AuthError::Malformed`]); its key is known ([`AuthError::UnknownKey`]); the MAC matches,
    /// compared in constant time ([`AuthError::BadSignature`]); its time is within
    /// [`SIGNATURE_WINDOW_SECS`] of this node's clock ([`AuthError::Stale`]); the key may update
    /// `zone` ([`AuthError::WrongZone`]); the nonce is new for the key
    /// ([`AuthError::Replayed`]). The nonce is recorded only when all pass, atomically, so of
    /// two concurrent identical requests exactly one passes.
    pub fn verify(
        &self,
        zone: &Name,
        fields: &SignedFields,
        proof: Option<&Proof>,
    ) -> Result<(), AuthError> {
        let Some(proof) = proof else {
            return Err(AuthError::Missing {
                zone: zone.clone(),
                zone_has_keys: self.zone_has_keys(zone),
            });
        };
        check_nonce(&proof.nonce)?;
        let tag = decode_signature(&proof.signature)?;
        let Some(key) = self.keys.get(&proof.key) else {
            return Err(AuthError::UnknownKey {
                key: abbreviate(&proof.key),
            });
        };
        key.keyed_mac(fields, proof.time, &proof.nonce)
            .verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature {
                key: key.name.clone(),
            })?;
        let now_secs = i128::from(self.clock.unix_ms() / 1000);
        let skew = now_secs - i128::from(proof.time);
        if skew.unsigned_abs() > u128::from(SIGNATURE_WINDOW_SECS) {
            let skew_secs =
                i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
            return Err(AuthError::Stale {
                key: key.name.clone(),
                skew_secs,
            });
        }
        if &key.zone != zone {
            return Err(AuthError::WrongZone {
                key: key.name.clone(),
                key_zone: key.zone.clone(),
                zone: zone.clone(),
            });
        }
        let entry = self
            .seen
            .entry((key.name.clone(), proof.nonce.clone()))
            .or_insert_with(|| ());
        if !entry.is_fresh() {
            return Err(AuthError::Replayed {
                key: key.name.clone(),
            });
        }
        Ok(())
    }
}

/// Why an update key could not be made, read or configured. Never quotes the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("{}: cannot read update key file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("update key {field} {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("update key {name:?} is configured more than once: key names must be unique on a node")]
    DuplicateKey { name: String },
}

/// Why an update's proof was refused. All are `UNAUTHENTICATED` except
/// [`AuthError::WrongZone`], which is `PERMISSION_DENIED` (see
/// [`AuthError::is_permission_denied`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("{}", missing_message(zone, *zone_has_keys))]
    Missing { zone: Name, zone_has_keys: bool },
    #[error("malformed update proof: {reason}")]
    Malformed { reason: String },
    #[error(
        "update signed with key {key:?}, which this node does not know: sign with a key of the zone (its file from `aop key new`), or give the node that key with `--update-key`"
    )]
    UnknownKey { key: String },
    #[error(
        "update signed with key {key:?} has a bad signature: the client's secret differs from the node's, or the request was changed on the way"
    )]
    BadSignature { key: String },
    #[error("{}", stale_message(key, *skew_secs))]
    Stale { key: String, skew_secs: i64 },
    #[error("key {key:?} may update zone {key_zone}, not zone {zone}")]
    WrongZone {
        key: String,
        key_zone: Name,
        zone: Name,
    },
    #[error(
        "update signed with key {key:?} is a replay: its nonce was already used; sign each request with a fresh nonce"
    )]
    Replayed { key: String },
}

impl AuthError {
    /// True when the proof is valid but its key may not update this zone (`PERMISSION_DENIED`);
    /// every other refusal is `UNAUTHENTICATED`.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, AuthError::WrongZone { .. })
    }
}

fn missing_message(zone: &Name, zone_has_keys: bool) -> String {
    if zone_has_keys {
        format!(
            "updates to zone {zone} need a signature by one of its update keys: pass `--key-file FILE` with a key of zone {zone}"
        )
    } else {
        format!(
            "zone {zone} accepts no updates: no update key is configured for it (make one with `aop key new NAME --zone {zone}` and give it to the node with `--update-key FILE`)"
        )
    }
}

fn stale_message(key: &str, skew_secs: i64) -> String {
    if skew_secs >= 0 {
        format!(
            "update signed with key {key:?} is {skew_secs} s old (limit {SIGNATURE_WINDOW_SECS} s): check the client's clock"
        )
    } else {
        format!(
            "update signed with key {key:?} is dated {} s in the future (limit {SIGNATURE_WINDOW_SECS} s): check the client's clock",
            skew_secs.unsigned_abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

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
            "aop-update-v1\nop=8:register\nname=2:é\nlease=2:60\ntags#=1:1\ntags[0]=1:t\n"
                .as_bytes()
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
            format!(
                "name = \"ci-bot\"\nzone = \"acme\"\nsecret = \"{secret}\"\ncolour = \"blue\"\n"
            ),
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
            format!("name = \"ci-bot\"\nzone = \"acme\"\nalgorithm = \"hmac-md5\"\nsecret = \"{secret}\"\n"),
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
}
