//! The envelope of every gossip datagram: the group key, sealing and opening, and the replay
//! window. Nothing from the network reaches the SWIM engine before it has been opened here.
//!
//! Layout (`docs/protocol.md` 9.2):
//!
//! ```text
//! 0   4  magic "AOPg"
//! 4   1  envelope version (1)
//! 5   8  group id: the first 8 octets of SHA-256("aop gossip group v1" || key)
//! 13  8  sender id: random, drawn once per process start (big-endian u64)
//! 21  8  sequence: counts this sender's datagrams from 1 (big-endian u64)
//! 29 24  nonce (random)
//! 53  .. ciphertext of the SWIM packet, then the 16-octet Poly1305 tag
//! ```
//!
//! The first 53 octets are the associated data, so none of them can be altered without the
//! tag failing. Why XChaCha20-Poly1305 with a random nonce rather than ChaCha20-Poly1305
//! with a counter: a counter nonce must never repeat under one key, and a node that restarts
//! (or is restored from a backup, or runs twice by mistake) would start its counter again
//! under the same group key; a 192-bit random nonce cannot collide in practice and needs no
//! state that survives a restart. The sequence number is there for replay detection only.
//!
//! Replays: each sender's highest sequence and a 64-wide bitmap below it (the IPsec and
//! WireGuard window), checked only after the tag verified, so a forged datagram cannot move
//! a window. At most [`MAX_SENDERS`] windows are kept; the one heard from least recently
//! gives way. A datagram replayed after its sender's window gave way (or from a sender that
//! restarted, which draws a new id) is accepted once: SWIM messages carry incarnation
//! numbers and foca ignores stale ones, so such a replay can repeat old news but not make
//! a member more alive or more dead than its owner last said.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Magic octets that open every datagram.
pub const MAGIC: &[u8; 4] = b"AOPg";
/// The envelope's version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Octets before the ciphertext (also the associated data).
pub const HEADER_LEN: usize = 53;
/// The Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a SWIM packet.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Senders whose replay windows are kept at once.
pub const MAX_SENDERS: usize = 1024;
/// Width of the replay window, in sequence numbers.
const WINDOW: u64 = 64;

/// Why a datagram was dropped; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the header and tag.
    Truncated,
    /// Not a gossip envelope of this version, or sealed for another group's key.
    UnknownGroup,
    /// The tag does not verify: altered, or sealed with another key under a colliding id.
    Authentication,
    /// A sequence number already seen, or older than the window.
    Replay,
    /// Opened, but the SWIM engine refused its content.
    Invalid,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Truncated,
        DropReason::UnknownGroup,
        DropReason::Authentication,
        DropReason::Replay,
        DropReason::Invalid,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::UnknownGroup => "unknown_group",
            DropReason::Authentication => "authentication",
            DropReason::Replay => "replay",
            DropReason::Invalid => "invalid",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            DropReason::Truncated => 0,
            DropReason::UnknownGroup => 1,
            DropReason::Authentication => 2,
            DropReason::Replay => 3,
            DropReason::Invalid => 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("gossip key file {path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "gossip key file {path}: not base64 ({reason}); it must hold 32 random octets in \
         base64, for example from `head -c 32 /dev/urandom | base64`"
    )]
    NotBase64 { path: String, reason: String },
    #[error(
        "gossip key file {path}: {len} octets after base64 decoding; a group key is exactly \
         32 octets (44 base64 characters)"
    )]
    Length { path: String, len: usize },
}

/// The group's shared key: every member of one operator's fleet holds the same one.
#[derive(Clone)]
pub struct GroupKey {
    key: [u8; 32],
}

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("GroupKey")
            .field(
                "group_id",
                &format_args!("{:016x}", u64::from_be_bytes(self.group_id())),
            )
            .finish()
    }
}

impl GroupKey {
    pub fn from_bytes(key: [u8; 32]) -> GroupKey {
        GroupKey { key }
    }

    /// Reads a key file: 32 octets in standard base64 on one line (surrounding whitespace
    /// ignored).
    pub fn load_file(path: &Path) -> Result<GroupKey, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: shown.clone(),
            source,
        })?;
        GroupKey::parse(&text).map_err(|error| match error {
            ParseKeyError::NotBase64(reason) => KeyFileError::NotBase64 {
                path: shown,
                reason,
            },
            ParseKeyError::Length(len) => KeyFileError::Length { path: shown, len },
        })
    }

    fn parse(text: &str) -> Result<GroupKey, ParseKeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|error| ParseKeyError::NotBase64(error.to_string()))?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ParseKeyError::Length(bytes.len()))?;
        Ok(GroupKey { key })
    }

    /// The key in the key file's form.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key)
    }

    /// Names the group without revealing the key: datagrams of another group are told
    /// apart from forged ones by it.
    pub fn group_id(&self) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(b"aop gossip group v1")
            .chain_update(self.key)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        id
    }
}

enum ParseKeyError {
    NotBase64(String),
    Length(usize),
}

/// Seals this member's datagrams.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    group: [u8; 8],
    sender: u64,
    sequence: u64,
}

impl Sealer {
    /// `sender` identifies this process's datagrams for replay windows: draw it at random on
    /// every start.
    pub fn new(key: &GroupKey, sender: u64) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.key.into()),
            group: key.group_id(),
            sender,
            sequence: 0,
        }
    }

    /// The datagram carrying `packet`, under a fresh `nonce`.
    pub fn seal(&mut self, packet: &[u8], nonce: [u8; 24]) -> Vec<u8> {
        self.sequence += 1;
        let mut datagram = Vec::with_capacity(OVERHEAD + packet.len());
        datagram.extend_from_slice(MAGIC);
        datagram.push(ENVELOPE_VERSION);
        datagram.extend_from_slice(&self.group);
        datagram.extend_from_slice(&self.sender.to_be_bytes());
        datagram.extend_from_slice(&self.sequence.to_be_bytes());
        datagram.extend_from_slice(&nonce);
        let nonce = XNonce::from(nonce);
        // Encryption fails only for messages past ChaCha20's 256 GiB block counter.
        match self.cipher.encrypt(
            &nonce,
            Payload {
                msg: packet,
                aad: &datagram,
            },
        ) {
            Ok(ciphertext) => datagram.extend_from_slice(&ciphertext),
            Err(_) => datagram.clear(),
        }
        datagram
    }
}

/// One sender's replay window.
#[derive(Debug, Clone, Copy)]
struct Window {
    highest: u64,
    /// Bit i set: `highest - i` was seen (bit 0 is `highest` itself).
    seen: u64,
    /// When it was last moved, in [`Opener::open`] calls, for eviction.
    touched: u64,
}

impl Window {
    /// Accepts `sequence` once.
    fn accept(&mut self, sequence: u64) -> bool {
        if sequence > self.highest {
            let shift = sequence - self.highest;
            self.seen = if shift >= WINDOW {
                1
            } else {
                (self.seen << shift) | 1
            };
            self.highest = sequence;
            return true;
        }
        let back = self.highest - sequence;
        if back >= WINDOW {
            return false;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// Opens datagrams from the group, keeping the replay windows.
pub struct Opener {
    cipher: XChaCha20Poly1305,
    group: [u8; 8],
    windows: HashMap<u64, Window>,
    opened: u64,
}

impl Opener {
    pub fn new(key: &GroupKey) -> Opener {
        Opener {
            cipher: XChaCha20Poly1305::new(&key.key.into()),
            group: key.group_id(),
            windows: HashMap::new(),
            opened: 0,
        }
    }

    /// The SWIM packet inside `datagram`, or why it is dropped.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, DropReason> {
        if datagram.len() < OVERHEAD {
            return Err(DropReason::Truncated);
        }
        let (header, ciphertext) = datagram.split_at(HEADER_LEN);
        if &header[..4] != MAGIC || header[4] != ENVELOPE_VERSION || header[5..13] != self.group {
            return Err(DropReason::UnknownGroup);
        }
        let sender = u64::from_be_bytes(octets(&header[13..21]));
        let sequence = u64::from_be_bytes(octets(&header[21..29]));
        let nonce = XNonce::from(octets::<24>(&header[29..53]));
        let packet = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: header,
                },
            )
            .map_err(|_| DropReason::Authentication)?;
        self.opened += 1;
        let opened = self.opened;
        if !self.windows.contains_key(&sender) && self.windows.len() >= MAX_SENDERS {
            let stalest = self
                .windows
                .iter()
                .min_by_key(|(_, window)| window.touched)
                .map(|(id, _)| *id);
            if let Some(id) = stalest {
                self.windows.remove(&id);
            }
        }
        let window = self.windows.entry(sender).or_insert(Window {
            highest: 0,
            seen: 1,
            touched: opened,
        });
        if !window.accept(sequence) {
            return Err(DropReason::Replay);
        }
        window.touched = opened;
        Ok(packet)
    }

    /// Replay windows held now.
    pub fn senders(&self) -> usize {
        self.windows.len()
    }
}

/// A fixed-size copy of a slice whose length the caller has checked.
fn octets<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&slice[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> GroupKey {
        GroupKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_sealed_datagram_opens_once() {
        let mut sealer = Sealer::new(&key(1), 7);
        let mut opener = Opener::new(&key(1));
        let datagram = sealer.seal(b"swim", [3; 24]);
        assert_eq!(datagram.len(), 4 + OVERHEAD);
        assert_eq!(opener.open(&datagram).unwrap(), b"swim");
        assert_eq!(opener.open(&datagram), Err(DropReason::Replay));
    }

    #[test]
    fn every_fault_has_its_reason() {
        let mut sealer = Sealer::new(&key(1), 7);
        let mut opener = Opener::new(&key(1));
        let datagram = sealer.seal(b"swim", [3; 24]);
        assert_eq!(
            opener.open(&datagram[..OVERHEAD - 1]),
            Err(DropReason::Truncated)
        );
        let mut other = Sealer::new(&key(2), 7);
        assert_eq!(
            opener.open(&other.seal(b"swim", [3; 24])),
            Err(DropReason::UnknownGroup)
        );
        for position in [13, 21, 30, datagram.len() - 1] {
            let mut altered = datagram.clone();
            altered[position] ^= 1;
            assert_eq!(
                opener.open(&altered),
                Err(DropReason::Authentication),
                "octet {position} altered"
            );
        }
        // Cut short inside the ciphertext: the tag no longer verifies.
        assert_eq!(
            opener.open(&datagram[..datagram.len() - 1]),
            Err(DropReason::Authentication)
        );
        assert!(opener.open(&datagram).is_ok());
    }

    #[test]
    fn the_window_takes_late_datagrams_once_and_refuses_older_ones() {
        let mut sealer = Sealer::new(&key(1), 9);
        let mut opener = Opener::new(&key(1));
        let datagrams: Vec<Vec<u8>> = (0..100).map(|_| sealer.seal(b"x", [0; 24])).collect();
        assert!(opener.open(&datagrams[99]).is_ok());
        // 64 behind the highest is outside the window; 63 behind is inside.
        assert_eq!(opener.open(&datagrams[99 - 64]), Err(DropReason::Replay));
        assert!(opener.open(&datagrams[99 - 63]).is_ok());
        assert_eq!(opener.open(&datagrams[99 - 63]), Err(DropReason::Replay));
        assert!(opener.open(&datagrams[98]).is_ok());
    }

    #[test]
    fn windows_are_bounded() {
        let mut opener = Opener::new(&key(1));
        for sender in 0..(MAX_SENDERS as u64 + 10) {
            let mut sealer = Sealer::new(&key(1), sender);
            assert!(opener.open(&sealer.seal(b"x", [0; 24])).is_ok());
        }
        assert_eq!(opener.senders(), MAX_SENDERS);
    }

    #[test]
    fn key_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        std::fs::write(&good, format!("{}\n", key(5).to_base64())).unwrap();
        assert_eq!(
            GroupKey::load_file(&good).unwrap().group_id(),
            key(5).group_id()
        );
        let short = dir.path().join("short.key");
        std::fs::write(&short, "AAAA").unwrap();
        let error = GroupKey::load_file(&short).unwrap_err().to_string();
        assert!(
            error.contains("3 octets") && error.contains("exactly 32"),
            "{error}"
        );
        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, "not base64!").unwrap();
        let error = GroupKey::load_file(&junk).unwrap_err().to_string();
        assert!(error.contains("not base64"), "{error}");
        let missing = dir.path().join("missing.key");
        let error = GroupKey::load_file(&missing).unwrap_err().to_string();
        assert!(error.contains("cannot read"), "{error}");
    }
}
