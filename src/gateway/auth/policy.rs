//! Who may see and call what (docs/protocol.md §8.2): a policy per caller subject, whose
//! `see` and `call` lists hold zone patterns. `"finance.acme"` covers that name and every name
//! below it (so one agent's full name covers that agent), `"*"` covers everything.
//!
//! Calling implies nothing about seeing: an agent a caller may call but not see is, for that
//! caller, an agent that does not exist (the see check comes first everywhere).

use crate::name::Name;

/// One entry of `see` or `call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `"*"`: every name.
    All,
    /// That name and every name below it.
    AtOrBelow(Name),
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text == "*" {
            return Ok(Pattern::All);
        }
        Name::parse(text)
            .map(Pattern::AtOrBelow)
            .map_err(|error| format!("not \"*\" nor a zone or agent name: {error}"))
    }

    pub fn covers(&self, name: &Name) -> bool {
        match self {
            Pattern::All => true,
            Pattern::AtOrBelow(zone) => name.is_at_or_below(zone),
        }
    }

    /// Whether some name at or below `zone` may be covered (a listing of `zone` can hold
    /// something this pattern lets through).
    pub fn touches(&self, zone: &Name) -> bool {
        match self {
            Pattern::All => true,
            Pattern::AtOrBelow(pattern) => {
                zone.is_at_or_below(pattern) || pattern.is_at_or_below(zone)
            }
        }
    }
}

/// One `[[policy]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The `sub` it applies to, or `"*"` for any.
    pub subject: String,
    pub see: Vec<Pattern>,
    pub call: Vec<Pattern>,
}

impl Policy {
    /// The policy of a caller no `[[policy]]` matches: nothing seen, nothing called.
    pub fn nothing(subject: &str) -> Policy {
        Policy {
            subject: subject.to_string(),
            see: Vec::new(),
            call: Vec::new(),
        }
    }

    pub fn sees(&self, name: &Name) -> bool {
        self.see.iter().any(|pattern| pattern.covers(name))
    }

    /// Whether the caller may call `name` (which it must also see).
    pub fn may_call(&self, name: &Name) -> bool {
        self.sees(name) && self.call.iter().any(|pattern| pattern.covers(name))
    }

    /// Whether the caller may call anything at all.
    pub fn calls_anything(&self) -> bool {
        !self.call.is_empty() && !self.see.is_empty()
    }

    /// Whether anything at or below `zone` may be seen.
    pub fn sees_into(&self, zone: &Name) -> bool {
        self.see.iter().any(|pattern| pattern.touches(zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap()
    }

    fn policy(see: &[&str], call: &[&str]) -> Policy {
        Policy {
            subject: "alice".into(),
            see: see.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
            call: call.iter().map(|p| Pattern::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn zone_patterns_cover_the_zone_and_below_only() {
        let p = policy(&["acme"], &["finance.acme", "writer.acme"]);
        assert!(p.sees(&name("analyst.finance.acme")));
        assert!(p.sees(&name("acme")));
        assert!(!p.sees(&name("analyst.finance.other")));
        assert!(!p.sees(&name("notacme")), "label boundaries, not suffixes");
        assert!(p.may_call(&name("analyst.finance.acme")));
        assert!(p.may_call(&name("writer.acme")));
        assert!(!p.may_call(&name("editor.acme")));
        assert!(p.sees_into(&name("finance.acme")));
        assert!(!p.sees_into(&name("other")));
    }

    #[test]
    fn star_is_everything_and_calling_needs_seeing() {
        let p = policy(&["finance.acme"], &["*"]);
        assert!(p.may_call(&name("a.finance.acme")));
        assert!(!p.may_call(&name("writer.acme")), "not seen, so not called");
        let all = policy(&["*"], &[]);
        assert!(all.sees(&name("x.y")));
        assert!(!all.may_call(&name("x.y")));
        assert!(!all.calls_anything());
        assert!(Pattern::parse("not a name!").is_err());
    }
}
