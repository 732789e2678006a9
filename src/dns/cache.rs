//! The fast path of the DNS door: most queries have one simple shape (one question, maybe an
//! OPT record), and the answer depends only on the question, the payload limit and the zone
//! data. So the door keeps encoded responses, keyed by the catalog's generation, the
//! lowercased query name, type, class and payload limit, and answers a repeat by copying the
//! bytes and patching the ID, the RD bit and the question (whose bytes are copied from the
//! request, so a client's 0x20 case randomisation comes back exactly as sent).
//!
//! Anything else (other opcodes, several questions, a compressed question, EDNS versions
//! above 0, trailing bytes) goes to the full path in [`super::respond`], which is also what
//! fills the cache. moka bounds the cache by weight and admits by frequency (TinyLFU), so a
//! flood of random names cannot push out the popular answers.

use std::sync::Arc;

use moka::sync::Cache;

use super::message::{EDNS_PAYLOAD, PLAIN_UDP_PAYLOAD, Transport};

const HEADER_LEN: usize = 12;
const TYPE_OPT: u16 = 41;
/// The longest name on the wire, length octets and the root's zero octet included (RFC 1035
/// §2.3.4). A longer one is malformed: the full path answers it FORMERR.
const NAME_MAX_OCTETS: usize = 255;

/// A query of the common shape, parsed without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleQuery {
    /// Where the question (name, type, class) ends in the request.
    pub question_end: usize,
    pub qtype: u16,
    pub qclass: u16,
    /// The requestor's EDNS payload size, if it sent an OPT record.
    pub edns_payload: Option<u16>,
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// Parses a query with one uncompressed question and at most an EDNS(0) OPT record, and
/// nothing else; `None` for any other shape (the full path decides what to do with it).
pub fn parse_simple(request: &[u8]) -> Option<SimpleQuery> {
    let flags = *request.get(2)?;
    let is_response = flags & 0x80 != 0;
    let opcode = (flags >> 3) & 0x0f;
    if is_response || opcode != 0 {
        return None;
    }
    let (qd, an, ns, ar) = (
        be16(request, 4)?,
        be16(request, 6)?,
        be16(request, 8)?,
        be16(request, 10)?,
    );
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    loop {
        let len = usize::from(*request.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
        // The labels so far, plus the root's zero octet still to come.
        if at - HEADER_LEN + 1 > NAME_MAX_OCTETS {
            return None;
        }
    }
    let qtype = be16(request, at)?;
    let qclass = be16(request, at + 2)?;
    let question_end = at + 4;
    let mut end = question_end;
    let mut edns_payload = None;
    if ar == 1 {
        // OPT: root name, TYPE 41, CLASS = payload, TTL = ext-rcode, version, flags.
        if *request.get(end)? != 0 || be16(request, end + 1)? != TYPE_OPT {
            return None;
        }
        let version = *request.get(end + 6)?;
        if version != 0 {
            return None;
        }
        edns_payload = Some(be16(request, end + 3)?);
        let rdlen = usize::from(be16(request, end + 9)?);
        end += 11 + rdlen;
    }
    if end != request.len() {
        return None;
    }
    Some(SimpleQuery {
        question_end,
        qtype,
        qclass,
        edns_payload,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    generation: u64,
    /// The question name in wire format, lowercased.
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    edns: bool,
    limit: u16,
}

/// Encoded responses by question.
pub struct ResponseCache {
    responses: Cache<Key, Arc<[u8]>>,
}

impl ResponseCache {
    pub fn new(max_bytes: u64) -> ResponseCache {
        ResponseCache {
            responses: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|key: &Key, value: &Arc<[u8]>| {
                    u32::try_from(key.name.len() + value.len() + 96).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    fn key(request: &[u8], query: &SimpleQuery, transport: Transport, generation: u64) -> Key {
        let limit = match (transport, query.edns_payload) {
            (Transport::Tcp, _) => u16::MAX,
            (Transport::Udp, Some(payload)) => payload.clamp(PLAIN_UDP_PAYLOAD, EDNS_PAYLOAD),
            (Transport::Udp, None) => PLAIN_UDP_PAYLOAD,
        };
        let name_end = query.question_end - 4;
        Key {
            generation,
            name: request[HEADER_LEN..name_end]
                .iter()
                .map(u8::to_ascii_lowercase)
                .collect(),
            qtype: query.qtype,
            qclass: query.qclass,
            edns: query.edns_payload.is_some(),
            limit,
        }
    }

    /// The cached response for this request, made its own (ID, RD, question bytes).
    pub fn get(
        &self,
        request: &[u8],
        query: &SimpleQuery,
        transport: Transport,
        generation: u64,
    ) -> Option<Vec<u8>> {
        let cached = self
            .responses
            .get(&Self::key(request, query, transport, generation))?;
        let mut response = cached.to_vec();
        let question = HEADER_LEN..query.question_end;
        if response.len() < query.question_end {
            return None;
        }
        response[0..2].copy_from_slice(&request[0..2]);
        response[2] = (response[2] & !0x01) | (request[2] & 0x01);
        response[question.clone()].copy_from_slice(&request[question]);
        Some(response)
    }

    /// Keeps a response the full path built for a simple query.
    pub fn put(
        &self,
        request: &[u8],
        query: &SimpleQuery,
        transport: Transport,
        generation: u64,
        response: &[u8],
    ) {
        // Only a response that echoes the question where the fast path will patch it.
        let question = HEADER_LEN..query.question_end;
        let same_question = response
            .get(question.clone())
            .is_some_and(|bytes| bytes.eq_ignore_ascii_case(&request[question.clone()]));
        if same_question && be16(response, 4) == Some(1) {
            self.responses.insert(
                Self::key(request, query, transport, generation),
                Arc::from(response),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    use std::str::FromStr;

    fn query(name: &str, edns: Option<u8>) -> Vec<u8> {
        let mut message = Message::query();
        message.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::TXT));
        if let Some(version) = edns {
            let mut opt = Edns::new();
            opt.set_version(version);
            opt.set_max_payload(4096);
            message.set_edns(opt);
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn simple_queries_are_recognised() {
        let plain = query("Analyst.Finance.Acme.", None);
        let parsed = parse_simple(&plain).unwrap();
        assert_eq!(parsed.question_end, plain.len());
        assert_eq!(
            (parsed.qtype, parsed.qclass, parsed.edns_payload),
            (16, 1, None)
        );
        let with_opt = parse_simple(&query("a.b.", Some(0))).unwrap();
        assert_eq!(with_opt.edns_payload, Some(4096));
    }

    #[test]
    fn every_other_shape_goes_to_the_full_path() {
        // EDNS version 1 (BADVERS is the full path's job).
        assert_eq!(parse_simple(&query("a.b.", Some(1))), None);
        // Trailing bytes.
        let mut trailing = query("a.b.", None);
        trailing.push(0);
        assert_eq!(parse_simple(&trailing), None);
        // A response, another opcode, two questions.
        let mut response = query("a.b.", None);
        response[2] |= 0x80;
        assert_eq!(parse_simple(&response), None);
        let mut notify = Message::query();
        notify.metadata.op_code = OpCode::Notify;
        notify.add_query(Query::query(
            Name::from_str("a.b.").unwrap(),
            RecordType::SOA,
        ));
        assert_eq!(parse_simple(&notify.to_vec().unwrap()), None);
        let mut two = Message::query();
        two.add_query(Query::query(Name::from_str("a.b.").unwrap(), RecordType::A));
        two.add_query(Query::query(Name::from_str("c.d.").unwrap(), RecordType::A));
        assert_eq!(parse_simple(&two.to_vec().unwrap()), None);
        // Truncated anywhere.
        let whole = query("analyst.finance.acme.", Some(0));
        for len in 0..whole.len() {
            assert_eq!(parse_simple(&whole[..len]), None, "cut at {len}");
        }
        // A compression pointer in the question.
        let mut pointer = query("a.b.", None);
        pointer[12] = 0xc0;
        assert_eq!(parse_simple(&pointer), None);
    }

    /// A query for a name of `octets` octets on the wire (the root's zero octet included).
    fn query_of_length(octets: usize) -> Vec<u8> {
        let mut request = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut left = octets - 1;
        while left > 0 {
            let len = (left - 1).min(63);
            request.push(len as u8);
            request.extend(std::iter::repeat_n(b'a', len));
            left -= len + 1;
        }
        request.extend_from_slice(&[0, 0, 16, 0, 1]);
        request
    }

    #[test]
    fn names_over_255_octets_go_to_the_full_path() {
        let longest = query_of_length(255);
        // The question (name, type, class) is the whole request.
        assert_eq!(parse_simple(&longest).unwrap().question_end, longest.len());
        assert_eq!(parse_simple(&query_of_length(256)), None);
    }
}
