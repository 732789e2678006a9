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
//!
//! The rooms: `signed` (the canonical byte string and the proof an update carries),
//! `key` (keys, key files and node-config entries), `ring` (what a node accepts, the
//! replay cache), `identity` (updates authorised by an mTLS client certificate instead).

pub mod identity;
mod key;
mod ring;
mod signed;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::name::Name;

pub use key::{UpdateKey, UpdateKeyConfig};
pub use ring::KeyRing;
pub use signed::{PROOF_ENTRIES, Proof, SignedFields};

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
pub(crate) const VERSION_LINE: &[u8] = b"aop-update-v1\n";
/// Bytes of an HMAC-SHA256 tag.
pub(crate) const MAC_LEN: usize = 32;
/// Characters of a standard base64 (padded) 32-byte tag.
pub(crate) const SIGNATURE_TEXT_LEN: usize = 44;
pub(crate) const NONCE_MIN_LEN: usize = 8;
pub(crate) const NONCE_MAX_LEN: usize = 64;
/// Bytes of a nonce from [`Proof::new_nonce`].
pub(crate) const NONCE_BYTES: usize = 16;
/// Most replay-cache entries; each is a key name and a nonce, so this bounds it near 100 MB.
pub(crate) const REPLAY_CACHE_CAPACITY: u64 = 1_000_000;

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

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
        "client certificate identity {san} may update zone{} {}, not zone {zone}",
        if zones.len() == 1 { "" } else { "s" },
        zones.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    IdentityWrongZone {
        san: String,
        zones: Vec<Name>,
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
        matches!(
            self,
            AuthError::WrongZone { .. } | AuthError::IdentityWrongZone { .. }
        )
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
