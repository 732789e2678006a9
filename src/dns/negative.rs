//! Negative answers (NXDOMAIN and NODATA) written straight into bytes.
//!
//! A flood of random names never repeats, so the response cache cannot help with it, and half
//! of a typical mix (missing names, A queries for agents whose endpoints are host names) is
//! negative. Such an answer is always the same few parts: the header, the question copied
//! from the request, the zone's SOA at the negative TTL (encoded once per zone version, names
//! uncompressed so it can sit at any offset) and, when the query had one, our OPT record.
//! Writing those directly skips hickory's parse, message building and encoding. Everything
//! else, and anything unusual (another class, meta types, referrals, aliases, answers that
//! would not fit), goes to the full path in [`super::respond`], which the tests compare
//! this against byte for byte, after decoding.

use super::cache::SimpleQuery;
use super::message::{EDNS_PAYLOAD, push_canonical_label};

const HEADER_LEN: usize = 12;
const CLASS_IN: u16 = 1;

/// The lowercase dotted text of the question name, as [`super::message::canonical_text`]
/// makes it from a parsed name: a label that could never be ours becomes a NUL character.
/// `query` comes from `parse_simple`, so the name is well formed and uncompressed.
pub fn question_text(request: &[u8], query: &SimpleQuery) -> String {
    let mut text = String::with_capacity(query.question_end - HEADER_LEN);
    let mut at = HEADER_LEN;
    while let Some(&len) = request.get(at) {
        let len = usize::from(len);
        if len == 0 {
            break;
        }
        let Some(label) = request.get(at + 1..at + 1 + len) else {
            break;
        };
        if at > HEADER_LEN {
            text.push('.');
        }
        push_canonical_label(&mut text, label);
        at += 1 + len;
    }
    text
}

/// Whether this question may be answered here (class IN, an ordinary type).
pub fn eligible(query: &SimpleQuery) -> bool {
    // Meta and question-only types (OPT, AXFR, IXFR, ANY, ...) have their own rules.
    query.qclass == CLASS_IN && query.qtype != 41 && query.qtype < 128
}

/// The negative answer to `request`: NXDOMAIN when `nxdomain`, else NODATA, with `soa` (one
/// encoded resource record) in AUTHORITY. `None` when it would not fit `limit` bytes.
pub fn encode(
    request: &[u8],
    query: &SimpleQuery,
    nxdomain: bool,
    soa: &[u8],
    limit: usize,
) -> Option<Vec<u8>> {
    let edns = query.edns_payload.is_some();
    let length = query.question_end + soa.len() + if edns { 11 } else { 0 };
    if length > limit {
        return None;
    }
    let mut response = Vec::with_capacity(length);
    response.extend_from_slice(request.get(0..2)?);
    // QR, opcode QUERY, AA, RD as asked; RA clear; RCODE.
    let rd = request.get(2)? & 0x01;
    response.push(0x84 | rd);
    response.push(if nxdomain { 3 } else { 0 });
    response.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, u8::from(edns)]);
    response.extend_from_slice(request.get(HEADER_LEN..query.question_end)?);
    response.extend_from_slice(soa);
    if edns {
        // OPT: root owner, TYPE 41, CLASS = our payload, extended RCODE 0, version 0, no
        // flags, no options.
        let [high, low] = EDNS_PAYLOAD.to_be_bytes();
        response.extend_from_slice(&[0, 0, 41, high, low, 0, 0, 0, 0, 0, 0]);
    }
    Some(response)
}
