//! Positive answers for an agent (its TXT, its `_mcp._tcp` SRV set, its A/AAAA addresses)
//! written straight into bytes.
//!
//! Over a large zone nearly every question is new: the response cache cannot help, and the
//! full path in [`super::respond`] (hickory's parse, a `Message` of owned `Record`s, the
//! encoder with its name-compression table) is most of the door's CPU. These answers always
//! have the same few parts, so this module writes them directly from the agent: header,
//! question copied from the request, the records, our OPT record.
//!
//! The bytes must be exactly those the full path sends, so [`Writer`] compresses names the
//! way hickory's encoder does: every suffix of every name written is remembered (at most 64,
//! below offset 0x3FFF), a name written compressed (owners; at most 120 per message) ends in
//! a pointer to the first remembered suffix equal to one of its own, compared byte for byte
//! (so case-sensitively: a question in mixed case is not a suffix of a lowercase owner), and
//! names inside SRV data are written whole but still remembered. The tests compare this
//! writer with the full path byte for byte. Anything it does not cover (other types, names
//! that are not plain LDH labels, answers too big for the payload) returns `None` and goes to
//! the full path.

use std::io::Write as _;
use std::net::IpAddr;

use super::cache::SimpleQuery;
use super::message::EDNS_PAYLOAD;
use super::records::{self, TXT_STRING_MAX};
use crate::record::{Agent, answer_endpoints};

const HEADER_LEN: usize = 12;
const CLASS_IN: u16 = 1;
pub const TYPE_A: u16 = 1;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
/// hickory's encoder remembers at most this many suffixes per message...
const POINTER_CANDIDATES_MAX: usize = 64;
/// ... and compresses at most this many names.
const COMPRESSED_NAMES_MAX: usize = 120;
/// Pointers hold 14 bits of offset; hickory remembers suffixes only below this one.
const POINTER_OFFSET_LIMIT: usize = 0x3FFF;
/// The longest name on the wire (RFC 1035 §2.3.4).
const NAME_MAX_OCTETS: usize = 255;
const LABEL_MAX_OCTETS: usize = 63;

/// A response being written, with hickory's name-compression state.
pub struct Writer {
    bytes: Vec<u8>,
    /// Remembered suffixes: (offset in `bytes`, start and end in `suffixes`).
    pointers: Vec<(usize, usize, usize)>,
    /// The uncompressed bytes of each remembered suffix (the message itself may hold a
    /// pointer where a remembered suffix's later labels were).
    suffixes: Vec<u8>,
    compressed_names: usize,
    answers: u16,
}

impl Writer {
    /// A response to `request` (a simple query): header with AA and the request's RD, RCODE
    /// NOERROR, the question copied as sent, no records yet.
    pub fn new(request: &[u8], query: &SimpleQuery) -> Option<Writer> {
        let mut writer = Writer {
            bytes: Vec::with_capacity(512),
            pointers: Vec::with_capacity(16),
            suffixes: Vec::with_capacity(256),
            compressed_names: 0,
            answers: 0,
        };
        writer.bytes.extend_from_slice(request.get(0..2)?);
        // QR, opcode QUERY, AA, RD as asked; RA clear; RCODE 0. Counts patched in `finish`.
        let rd = request.get(2)? & 0x01;
        writer
            .bytes
            .extend_from_slice(&[0x84 | rd, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        // The question name as sent (a simple query's is uncompressed): hickory writes it
        // first, so no suffix of it can point anywhere, and it remembers every suffix.
        let name_end = query.question_end.checked_sub(4)?;
        writer
            .bytes
            .extend_from_slice(request.get(HEADER_LEN..query.question_end)?);
        writer.compressed_names = 1;
        let mut at = HEADER_LEN;
        while at < name_end {
            let len = usize::from(writer.bytes[at]);
            if len == 0 {
                break;
            }
            writer.remember(at, name_end - 1);
            at += 1 + len;
        }
        Some(writer)
    }

    fn remember(&mut self, offset: usize, end: usize) {
        if end < POINTER_OFFSET_LIMIT && self.pointers.len() < POINTER_CANDIDATES_MAX {
            let start = self.suffixes.len();
            self.suffixes.extend_from_slice(&self.bytes[offset..end]);
            self.pointers.push((offset, start, self.suffixes.len()));
        }
    }

    fn pointer_to(&self, suffix: &[u8]) -> Option<usize> {
        self.pointers
            .iter()
            .find(|(_, start, end)| &self.suffixes[*start..*end] == suffix)
            .map(|(offset, _, _)| *offset)
    }

    /// Writes a name from its labels, compressed as hickory would when `compress`.
    fn name<'l>(&mut self, labels: impl Iterator<Item = &'l [u8]>, compress: bool) -> Option<()> {
        let begin = self.bytes.len();
        let mut starts = [0usize; 128];
        let mut count = 0;
        for label in labels {
            if label.len() > LABEL_MAX_OCTETS || count == starts.len() {
                return None;
            }
            starts[count] = self.bytes.len();
            count += 1;
            self.bytes.push(u8::try_from(label.len()).ok()?);
            self.bytes.extend_from_slice(label);
        }
        let end = self.bytes.len();
        if end - begin + 1 > NAME_MAX_OCTETS {
            return None;
        }
        if compress && self.compressed_names < COMPRESSED_NAMES_MAX {
            self.compressed_names += 1;
            for &start in &starts[..count] {
                if let Some(offset) = self.pointer_to(&self.bytes[start..end]) {
                    self.bytes.truncate(start);
                    let pointer = 0xC000 | u16::try_from(offset).ok()?;
                    self.bytes.extend_from_slice(&pointer.to_be_bytes());
                    return Some(());
                }
                self.remember(start, end);
            }
        } else {
            for &start in &starts[..count] {
                self.remember(start, end);
            }
        }
        self.bytes.push(0);
        Some(())
    }

    /// Writes one answer record: `owner` (dotted text, plain labels) compressed, type, class
    /// IN, `ttl`, then the data `rdata` writes.
    fn answer(
        &mut self,
        owner: &str,
        rtype: u16,
        ttl: u32,
        rdata: impl FnOnce(&mut Writer) -> Option<()>,
    ) -> Option<()> {
        self.name(plain_labels(owner)?, true)?;
        self.bytes.extend_from_slice(&rtype.to_be_bytes());
        self.bytes.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.bytes.extend_from_slice(&ttl.to_be_bytes());
        let length_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0, 0]);
        rdata(self)?;
        let length = u16::try_from(self.bytes.len() - length_at - 2).ok()?;
        self.bytes[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
        self.answers = self.answers.checked_add(1)?;
        Some(())
    }

    /// The finished response: counts, our OPT record when the query had one; `None` when it
    /// would not fit `limit` bytes (the full path then answers with TC).
    pub fn finish(mut self, query: &SimpleQuery, limit: usize) -> Option<Vec<u8>> {
        let edns = query.edns_payload.is_some();
        if edns {
            // OPT: root owner, TYPE 41, CLASS = our payload, extended RCODE 0, version 0, no
            // flags, no options.
            let [high, low] = EDNS_PAYLOAD.to_be_bytes();
            self.bytes
                .extend_from_slice(&[0, 0, 41, high, low, 0, 0, 0, 0, 0, 0]);
        }
        if self.bytes.len() > limit {
            return None;
        }
        self.bytes[6..8].copy_from_slice(&self.answers.to_be_bytes());
        self.bytes[10..12].copy_from_slice(&u16::from(edns).to_be_bytes());
        Some(self.bytes)
    }

    pub fn answers(&self) -> u16 {
        self.answers
    }
}

/// The labels of a dotted name when each is a plain LDH or `_` label of 1 to 63 octets (what
/// hickory's `Name::from_ascii` takes as it is); `None` sends the query to the full path.
fn plain_labels(text: &str) -> Option<impl Iterator<Item = &[u8]>> {
    let plain = !text.is_empty()
        && text.split('.').all(|label| {
            (1..=LABEL_MAX_OCTETS).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    plain.then(|| text.split('.').map(str::as_bytes))
}

/// Appends one TXT character-string `key=value` (the value the parts joined with commas), cut
/// at 255 bytes on a character boundary, or nothing when the value is empty: what
/// `records::agent_txt` puts in its record.
fn push_pair<S: AsRef<str>>(
    out: &mut Vec<u8>,
    key: impl FnOnce(&mut Vec<u8>),
    parts: impl IntoIterator<Item = S>,
) {
    let length_at = out.len();
    out.push(0);
    key(out);
    out.push(b'=');
    let value_at = out.len();
    for (index, part) in parts.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(part.as_ref().as_bytes());
    }
    if out.len() == value_at {
        out.truncate(length_at);
        return;
    }
    let text = length_at + 1;
    if out.len() - text > TXT_STRING_MAX {
        // Back to the start of the character at the cut (continuation bytes are 0b10xxxxxx).
        let mut end = text + TXT_STRING_MAX;
        while out[end] & 0xC0 == 0x80 {
            end -= 1;
        }
        out.truncate(end);
    }
    out[length_at] = u8::try_from(out.len() - text).unwrap_or(u8::MAX);
}

/// The agent's TXT record, as `records::agent_txt` builds it.
pub fn agent_txt(writer: &mut Writer, agent: &Agent, ttl: u32) -> Option<()> {
    writer.answer(agent.name.as_str(), TYPE_TXT, ttl, |w| {
        let out = &mut w.bytes;
        out.push(6);
        out.extend_from_slice(b"v=aop1");
        push_pair(
            out,
            |o| o.extend_from_slice(b"description"),
            [&*agent.description],
        );
        push_pair(out, |o| o.extend_from_slice(b"tags"), agent.tags.iter());
        push_pair(
            out,
            |o| o.extend_from_slice(b"capabilities"),
            agent.capabilities.iter(),
        );
        push_pair(out, |o| o.extend_from_slice(b"version"), [&*agent.version]);
        for (index, endpoint) in answer_endpoints(&agent.endpoints).into_iter().enumerate() {
            let key = |o: &mut Vec<u8>| {
                o.extend_from_slice(b"url");
                if index > 0 {
                    let _ = write!(o, "{}", index + 1);
                }
            };
            push_pair(out, key, [&*endpoint.url]);
        }
        Some(())
    })
}

/// `_mcp._tcp.<agent>` SRV (`owner`), one per endpoint, preferred first, as
/// `records::agent_srv` builds them; an endpoint whose URL says nowhere is left out.
pub fn agent_srv(writer: &mut Writer, agent: &Agent, owner: &str, ttl: u32) -> Option<()> {
    for endpoint in records::preferred_order(agent) {
        let Some(place) = records::place(endpoint) else {
            continue;
        };
        let target = place.host.as_deref().unwrap_or(agent.name.as_str());
        writer.answer(owner, TYPE_SRV, ttl, |w| {
            w.bytes.extend_from_slice(&endpoint.priority.to_be_bytes());
            w.bytes.extend_from_slice(&endpoint.weight.to_be_bytes());
            w.bytes.extend_from_slice(&place.port.to_be_bytes());
            // SRV data names are never compressed (RFC 2782), but hickory remembers them.
            w.name(plain_labels(target)?, false)
        })?;
    }
    Some(())
}

/// The agent's literal endpoint addresses of one family, without duplicates, in endpoint
/// order, as `records::agent_addresses` builds them.
pub fn agent_addresses(writer: &mut Writer, agent: &Agent, ttl: u32, v6: bool) -> Option<()> {
    let mut seen: Vec<IpAddr> = Vec::new();
    for endpoint in answer_endpoints(&agent.endpoints) {
        if let Some(address) = records::place(endpoint).and_then(|p| p.address)
            && address.is_ipv6() == v6
            && !seen.contains(&address)
        {
            seen.push(address);
        }
    }
    for address in seen {
        let rtype = if v6 { TYPE_AAAA } else { TYPE_A };
        writer.answer(agent.name.as_str(), rtype, ttl, |w| {
            match address {
                IpAddr::V4(ip) => w.bytes.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => w.bytes.extend_from_slice(&ip.octets()),
            }
            Some(())
        })?;
    }
    Some(())
}
