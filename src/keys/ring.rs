//! The keys a node accepts, and the nonces it has recently accepted (the replay cache).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::Mac;

use super::signed::{abbreviate, check_nonce, decode_signature};
use super::*;
use crate::clock::Clock;
use crate::name::Name;
use crate::store::NonceRow;

/// The update keys a node accepts, and the nonces it has recently accepted.
pub struct KeyRing {
    keys: HashMap<String, UpdateKey>,
    /// Accepted (key name, nonce) pairs. A proof is accepted within ±window of its time, so a
    /// pair must be remembered for 2 × window (plus a second for rounding) to refuse every
    /// replay.
    seen: moka::sync::Cache<(String, String), ()>,
    /// Nonces accepted since the writer last took them, to keep in the store (so a restart
    /// does not forget them).
    // std Mutex: held to push or take the list, never across an await.
    accepted: Mutex<Vec<NonceRow>>,
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
            accepted: Mutex::new(Vec::new()),
            clock,
        })
    }

    /// Remembers nonces accepted before a restart, so their replay is still refused.
    pub fn remember(&self, nonces: Vec<NonceRow>) {
        for row in nonces {
            self.seen.insert((row.key, row.nonce), ());
        }
    }

    /// The nonces accepted since the last call, for the writer to commit with its batch.
    pub fn take_accepted(&self) -> Vec<NonceRow> {
        std::mem::take(&mut *self.accepted.lock().unwrap_or_else(|p| p.into_inner()))
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
        // Past this a replay is refused as stale anyway.
        let expires_unix_ms =
            (proof.time.saturating_add(SIGNATURE_WINDOW_SECS + 1)).saturating_mul(1000);
        self.accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(NonceRow {
                key: key.name.clone(),
                nonce: proof.nonce.clone(),
                expires_unix_ms,
            });
        Ok(())
    }
}
