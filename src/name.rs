//! Agent and zone names: parsing, validation, canonical form and the ancestor walk.
//!
//! A name is a dotted sequence of LDH hostname labels (`analyst.finance.acme`). Input is
//! case-insensitive and may carry one trailing dot; the canonical form is lowercase without
//! it. Every other module takes a [`Name`] and never re-validates text, so this is the one
//! place the rules of docs/protocol.md §1 live, and its errors name the offending label and
//! the rule it breaks.
//!
//! Internally the root is the empty string, which makes "is this name at or below that zone"
//! a suffix test and lets the ancestor walk hand out borrowed `&str` suffixes, so lookups in
//! maps keyed by [`Name`] need no allocation.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Longest label, in characters (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name, in characters without the trailing dot (RFC 1035 presentation form).
pub const MAX_NAME_LEN: usize = 253;
/// Longest agent name: `_mcp._tcp.<agent>` must still fit in [`MAX_NAME_LEN`].
pub const MAX_AGENT_NAME_LEN: usize = 240;

/// Why a piece of text is not a valid name. Messages name the label and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("empty name (the root is written \".\")")]
    Empty,
    #[error(
        "name {name:?} has an empty label at position {position}: labels are separated by single dots"
    )]
    EmptyLabel { name: String, position: usize },
    #[error("label {label:?} of {name:?} is {len} characters long (limit {MAX_LABEL_LEN})")]
    LabelTooLong {
        name: String,
        label: String,
        len: usize,
    },
    #[error(
        "label {label:?} of {name:?} contains {character:?}: labels allow only letters a-z, digits 0-9 and inner hyphens"
    )]
    InvalidCharacter {
        name: String,
        label: String,
        character: char,
    },
    #[error(
        "label {label:?} of {name:?} {edge} with a hyphen: hyphens are allowed only inside a label"
    )]
    HyphenAtEdge {
        name: String,
        label: String,
        edge: &'static str,
    },
    #[error("name {name:?} is {len} characters long (limit {limit})")]
    TooLong {
        name: String,
        len: usize,
        limit: usize,
    },
    #[error("{name:?} is not at or below zone {zone}")]
    OutsideZone { name: String, zone: String },
}

/// A valid, canonical name. Cheap to clone (one reference count).
///
/// Ordering is plain string order of the canonical form, which is what listings page by.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// The root, written `.`.
    pub fn root() -> Name {
        Name(Arc::from(""))
    }

    /// Parses any valid name (up to [`MAX_NAME_LEN`] characters).
    pub fn parse(text: &str) -> Result<Name, NameError> {
        Self::parse_with_limit(text, MAX_NAME_LEN)
    }

    /// Parses a name that may be an agent's or an alias's: at most [`MAX_AGENT_NAME_LEN`].
    pub fn parse_agent(text: &str) -> Result<Name, NameError> {
        let name = Self::parse(text)?;
        name.check_agent_len()?;
        Ok(name)
    }

    /// Checks the agent-name length limit on an already parsed name.
    pub fn check_agent_len(&self) -> Result<(), NameError> {
        if self.0.len() > MAX_AGENT_NAME_LEN {
            return Err(NameError::TooLong {
                name: abbreviate(&self.0),
                len: self.0.len(),
                limit: MAX_AGENT_NAME_LEN,
            });
        }
        Ok(())
    }

    fn parse_with_limit(text: &str, limit: usize) -> Result<Name, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text == "." {
            return Ok(Name::root());
        }
        let body = text.strip_suffix('.').unwrap_or(text);
        // Labels first: a name with a bad character is reported by that character, whatever
        // its length; after this every character is ASCII, so bytes count characters.
        for (index, label) in body.split('.').enumerate() {
            check_label(text, index + 1, label)?;
        }
        if body.len() > limit {
            return Err(NameError::TooLong {
                name: abbreviate(text),
                len: body.len(),
                limit,
            });
        }
        let canonical = if body.bytes().any(|b| b.is_ascii_uppercase()) {
            Arc::from(body.to_ascii_lowercase())
        } else {
            Arc::from(body)
        };
        Ok(Name(canonical))
    }

    /// Resolves a name written in a zone file or given relative to a zone: absolute when it
    /// ends with `.`, else relative to `origin` (RFC 1035 master-file rule).
    pub fn parse_relative(text: &str, origin: &Name) -> Result<Name, NameError> {
        if text.ends_with('.') || origin.is_root() {
            return Self::parse(text);
        }
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        // Validate the relative part first so the error names the label the user wrote.
        let relative = Self::parse_with_limit(text, MAX_NAME_LEN)?;
        let joined = format!("{}.{}", relative.0, origin.0);
        if joined.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong {
                name: abbreviate(&joined),
                len: joined.len(),
                limit: MAX_NAME_LEN,
            });
        }
        Ok(Name(Arc::from(joined)))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical text without a trailing dot; empty for the root (see [`fmt::Display`]
    /// for the written form).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of labels; 0 for the root.
    pub fn label_count(&self) -> usize {
        if self.is_root() {
            0
        } else {
            self.0.split('.').count()
        }
    }

    /// Labels from the leftmost (most specific) to the rightmost.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.').filter(|label| !label.is_empty())
    }

    /// The leftmost label; `None` for the root.
    pub fn first_label(&self) -> Option<&str> {
        self.labels().next()
    }

    /// The name one label up; `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.split_once('.') {
            Some((_, rest)) => Name(Arc::from(rest)),
            None => Name::root(),
        })
    }

    /// This name and every ancestor up to the root, as canonical suffixes (the root is `""`):
    /// `a.b.c`, `b.c`, `c`, `""`. Map lookups keyed by [`Name`] accept these directly.
    pub fn self_and_ancestors(&self) -> impl Iterator<Item = &str> {
        label_suffixes(&self.0)
    }

    /// The ancestor whose canonical text is `suffix`, one of [`Name::self_and_ancestors`].
    pub(crate) fn ancestor(&self, suffix: &str) -> Name {
        debug_assert!(is_suffix_name(&self.0, suffix));
        Name(Arc::from(suffix))
    }

    /// True when `self` is `zone` or below it.
    pub fn is_at_or_below(&self, zone: &Name) -> bool {
        is_suffix_name(&self.0, &zone.0)
    }

    /// True when `self` is strictly below `zone`.
    pub fn is_strictly_below(&self, zone: &Name) -> bool {
        self.0.len() != zone.0.len() && self.is_at_or_below(zone)
    }

    /// The part of `self` in front of `origin`, as a zone file writes it: relative labels, or
    /// `@` for the origin itself; `None` when `self` is not at or below `origin`.
    pub fn relative_to(&self, origin: &Name) -> Option<&str> {
        if !self.is_at_or_below(origin) {
            return None;
        }
        if self.0.len() == origin.0.len() {
            return Some("@");
        }
        if origin.is_root() {
            return Some(&self.0);
        }
        Some(&self.0[..self.0.len() - origin.0.len() - 1])
    }

    /// The ancestor of `self` one label below `zone` (`b.acme` for `a.b.acme` below `acme`),
    /// `self` when it is one label below; `None` unless `self` is strictly below `zone`.
    pub fn branch_below(&self, zone: &Name) -> Option<Name> {
        if !self.is_strictly_below(zone) {
            return None;
        }
        label_suffixes(&self.0)
            .find(|suffix| suffix.split_once('.').map_or("", |(_, rest)| rest) == zone.as_str())
            .map(|suffix| self.ancestor(suffix))
    }

    /// `label.self`, validated.
    pub fn child(&self, label: &str) -> Result<Name, NameError> {
        Name::parse_relative(label, self)
    }
}

/// Dotted text and every suffix of it at a label boundary, down to `""` (the root). Works on
/// any canonical dotted text, such as DNS query names that are not agent names.
pub(crate) fn label_suffixes(text: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(text);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current.is_empty() {
            None
        } else {
            Some(current.split_once('.').map_or("", |(_, rest)| rest))
        };
        Some(current)
    })
}

/// True when the canonical text `name` is `zone` or below it.
pub(crate) fn is_suffix_name(name: &str, zone: &str) -> bool {
    if zone.is_empty() {
        return true;
    }
    match name.strip_suffix(zone) {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.'),
        None => false,
    }
}

fn check_label(name: &str, position: usize, label: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel {
            name: abbreviate(name),
            position,
        });
    }
    if let Some(character) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Err(NameError::InvalidCharacter {
            name: abbreviate(name),
            label: abbreviate(label),
            character,
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong {
            name: abbreviate(name),
            label: abbreviate(label),
            len: label.len(),
        });
    }
    let edge = if label.starts_with('-') {
        Some("starts")
    } else if label.ends_with('-') {
        Some("ends")
    } else {
        None
    };
    if let Some(edge) = edge {
        return Err(NameError::HyphenAtEdge {
            name: abbreviate(name),
            label: label.to_string(),
            edge,
        });
    }
    Ok(())
}

/// Keeps error messages readable when the input is huge (a 1 MiB "name" over gRPC).
fn abbreviate(text: &str) -> String {
    const KEEP: usize = 80;
    if text.chars().count() <= KEEP {
        text.to_string()
    } else {
        let head: String = text.chars().take(KEEP).collect();
        format!("{head}...")
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Name::parse(text)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn label_strategy() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(label_strategy(), 1..5).prop_map(|labels| labels.join("."))
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(text in name_strategy()) {
            prop_assume!(text.len() <= MAX_NAME_LEN);
            let name = Name::parse(&text).unwrap();
            let again = Name::parse(&name.to_string()).unwrap();
            prop_assert_eq!(&name, &again);
            prop_assert_eq!(name.as_str(), text.to_ascii_lowercase());
        }

        #[test]
        fn case_and_trailing_dot_do_not_matter(text in name_strategy()) {
            prop_assume!(text.len() <= MAX_NAME_LEN);
            let lower = Name::parse(&text.to_ascii_lowercase()).unwrap();
            let upper = Name::parse(&text.to_ascii_uppercase()).unwrap();
            let dotted = Name::parse(&format!("{text}.")).unwrap();
            prop_assert_eq!(&lower, &upper);
            prop_assert_eq!(&lower, &dotted);
        }

        #[test]
        fn label_length_limit_is_63(len in 1usize..100) {
            let label = "a".repeat(len);
            let result = Name::parse(&format!("{label}.acme"));
            if len <= MAX_LABEL_LEN {
                prop_assert!(result.is_ok());
            } else {
                let is_label_too_long = matches!(
                    result,
                    Err(NameError::LabelTooLong { len: l, .. }) if l == len
                );
                prop_assert!(is_label_too_long);
            }
        }

        #[test]
        fn name_length_limit_is_253(len in 200usize..300) {
            // Labels of 9 characters plus dots, trimmed to exactly `len` characters.
            let mut text = String::new();
            while text.len() < len {
                if !text.is_empty() { text.push('.'); }
                text.push_str("abcdefghi");
            }
            text.truncate(len);
            if text.ends_with('.') { text.pop(); text.push('z'); }
            let result = Name::parse(&text);
            if len <= MAX_NAME_LEN {
                prop_assert!(result.is_ok(), "{len}: {result:?}");
                // One trailing dot is not counted.
                let dotted = format!("{text}.");
                prop_assert!(Name::parse(&dotted).is_ok());
            } else {
                let is_too_long = matches!(result, Err(NameError::TooLong { limit: MAX_NAME_LEN, .. }));
                prop_assert!(is_too_long);
            }
        }

        #[test]
        fn ancestors_end_at_the_root(text in name_strategy()) {
            prop_assume!(text.len() <= MAX_NAME_LEN);
            let name = Name::parse(&text).unwrap();
            let ancestors: Vec<&str> = name.self_and_ancestors().collect();
            prop_assert_eq!(ancestors.len(), name.label_count() + 1);
            prop_assert_eq!(ancestors[0], name.as_str());
            prop_assert_eq!(*ancestors.last().unwrap(), "");
            for ancestor in &ancestors {
                let zone = if ancestor.is_empty() { Name::root() } else { Name::parse(ancestor).unwrap() };
                prop_assert!(name.is_at_or_below(&zone));
            }
        }
    }

    #[test]
    fn the_branch_below_a_zone_is_one_label_under_it() {
        let name = |t: &str| Name::parse(t).unwrap();
        let deep = name("a.b.finance.acme");
        assert_eq!(deep.branch_below(&name("acme")), Some(name("finance.acme")));
        assert_eq!(
            deep.branch_below(&name("finance.acme")),
            Some(name("b.finance.acme"))
        );
        assert_eq!(
            deep.branch_below(&name("b.finance.acme")),
            Some(deep.clone())
        );
        assert_eq!(deep.branch_below(&Name::root()), Some(name("acme")));
        assert_eq!(deep.branch_below(&deep), None);
        assert_eq!(deep.branch_below(&name("other")), None);
        // A suffix that is not at a label boundary is not a zone above.
        assert_eq!(name("xacme").branch_below(&name("acme")), None);
    }

    #[test]
    fn root_is_written_as_a_dot() {
        let root = Name::parse(".").unwrap();
        assert!(root.is_root());
        assert_eq!(root.to_string(), ".");
        assert_eq!(root.label_count(), 0);
        assert_eq!(root.parent(), None);
        assert_eq!(root.self_and_ancestors().collect::<Vec<_>>(), vec![""]);
    }

    #[test]
    fn errors_name_the_label_and_the_rule() {
        let err = Name::parse("ana_lyst.finance.acme").unwrap_err();
        assert_eq!(
            err.to_string(),
            "label \"ana_lyst\" of \"ana_lyst.finance.acme\" contains '_': labels allow only letters a-z, digits 0-9 and inner hyphens"
        );
        let err = Name::parse("-x.acme").unwrap_err();
        assert!(err.to_string().contains("label \"-x\""), "{err}");
        assert!(err.to_string().contains("starts with a hyphen"), "{err}");
        let err = Name::parse("x-.acme").unwrap_err();
        assert!(err.to_string().contains("ends with a hyphen"), "{err}");
        let err = Name::parse("a..acme").unwrap_err();
        assert_eq!(
            err,
            NameError::EmptyLabel {
                name: "a..acme".into(),
                position: 2
            }
        );
        assert_eq!(Name::parse("").unwrap_err(), NameError::Empty);
        assert!(matches!(
            Name::parse("a.acme.."),
            Err(NameError::EmptyLabel { .. })
        ));
        assert!(matches!(
            Name::parse("caf\u{e9}.acme"),
            Err(NameError::InvalidCharacter {
                character: '\u{e9}',
                ..
            })
        ));
    }

    #[test]
    fn agent_names_stop_at_240() {
        let label = "a".repeat(59);
        let name = [label.as_str(); 4].join("."); // 239 characters
        assert!(Name::parse_agent(&name).is_ok());
        let longer = format!("bb.{name}");
        assert!(matches!(
            Name::parse_agent(&longer),
            Err(NameError::TooLong { limit: 240, .. })
        ));
        assert!(Name::parse(&longer).is_ok());
    }

    #[test]
    fn relative_names_follow_the_master_file_rule() {
        let origin = Name::parse("finance.acme").unwrap();
        assert_eq!(
            Name::parse_relative("Analyst", &origin).unwrap().as_str(),
            "analyst.finance.acme"
        );
        assert_eq!(
            Name::parse_relative("writer.acme.", &origin)
                .unwrap()
                .as_str(),
            "writer.acme"
        );
        assert_eq!(
            Name::parse_relative("analyst", &Name::root())
                .unwrap()
                .as_str(),
            "analyst"
        );
        let name = Name::parse("analyst.finance.acme").unwrap();
        assert_eq!(name.relative_to(&origin), Some("analyst"));
        assert_eq!(origin.relative_to(&origin), Some("@"));
        assert_eq!(
            name.relative_to(&Name::root()),
            Some("analyst.finance.acme")
        );
        assert_eq!(origin.relative_to(&name), None);
    }

    #[test]
    fn below_means_whole_labels() {
        let acme = Name::parse("acme").unwrap();
        assert!(Name::parse("finance.acme").unwrap().is_at_or_below(&acme));
        assert!(!Name::parse("notacme").unwrap().is_at_or_below(&acme));
        assert!(acme.is_at_or_below(&acme));
        assert!(!acme.is_strictly_below(&acme));
        assert!(acme.is_strictly_below(&Name::root()));
    }
}
