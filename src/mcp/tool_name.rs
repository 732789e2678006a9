//! Agent names as MCP tool names (docs/protocol.md §6).
//!
//! LLM APIs accept tool names matching `^[A-Za-z0-9_-]{1,64}$`. An agent's tool name is its
//! FQDN with `.` written as `_`, which is reversible because `_` never occurs in a label.
//! Past 64 characters the name becomes its first 53 characters, `_`, and 10 base32
//! characters of the SHA-256 of the FQDN; such names cannot be reversed by rule, so the
//! gateway keeps a map from them back to the agent.

use sha2::{Digest, Sha256};

use crate::name::Name;

/// The longest tool name LLM APIs accept.
pub const TOOL_NAME_MAX: usize = 64;
const PREFIX_CHARS: usize = 53;
const HASH_CHARS: usize = 10;

/// The tool name of agent `name`.
pub fn tool_name(name: &Name) -> String {
    let plain = name.as_str().replace('.', "_");
    if plain.len() <= TOOL_NAME_MAX {
        return plain;
    }
    hashed_tool_name(name)
}

/// The hashed form: the first (up to) 53 characters of the plain name, `_`, and 10 base32
/// characters of the SHA-256 of the FQDN. Used past 64 characters, and for an agent whose
/// plain name would be a gateway meta tool's (`list.agents` would be `list_agents`).
pub fn hashed_tool_name(name: &Name) -> String {
    let plain = name.as_str().replace('.', "_");
    let digest = Sha256::digest(name.as_str().as_bytes());
    let mut short = String::with_capacity(TOOL_NAME_MAX);
    short.push_str(&plain[..plain.len().min(PREFIX_CHARS)]);
    short.push('_');
    short.push_str(&base32(&digest)[..HASH_CHARS]);
    short
}

/// The agent a plain (unhashed) tool name stands for, when it is one.
pub fn agent_of_plain(tool: &str) -> Option<Name> {
    if tool.len() > TOOL_NAME_MAX || tool.contains('.') {
        return None;
    }
    Name::parse(&tool.replace('_', ".")).ok()
}

/// RFC 4648 base32, lower case, without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_valid_tool_name(tool: &str) -> bool {
        (1..=TOOL_NAME_MAX).contains(&tool.len())
            && tool
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    #[test]
    fn short_names_swap_dots_for_underscores_and_back() {
        let name = Name::parse("analyst.finance.acme").unwrap();
        assert_eq!(tool_name(&name), "analyst_finance_acme");
        assert_eq!(agent_of_plain("analyst_finance_acme"), Some(name));
        assert_eq!(
            agent_of_plain("fx-desk_trading_acme").unwrap().as_str(),
            "fx-desk.trading.acme"
        );
    }

    #[test]
    fn long_names_are_hashed_within_64_characters() {
        let name = Name::parse(&format!("{}.finance.acme", "a".repeat(60))).unwrap();
        let tool = tool_name(&name);
        assert_eq!(tool.len(), 64);
        assert!(is_valid_tool_name(&tool), "{tool}");
        assert_eq!(&tool[..53], &name.as_str().replace('.', "_")[..53]);
        assert_eq!(&tool[53..54], "_");
        // Stable, and different for names sharing the first 53 characters.
        assert_eq!(tool, tool_name(&name));
        let other = Name::parse(&format!("{}.finance.acmf", "a".repeat(60))).unwrap();
        assert_ne!(tool, tool_name(&other));
        // A hashed name does not read back as an agent by rule.
        assert_ne!(agent_of_plain(&tool), Some(name));
    }

    #[test]
    fn the_hashed_form_of_a_short_name_keeps_it_whole() {
        let name = Name::parse("list.agents").unwrap();
        let tool = hashed_tool_name(&name);
        assert!(tool.starts_with("list_agents_"), "{tool}");
        assert_eq!(tool.len(), "list_agents_".len() + 10);
        assert!(is_valid_tool_name(&tool));
    }

    #[test]
    fn exactly_64_characters_stays_plain() {
        let name = Name::parse(&format!("{}.acme", "b".repeat(59))).unwrap();
        assert_eq!(tool_name(&name).len(), 64);
        assert_eq!(tool_name(&name), name.as_str().replace('.', "_"));
    }

    #[test]
    fn base32_matches_rfc_4648_vectors() {
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fo"), "mzxq");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }
}
