//! [`ZoneIndex`]: the inverted index of one zone snapshot.
//!
//! Built once per snapshot (see [`ZoneIndexes`](super::ZoneIndexes)) and then only read, like
//! the snapshot itself. Documents are the zone's agents, numbered in name order, so a posting
//! list is sorted by name and "ties broken by name" is "ties broken by document number".
//!
//! A document's fields and their weights (BM25F style, see [`bm25`]): the labels
//! of the agent's name below the zone's origin (3; `analyst` for `analyst.finance.acme` in
//! zone `finance.acme`, `deep` and `lab` for `deep.lab.research.acme` in `research.acme`;
//! the origin's own labels would only repeat the zone in every document), tags (2),
//! capabilities (2) and the description (1). Tags and capabilities are also kept whole,
//! case-folded, for the filters.
//!
//! A search scores term at a time into one dense accumulator per query (a zone of 100,000
//! agents costs 800 KB for the query's duration), then keeps the best `limit` in a bounded
//! heap, so the cost is the matching postings plus one pass over the documents, with no sort
//! of all matches.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::Arc;

use super::analyze::{AnalyzedQuery, MemoAnalyzer, fold_value};
use super::bm25::{self, CorpusStats};
use super::merge::{Hit, ZoneResult};
use crate::name::Name;
use crate::record::Agent;
use crate::zone::ZoneSnapshot;

pub const NAME_WEIGHT: u32 = 3;
pub const TAG_WEIGHT: u32 = 2;
pub const CAPABILITY_WEIGHT: u32 = 2;
pub const DESCRIPTION_WEIGHT: u32 = 1;

/// A document's number: its position in name order.
type DocId = u32;

#[derive(Debug, Clone, Copy)]
struct Posting {
    doc: DocId,
    /// Weighted term frequency.
    tf: u32,
}

struct Doc {
    agent: Arc<Agent>,
    /// Weighted length.
    length: u32,
    /// [`bm25::length_norm`] against this zone's average length, computed once.
    norm: f64,
}

/// The search index of one zone at one serial.
pub struct ZoneIndex {
    origin: Name,
    serial: u32,
    docs: Vec<Doc>,
    total_length: u64,
    postings: HashMap<Box<str>, Vec<Posting>>,
    tags: HashMap<Box<str>, Vec<DocId>>,
    capabilities: HashMap<Box<str>, Vec<DocId>>,
}

impl fmt::Debug for ZoneIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneIndex")
            .field("origin", &self.origin)
            .field("serial", &self.serial)
            .field("agents", &self.docs.len())
            .field("terms", &self.postings.len())
            .finish()
    }
}

impl ZoneIndex {
    /// Indexes every agent of the snapshot.
    pub fn build(snapshot: &ZoneSnapshot) -> ZoneIndex {
        let origin = snapshot.origin();
        let documents = snapshot
            .agent_names()
            .iter()
            .filter_map(|name| snapshot.agent(name.as_str()))
            .map(|agent| (Arc::clone(agent), origin.clone()));
        ZoneIndex::from_documents(origin.clone(), snapshot.serial(), documents)
    }

    /// Indexes agents, each with the zone its name is made relative to. A zone's index has one
    /// zone for all; tests build one index over the agents of several zones this way, to
    /// compare with the merge of the zones' own indexes.
    pub(super) fn from_documents(
        origin: Name,
        serial: u32,
        documents: impl IntoIterator<Item = (Arc<Agent>, Name)>,
    ) -> ZoneIndex {
        let mut documents: Vec<(Arc<Agent>, Name)> = documents.into_iter().collect();
        documents.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        // Far beyond what fits in memory as agents; the bound keeps the conversion total.
        documents.truncate(DocId::MAX as usize);

        let mut index = ZoneIndex {
            origin,
            serial,
            docs: Vec::with_capacity(documents.len()),
            total_length: 0,
            postings: HashMap::new(),
            tags: HashMap::new(),
            capabilities: HashMap::new(),
        };
        let mut analyzer = MemoAnalyzer::new();
        let mut terms: Vec<(String, u32)> = Vec::new();
        for (doc, (agent, home)) in (0..).zip(documents) {
            terms.clear();
            let length = analyze_document(&mut analyzer, &agent, &home, &mut terms);
            for (term, tf) in terms.drain(..) {
                let posting = Posting { doc, tf };
                match index.postings.get_mut(term.as_str()) {
                    Some(list) => list.push(posting),
                    None => {
                        index.postings.insert(term.into_boxed_str(), vec![posting]);
                    }
                }
            }
            add_values(&mut index.tags, &agent.tags, doc);
            add_values(&mut index.capabilities, &agent.capabilities, doc);
            index.total_length += u64::from(length);
            index.docs.push(Doc {
                agent,
                length,
                norm: 0.0,
            });
        }
        let stats = index.corpus_stats(Vec::new());
        let avg_length = stats.avg_length();
        for doc in &mut index.docs {
            doc.norm = bm25::length_norm(f64::from(doc.length), avg_length);
        }
        index
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Agents indexed.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Distinct terms indexed.
    pub fn term_count(&self) -> usize {
        self.postings.len()
    }

    /// Runs a query: the zone's statistics for its terms, the number of agents that match,
    /// and the best `limit` of them (score descending, then name; name order for a listing).
    pub fn search(&self, query: &AnalyzedQuery) -> ZoneResult {
        let postings: Vec<&[Posting]> = query
            .terms()
            .iter()
            .map(|term| {
                self.postings
                    .get(term.as_str())
                    .map_or(&[][..], Vec::as_slice)
            })
            .collect();
        let doc_freq = postings.iter().map(|list| list.len() as u64).collect();
        let mut result = ZoneResult {
            zone: self.origin.clone(),
            serial: self.serial,
            stats: self.corpus_stats(doc_freq),
            matches: 0,
            hits: Vec::new(),
        };
        let Some(filter) = self.filter(query) else {
            return result;
        };
        if query.is_listing() {
            self.list(&filter, query.limit(), &mut result);
        } else {
            self.rank(&filter, &postings, query.limit(), &mut result);
        }
        result
    }

    fn corpus_stats(&self, doc_freq: Vec<u64>) -> CorpusStats {
        CorpusStats {
            doc_count: self.docs.len() as u64,
            total_length: self.total_length,
            doc_freq,
        }
    }

    /// What the filters of `query` let through; `None` when nothing can match.
    fn filter<'q>(&self, query: &'q AnalyzedQuery) -> Option<Filter<'q>> {
        let scope = match query.scope() {
            None => None,
            Some(scope) if self.origin.is_at_or_below(scope) => None,
            Some(scope) if scope.is_strictly_below(&self.origin) => Some(scope),
            Some(_) => return None,
        };
        let mut lists: Vec<&[DocId]> = Vec::new();
        for (values, map) in [
            (query.tags(), &self.tags),
            (query.capabilities(), &self.capabilities),
        ] {
            for value in values {
                lists.push(map.get(value.as_str())?);
            }
        }
        lists.sort_by_key(|list| list.len());
        let allowed = lists.split_first().map(|(smallest, rest)| {
            let mut allowed = smallest.to_vec();
            allowed.retain(|doc| rest.iter().all(|list| list.binary_search(doc).is_ok()));
            allowed
        });
        Some(Filter { allowed, scope })
    }

    /// The documents the tag and capability filters allow, in name order.
    fn candidates<'a>(&self, filter: &'a Filter<'_>) -> Box<dyn Iterator<Item = DocId> + 'a> {
        match &filter.allowed {
            Some(allowed) => Box::new(allowed.iter().copied()),
            None => Box::new(0..self.docs.len() as DocId),
        }
    }

    fn list(&self, filter: &Filter<'_>, limit: usize, result: &mut ZoneResult) {
        for doc in self.candidates(filter) {
            let entry = &self.docs[doc as usize];
            if !filter.admits(&entry.agent.name) {
                continue;
            }
            result.matches += 1;
            if result.hits.len() < limit {
                result.hits.push(self.hit(doc, 0.0, Vec::new()));
            }
        }
    }

    fn rank(
        &self,
        filter: &Filter<'_>,
        postings: &[&[Posting]],
        limit: usize,
        result: &mut ZoneResult,
    ) {
        if postings.iter().all(|list| list.is_empty()) {
            return;
        }
        let idfs = result.stats.idfs();
        let mut scores = vec![0.0_f64; self.docs.len()];
        for (list, &idf) in postings.iter().zip(&idfs) {
            for posting in *list {
                let doc = posting.doc as usize;
                scores[doc] += bm25::term_score(idf, f64::from(posting.tf), self.docs[doc].norm);
            }
        }
        // Every matching document scores above 0: idf > 0 and a matching tf >= 1.
        let mut best = TopK::new(limit);
        for doc in self.candidates(filter) {
            let score = scores[doc as usize];
            if score > 0.0 && filter.admits(&self.docs[doc as usize].agent.name) {
                result.matches += 1;
                best.offer(Ranked { score, doc });
            }
        }
        result.hits = best
            .into_best_first()
            .into_iter()
            .map(|Ranked { score, doc }| {
                let term_freqs = postings
                    .iter()
                    .map(|list| match list.binary_search_by_key(&doc, |p| p.doc) {
                        Ok(at) => list[at].tf as f32,
                        Err(_) => 0.0,
                    })
                    .collect();
                self.hit(doc, score, term_freqs)
            })
            .collect();
    }

    fn hit(&self, doc: DocId, score: f64, term_freqs: Vec<f32>) -> Hit {
        let entry = &self.docs[doc as usize];
        Hit {
            agent: Arc::clone(&entry.agent),
            zone: self.origin.clone(),
            score,
            term_freqs,
            length: entry.length as f32,
        }
    }
}

/// Analyses one agent into `terms` (term, weighted tf) and returns its weighted length.
fn analyze_document(
    analyzer: &mut MemoAnalyzer,
    agent: &Agent,
    home: &Name,
    terms: &mut Vec<(String, u32)>,
) -> u32 {
    let mut length = 0_u32;
    let mut add = |text: &str, weight: u32| {
        analyzer.for_each_term(text, |term| {
            length = length.saturating_add(weight);
            // A document has a few dozen distinct terms: a scan beats hashing.
            match terms.iter_mut().find(|(known, _)| known == term) {
                Some((_, tf)) => *tf = tf.saturating_add(weight),
                None => terms.push((term.to_string(), weight)),
            }
        });
    };
    // An agent at the zone's origin has no labels below it: its own first label stands in.
    let name = match agent.name.relative_to(home) {
        Some("@") => agent.name.first_label().unwrap_or(""),
        Some(relative) => relative,
        None => agent.name.as_str(),
    };
    add(name, NAME_WEIGHT);
    for tag in &agent.tags {
        add(tag, TAG_WEIGHT);
    }
    for capability in &agent.capabilities {
        add(capability, CAPABILITY_WEIGHT);
    }
    add(&agent.description, DESCRIPTION_WEIGHT);
    length
}

fn add_values(map: &mut HashMap<Box<str>, Vec<DocId>>, values: &[String], doc: DocId) {
    for value in values {
        let list = map.entry(fold_value(value).into_boxed_str()).or_default();
        // Values differing only in case fold to one.
        if list.last() != Some(&doc) {
            list.push(doc);
        }
    }
}

/// The filters of one query, resolved against one index.
struct Filter<'q> {
    /// Documents that have every requested tag and capability, in order; `None` when the
    /// query asks for none.
    allowed: Option<Vec<DocId>>,
    /// The scope, when it does not cover the whole zone.
    scope: Option<&'q Name>,
}

impl Filter<'_> {
    fn admits(&self, name: &Name) -> bool {
        self.scope.is_none_or(|scope| name.is_at_or_below(scope))
    }
}

/// A scored document, ordered best first: higher score, then lower number (earlier name).
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f64,
    doc: DocId,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.doc.cmp(&self.doc))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The best `limit` documents seen: a min-heap of at most `limit`, its worst on top.
struct TopK {
    limit: usize,
    heap: BinaryHeap<Reverse<Ranked>>,
}

impl TopK {
    fn new(limit: usize) -> TopK {
        TopK {
            limit,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, candidate: Ranked) {
        if self.heap.len() < self.limit {
            self.heap.push(Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate > worst.0
        {
            *worst = Reverse(candidate);
        }
    }

    fn into_best_first(self) -> Vec<Ranked> {
        // Ascending `Reverse` is descending `Ranked`.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(ranked)| ranked)
            .collect()
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
