//! Update keys: a name, the zone it may update, a secret; read from key files (with
//! `FILE:LINE:COL` errors that never quote the secret) or node configs, written by
//! `aop key new`, and the signing side of a proof.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};
use rand::RngCore as _;
use serde::Deserialize;

use super::signed::{abbreviate, proof_trailer};
use super::*;
use crate::name::Name;

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
    pub(super) name: String,
    pub(super) zone: Name,
    pub(super) secret: Arc<[u8]>,
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
        Self::parse_file(path, &text)
    }

    /// A key file's text read as [`UpdateKey::load_file`] reads it, errors naming `path`.
    pub fn parse_file(path: &Path, text: &str) -> Result<UpdateKey, KeyError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = crate::zone::spanned::line_column(text, offset);
            KeyError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let file: KeyFileSpanned =
            crate::zone::spanned::from_str(text).map_err(|diagnostic| KeyError::Invalid {
                path: path.to_path_buf(),
                line: diagnostic.line,
                column: diagnostic.column,
                message: redact_secret(text, &diagnostic.message),
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

    pub(super) fn keyed_mac(&self, fields: &SignedFields, time: u64, nonce: &str) -> HmacSha256 {
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
