//! Per-zone search results and their federated merge.
//!
//! BM25 scores from different zones are not comparable: each zone has its own document
//! count, average length and document frequencies. So each [`ZoneResult`] carries its
//! zone's [`CorpusStats`] for the query, and each [`Hit`] its weighted term frequencies and
//! length; [`merge`] sums the statistics of all parts and rescores every hit with the sums.
//! The merged order and scores are then those a single index over the union of the zones
//! would give these hits. Each zone sends only its own top `limit` by local score, so a
//! document outside every zone's local top `limit` cannot appear: the usual distributed-IDF
//! approximation, exact whenever each zone's local top `limit` holds its part of the global
//! top `limit`.
//!
//! Parts come from peers. [`ZoneResult::check`] is what the wire layer applies to each before
//! merging; [`merge`] itself never panics and never produces a NaN, whatever it is given.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::bm25::{self, CorpusStats};
use crate::name::Name;
use crate::record::Agent;

/// One agent found in one zone.
#[derive(Debug, Clone)]
pub struct Hit {
    pub agent: Arc<Agent>,
    /// The zone that returned it.
    pub zone: Name,
    /// BM25: against the zone's statistics in a [`ZoneResult`], the union's after [`merge`].
    /// 0 for a listing.
    pub score: f64,
    /// Weighted term frequency of each query term, in query-term order; empty for a listing.
    pub term_freqs: Vec<f32>,
    /// Weighted document length.
    pub length: f32,
}

/// One zone's answer to a search, or a whole subtree's: a peer that searched the zones at
/// and below `zone` and merged them sends their summed statistics and its best hits, each
/// naming the zone it came from, as one part. Sums of sums are sums, so merging such parts
/// again is the same as merging all the zones at once.
#[derive(Debug, Clone)]
pub struct ZoneResult {
    /// The zone searched, or the top of the subtree searched.
    pub zone: Name,
    pub serial: u32,
    /// The zone's statistics for this query's terms.
    pub stats: CorpusStats,
    /// Agents of the zone that matched, of which `hits` are the best `limit`.
    pub matches: u64,
    /// Best first: score descending, then name.
    pub hits: Vec<Hit>,
}

/// Why a peer's [`ZoneResult`] cannot be merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidZoneResult {
    #[error("zone {zone} sent statistics for {got} query terms, expected {expected}")]
    TermCount {
        zone: Name,
        got: usize,
        expected: usize,
    },
    #[error("zone {zone} says {doc_freq} of its {doc_count} agents hold a query term")]
    DocFreq {
        zone: Name,
        doc_freq: u64,
        doc_count: u64,
    },
    #[error("zone {zone} says {matches} agents matched but sent {hits} hits out of {doc_count}")]
    Matches {
        zone: Name,
        matches: u64,
        hits: usize,
        doc_count: u64,
    },
    #[error("zone {zone} sent a hit for {agent} from zone {hit_zone}, outside its subtree")]
    ForeignHit {
        zone: Name,
        agent: Name,
        hit_zone: Name,
    },
    #[error("zone {zone} sent {agent} with {got} term frequencies, expected {expected}")]
    HitTermCount {
        zone: Name,
        agent: Name,
        got: usize,
        expected: usize,
    },
    #[error("zone {zone} sent {agent} with a negative or non-finite term frequency or length")]
    BadNumber { zone: Name, agent: Name },
}

impl ZoneResult {
    /// Checks that a peer's result is about a query of `term_count` terms and is consistent
    /// with itself: hits from zones at or below `zone` holding their agents, frequencies and
    /// lengths that are finite and not negative, counts that fit the zone's size.
    pub fn check(&self, term_count: usize) -> Result<(), InvalidZoneResult> {
        let zone = || self.zone.clone();
        let stats = &self.stats;
        if stats.doc_freq.len() != term_count {
            return Err(InvalidZoneResult::TermCount {
                zone: zone(),
                got: stats.doc_freq.len(),
                expected: term_count,
            });
        }
        if let Some(&doc_freq) = stats.doc_freq.iter().find(|&&df| df > stats.doc_count) {
            return Err(InvalidZoneResult::DocFreq {
                zone: zone(),
                doc_freq,
                doc_count: stats.doc_count,
            });
        }
        let hits = self.hits.len() as u64;
        if self.matches < hits || self.matches > stats.doc_count {
            return Err(InvalidZoneResult::Matches {
                zone: zone(),
                matches: self.matches,
                hits: self.hits.len(),
                doc_count: stats.doc_count,
            });
        }
        for hit in &self.hits {
            // A part may stand for a whole subtree (a child node's federated answer): its
            // hits lie below it, each in the zone it came from (which is above the part's
            // scope when that scope is a name inside a zone).
            if !hit.agent.name.is_at_or_below(&self.zone)
                || !hit.agent.name.is_at_or_below(&hit.zone)
            {
                return Err(InvalidZoneResult::ForeignHit {
                    zone: zone(),
                    agent: hit.agent.name.clone(),
                    hit_zone: hit.zone.clone(),
                });
            }
            if hit.term_freqs.len() != term_count {
                return Err(InvalidZoneResult::HitTermCount {
                    zone: zone(),
                    agent: hit.agent.name.clone(),
                    got: hit.term_freqs.len(),
                    expected: term_count,
                });
            }
            if !std::iter::once(&hit.length)
                .chain(&hit.term_freqs)
                .all(|&x| sane(x).is_some())
            {
                return Err(InvalidZoneResult::BadNumber {
                    zone: zone(),
                    agent: hit.agent.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The federated answer.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// Best first by score against the union's statistics, then by name; at most `limit`.
    pub hits: Vec<Hit>,
    /// Agents that matched, over all zones (each zone's `matches`).
    pub total_matches: u64,
    /// The union's statistics: the sums of the parts'.
    pub stats: CorpusStats,
}

/// Merges per-zone results into one ranking against the statistics of their union.
///
/// Parts should be distinct zones; when a zone appears twice (asked of two of its servers)
/// only its newest serial counts, so its statistics are not added twice. Parts are expected
/// to have passed [`ZoneResult::check`]; if not, missing statistics and frequencies count as
/// 0 and negative or non-finite numbers as 0, and an agent name returned twice is kept once.
pub fn merge(parts: Vec<ZoneResult>, limit: usize) -> Merged {
    let parts = newest_per_zone(parts);
    let term_count = parts
        .iter()
        .map(|part| part.stats.doc_freq.len())
        .max()
        .unwrap_or(0);
    let mut stats = CorpusStats {
        doc_count: 0,
        total_length: 0,
        doc_freq: vec![0; term_count],
    };
    let mut total_matches: u64 = 0;
    for part in &parts {
        stats.doc_count = stats.doc_count.saturating_add(part.stats.doc_count);
        stats.total_length = stats.total_length.saturating_add(part.stats.total_length);
        for (sum, &df) in stats.doc_freq.iter_mut().zip(&part.stats.doc_freq) {
            *sum = sum.saturating_add(df);
        }
        total_matches = total_matches.saturating_add(part.matches);
    }

    let idfs = stats.idfs();
    let avg_length = stats.avg_length();
    let mut hits: Vec<Hit> = parts
        .into_iter()
        .flat_map(|part| part.hits)
        .map(|mut hit| {
            let norm = bm25::length_norm(sane(hit.length).unwrap_or(0.0), avg_length);
            let term_freqs = hit.term_freqs.iter().map(|&tf| sane(tf).unwrap_or(0.0));
            hit.score = bm25::score(&idfs, term_freqs, norm);
            hit
        })
        .collect();
    hits.sort_unstable_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.agent.name.cmp(&b.agent.name))
    });
    let mut seen = HashSet::new();
    hits.retain(|hit| seen.insert(hit.agent.name.clone()));
    hits.truncate(limit);
    Merged {
        hits,
        total_matches,
        stats,
    }
}

/// A peer's number as BM25 may use it: finite and not negative.
fn sane(x: f32) -> Option<f64> {
    (x.is_finite() && x >= 0.0).then_some(f64::from(x))
}

/// Keeps one part per zone: the newest serial (RFC 1982 order), the first among equals.
fn newest_per_zone(parts: Vec<ZoneResult>) -> Vec<ZoneResult> {
    let mut position: HashMap<Name, usize> = HashMap::with_capacity(parts.len());
    let mut kept: Vec<ZoneResult> = Vec::with_capacity(parts.len());
    for part in parts {
        match position.get(&part.zone) {
            Some(&at) => {
                if crate::record::serial_newer(part.serial, kept[at].serial) {
                    kept[at] = part;
                }
            }
            None => {
                position.insert(part.zone.clone(), kept.len());
                kept.push(part);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::fixtures::{federation, name};
    use crate::search::{SearchQuery, ZoneIndex};

    fn query(text: &str, limit: usize) -> SearchQuery {
        SearchQuery {
            text: text.to_string(),
            limit,
            ..SearchQuery::default()
        }
    }

    /// The three zones' own indexes, and one index over all their agents, each analysed
    /// relative to its own zone as its zone's index does.
    fn indexes() -> (Vec<ZoneIndex>, ZoneIndex) {
        let zones = federation();
        let union = ZoneIndex::from_documents(
            name("acme"),
            1,
            zones.iter().flat_map(|zone| {
                zone.agent_names()
                    .iter()
                    .filter_map(|n| zone.agent(n.as_str()))
                    .map(|agent| (Arc::clone(agent), zone.origin().clone()))
            }),
        );
        (zones.iter().map(ZoneIndex::build).collect(), union)
    }

    fn federated(indexes: &[ZoneIndex], query: &SearchQuery) -> Merged {
        let analyzed = query.analyze();
        let parts: Vec<ZoneResult> = indexes.iter().map(|i| i.search(&analyzed)).collect();
        for part in &parts {
            part.check(analyzed.terms().len())
                .expect("a consistent part");
        }
        merge(parts, query.limit)
    }

    fn names(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|hit| hit.agent.name.as_str()).collect()
    }

    #[test]
    fn merge_equals_one_index_over_the_union() {
        let (zones, union) = indexes();
        for text in [
            "a forecasting agent in finance",
            "summaries of documents",
            "revenue forecasts",
            "lab",
            "research papers summary",
            "finance",
            "acme",
            "",
        ] {
            let q = query(text, 100);
            let merged = federated(&zones, &q);
            let single = union.search(&q.analyze());
            assert_eq!(names(&merged.hits), names(&single.hits), "{text:?}");
            assert_eq!(merged.total_matches, single.matches, "{text:?}");
            assert_eq!(merged.stats, single.stats, "{text:?}");
            for (m, s) in merged.hits.iter().zip(&single.hits) {
                let scale = s.score.abs().max(f64::MIN_POSITIVE);
                assert!(
                    (m.score - s.score).abs() / scale < 1e-9,
                    "{text:?}: {m:?} {s:?}"
                );
                assert_eq!(m.term_freqs, s.term_freqs);
            }
        }
    }

    #[test]
    fn federated_search_finds_the_expected_agents() {
        let (zones, _) = indexes();
        let merged = federated(&zones, &query("a forecasting agent in finance", 3));
        assert_eq!(names(&merged.hits)[0], "forecaster.finance.acme");
        assert_eq!(merged.hits[0].zone.as_str(), "finance.acme");
        assert_eq!(merged.hits.len(), 3);
        assert!(merged.total_matches > 3);

        let merged = federated(&zones, &query("weather forecast", 3));
        assert_eq!(names(&merged.hits)[0], "weather.research.acme");

        let merged = federated(&zones, &query("summaries", 3));
        assert_eq!(
            names(&merged.hits),
            ["papers.research.acme", "summarizer.acme"]
        );

        let mut by_tag = query("", 10);
        by_tag.tags = vec!["Forecasting".into()];
        let merged = federated(&zones, &by_tag);
        assert_eq!(
            names(&merged.hits),
            ["forecaster.finance.acme", "weather.research.acme"]
        );

        let mut by_capability = query("papers", 10);
        by_capability.capabilities = vec!["summarization".into()];
        let merged = federated(&zones, &by_capability);
        assert_eq!(names(&merged.hits), ["papers.research.acme"]);
        assert_eq!(merged.total_matches, 1);

        let mut scoped = query("", 10);
        scoped.scope = Some(name("research.acme"));
        let merged = federated(&zones, &scoped);
        assert_eq!(merged.total_matches, 3);
        assert_eq!(merged.stats.doc_count, 12);
    }

    #[test]
    fn one_part_keeps_its_scores() {
        let (zones, _) = indexes();
        let q = query("forecast revenue", 10).analyze();
        let part = zones[1].search(&q);
        let merged = merge(vec![part.clone()], 10);
        let local: Vec<f64> = part.hits.iter().map(|h| h.score).collect();
        let global: Vec<f64> = merged.hits.iter().map(|h| h.score).collect();
        assert_eq!(local, global);
    }

    #[test]
    fn a_zone_asked_twice_counts_once_at_its_newest_serial() {
        let (zones, _) = indexes();
        let q = query("forecast", 10).analyze();
        let part = zones[1].search(&q);
        let mut older = part.clone();
        older.serial -= 1;
        older.stats.doc_count += 100;
        let merged = merge(vec![older, part.clone(), part.clone()], 10);
        assert_eq!(merged.stats, part.stats);
        assert_eq!(merged.total_matches, part.matches);
        assert_eq!(merged.hits.len(), part.hits.len());
    }

    #[test]
    fn check_rejects_inconsistent_parts_and_merge_survives_them() {
        let (zones, _) = indexes();
        let q = query("forecast revenue", 10).analyze();
        let good = zones[1].search(&q);
        assert_eq!(good.check(2), Ok(()));
        assert!(matches!(
            good.check(3),
            Err(InvalidZoneResult::TermCount { .. })
        ));

        let mut bad = good.clone();
        bad.stats.doc_freq[0] = bad.stats.doc_count + 1;
        assert!(matches!(
            bad.check(2),
            Err(InvalidZoneResult::DocFreq { .. })
        ));

        let mut bad = good.clone();
        bad.matches = 0;
        assert!(matches!(
            bad.check(2),
            Err(InvalidZoneResult::Matches { .. })
        ));

        let mut bad = good.clone();
        bad.hits[0].zone = name("research.acme");
        assert!(matches!(
            bad.check(2),
            Err(InvalidZoneResult::ForeignHit { .. })
        ));

        let mut subtree = good.clone();
        subtree.zone = name("acme");
        assert_eq!(subtree.check(2), Ok(()));

        let mut bad = good.clone();
        bad.hits[0].term_freqs.pop();
        assert!(matches!(
            bad.check(2),
            Err(InvalidZoneResult::HitTermCount { .. })
        ));

        let mut bad = good.clone();
        bad.hits[0].length = f32::INFINITY;
        assert!(matches!(
            bad.check(2),
            Err(InvalidZoneResult::BadNumber { .. })
        ));

        let mut worse = good.clone();
        worse.hits[0].term_freqs = vec![f32::NAN, f32::INFINITY, -1.0];
        worse.hits[1].length = f32::NAN;
        worse.stats.doc_freq = vec![u64::MAX];
        worse.stats.doc_count = u64::MAX;
        worse.stats.total_length = u64::MAX;
        assert!(worse.check(2).is_err());
        let merged = merge(vec![worse, zones[2].search(&q)], 10);
        assert!(merged.hits.iter().all(|hit| hit.score.is_finite()));
    }
}
