//! The small facts every part of the DNS door shares: payload sizes, the transport a query
//! came by, and how a DNS name is spelled as the catalog keys it. A leaf module, so the
//! response writer, the response cache and the negative-answer writer all build on it
//! without needing each other.

use hickory_proto::rr::Name as DnsName;

/// Our EDNS(0) UDP payload size (the DNS flag day 2020 default).
pub const EDNS_PAYLOAD: u16 = 1232;
/// The UDP payload without EDNS (RFC 1035).
pub const PLAIN_UDP_PAYLOAD: u16 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Lowercase dotted text of a DNS name, as our maps key it. A label that could never be one
/// of ours (holding a dot, a backslash or a non-printing byte) becomes a NUL character, so it
/// matches nothing, and the label boundaries stay where they are.
pub fn canonical_text(name: &DnsName) -> String {
    let mut text = String::with_capacity(name.len());
    for (index, label) in name.iter().enumerate() {
        if index > 0 {
            text.push('.');
        }
        push_canonical_label(&mut text, label);
    }
    text
}

/// Appends one label as [`canonical_text`] writes it: lowercase, or a NUL character for a
/// label that could never be ours. The DNS door's direct writer (`dns::negative`), which
/// reads labels straight from the request, shares it so both spell names the same way.
pub fn push_canonical_label(text: &mut String, label: &[u8]) {
    let plain = label
        .iter()
        .all(|b| b.is_ascii_graphic() && *b != b'.' && *b != b'\\');
    if plain {
        text.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        text.push('\0');
    }
}
