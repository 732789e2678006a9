//! Text analysis shared by indexing and querying, and the query types.
//!
//! Documents and queries must go through the same analysis or they do not meet, and across
//! a federation the zones must agree on it too: [`merge`](super::merge()) lines up per-zone
//! statistics by query-term position, so the wire layer sends [`AnalyzedQuery::terms`] along
//! and checks that a peer analysed the text into the same list.
//!
//! Analysis: lowercase; split on every character that is not alphanumeric (so
//! `analyst.finance.acme`, `fin-ops` and `forecast_q1` give separate words); drop a short list
//! of English stopwords; stem with the Snowball English stemmer (`rust-stemmers`), so
//! "forecasting", "forecasts" and "forecasted" all meet "forecast", and "summaries" meets
//! "summary" (Snowball keeps "summarize" apart: `summar` against `summari`).

use std::collections::{HashMap, HashSet};

use rust_stemmers::{Algorithm, Stemmer};

use crate::name::Name;

/// Query terms past this many distinct ones are ignored, bounding the work a query text of
/// any size can ask for.
pub const MAX_QUERY_TERMS: usize = 32;

/// Words too common to say anything about an agent. Deliberately short: "agent", "data" and
/// the like stay, since a registry's users do search for them.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "this", "to", "with",
];

/// Calls `emit` with each term of `text`, in order, repeats included.
pub fn for_each_term(text: &str, mut emit: impl FnMut(String)) {
    let stemmer = Stemmer::create(Algorithm::English);
    for word in words(text) {
        let word = word.to_lowercase();
        if let Some(term) = term_of(&stemmer, &word) {
            emit(term);
        }
    }
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
}

/// The term of a lowercased word; `None` for a stopword.
fn term_of(stemmer: &Stemmer, word: &str) -> Option<String> {
    (!STOPWORDS.contains(&word)).then(|| stemmer.stem(word).into_owned())
}

/// The same analysis as [`for_each_term`], remembering each word's term: indexing meets the
/// same words over and over, and stemming them again was most of the cost of a build. Lives
/// for one build, so it holds at most the zone's distinct words.
pub(super) struct MemoAnalyzer {
    stemmer: Stemmer,
    /// Lowercased word -> its term, `None` for a stopword.
    memo: HashMap<Box<str>, Option<Box<str>>>,
}

impl MemoAnalyzer {
    pub(super) fn new() -> MemoAnalyzer {
        MemoAnalyzer {
            stemmer: Stemmer::create(Algorithm::English),
            memo: HashMap::new(),
        }
    }

    pub(super) fn for_each_term(&mut self, text: &str, mut emit: impl FnMut(&str)) {
        for word in words(text) {
            let lowered;
            let word = if word
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                word
            } else {
                lowered = word.to_lowercase();
                lowered.as_str()
            };
            if let Some(term) = self.memo.get(word) {
                if let Some(term) = term {
                    emit(term);
                }
                continue;
            }
            let term = term_of(&self.stemmer, word).map(String::into_boxed_str);
            if let Some(term) = &term {
                emit(term);
            }
            self.memo.insert(word.into(), term);
        }
    }
}

/// The terms of `text`, in order, repeats included.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text, |term| out.push(term));
    out
}

/// A tag or capability as filters compare it: whole value, case folded.
pub fn fold_value(value: &str) -> String {
    value.to_lowercase()
}

/// A search as a caller states it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Free text; its terms are OR-ed and ranked by BM25. Empty (or only stopwords and
    /// punctuation): no ranking, every agent that passes the filters, in name order.
    pub text: String,
    /// Every one of these tags must be on the agent (whole value, case-insensitive).
    pub tags: Vec<String>,
    /// Every one of these capabilities must be on the agent (whole value, case-insensitive).
    pub capabilities: Vec<String>,
    /// Only agents whose names are at or below this name.
    pub scope: Option<Name>,
    /// At most this many hits.
    pub limit: usize,
}

impl SearchQuery {
    /// The query's distinct terms in first-occurrence order, at most [`MAX_QUERY_TERMS`]:
    /// the order of [`CorpusStats::doc_freq`](super::CorpusStats) and
    /// [`Hit::term_freqs`](super::Hit).
    pub fn terms(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for_each_term(&self.text, |term| {
            if out.len() < MAX_QUERY_TERMS && seen.insert(term.clone()) {
                out.push(term);
            }
        });
        out
    }

    /// Analyses the text and normalises the filters, once per search whatever the number of
    /// zones it runs on.
    pub fn analyze(&self) -> AnalyzedQuery {
        AnalyzedQuery {
            terms: self.terms(),
            tags: fold_all(&self.tags),
            capabilities: fold_all(&self.capabilities),
            scope: self.scope.clone(),
            limit: self.limit,
        }
    }
}

fn fold_all(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = values.iter().map(|v| fold_value(v)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A [`SearchQuery`] after analysis: what [`ZoneIndex::search`](super::ZoneIndex::search)
/// takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyzedQuery {
    terms: Vec<String>,
    tags: Vec<String>,
    capabilities: Vec<String>,
    scope: Option<Name>,
    limit: usize,
}

impl AnalyzedQuery {
    /// Distinct terms in query order; empty for a listing.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// Case-folded, sorted, distinct.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Case-folded, sorted, distinct.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn scope(&self) -> Option<&Name> {
        self.scope.as_ref()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// No terms: every agent that passes the filters, in name order, with score 0.
    pub fn is_listing(&self) -> bool {
        self.terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_anything_not_alphanumeric_and_lowercases() {
        assert_eq!(
            terms("analyst.finance.acme fin-ops forecast_q1 ÉTÉ"),
            [
                "analyst", "financ", "acm", "fin", "op", "forecast", "q1", "été"
            ]
        );
    }

    #[test]
    fn stems_inflections_together() {
        for word in [
            "forecast",
            "forecasting",
            "forecasts",
            "forecasted",
            "Forecasting",
        ] {
            assert_eq!(terms(word), ["forecast"], "{word}");
        }
        assert_eq!(terms("summaries"), terms("summary"));
        assert_eq!(terms("translates"), terms("translation"));
        assert_eq!(terms("agents"), ["agent"]);
    }

    #[test]
    fn the_memo_analyzer_agrees_with_the_plain_one() {
        let text = "Forecasts the WEATHER, forecasting ünïcødé ÉTÉ été Ǆemal dž 42nd q1 \
                    forecast_q1 fin-ops; THE weather forecasts again";
        let mut memo = MemoAnalyzer::new();
        for _ in 0..2 {
            let mut got = Vec::new();
            memo.for_each_term(text, |term| got.push(term.to_string()));
            assert_eq!(got, terms(text));
        }
    }

    #[test]
    fn drops_stopwords_but_keeps_agent() {
        assert_eq!(
            terms("a forecasting agent in the finance team, for and with it"),
            ["forecast", "agent", "financ", "team"]
        );
        assert!(terms("the of and ... to").is_empty());
    }

    #[test]
    fn query_terms_are_distinct_in_first_occurrence_order_and_bounded() {
        let query = SearchQuery {
            text: "Forecasts forecasting revenue forecast cash".to_string(),
            ..SearchQuery::default()
        };
        assert_eq!(query.terms(), ["forecast", "revenu", "cash"]);

        let many: Vec<String> = (0..100).map(|i| format!("word{i}")).collect();
        let query = SearchQuery {
            text: many.join(" "),
            ..SearchQuery::default()
        };
        assert_eq!(query.terms().len(), MAX_QUERY_TERMS);
        assert_eq!(query.terms()[0], "word0");
    }

    #[test]
    fn filters_are_folded_and_deduplicated() {
        let query = SearchQuery {
            text: "  ".to_string(),
            tags: vec!["Finance".into(), "finance".into(), "Time-Series".into()],
            capabilities: vec!["FORECAST".into()],
            ..SearchQuery::default()
        }
        .analyze();
        assert!(query.is_listing());
        assert_eq!(query.tags(), ["finance", "time-series"]);
        assert_eq!(query.capabilities(), ["forecast"]);
    }
}
