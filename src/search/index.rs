//! [`ZoneIndex`]: the inverted index of one zone snapshot, and how it follows a change.
//!
//! # Base and overlay
//!
//! An index is two parts:
//!
//! - the **base**, an immutable segment built in full from every agent of some earlier serial
//!   and shared (`Arc`) by every index derived from it. Its documents are numbered in name
//!   order, so a posting list is sorted by name;
//! - the **overlay**, what changed since the base: the documents added or replaced since
//!   (with their own small posting and filter lists), and one bit per base document deleted
//!   or replaced since.
//!
//! A registration publishes a snapshot whose [`Lineage`](crate::zone::Lineage) names what it
//! changed; [`ZoneIndex::follow_snapshot`] derives the next serial's index from this one by
//! copying the overlay and applying those names: O(overlay + changed), not O(zone). The
//! overlay grows with every change, so [`ZoneIndexes`](super::ZoneIndexes) compacts it on a
//! background thread once it passes [`ZoneIndex::overlay_bound`] ([`ZoneIndex::compacted`]:
//! a new base from the live documents), while searches keep using the overlaid index.
//!
//! # Exact statistics
//!
//! BM25 needs the document count, the total length and each term's document frequency. The
//! overlay keeps what it removes from the base (count, length, and per term the base
//! documents deleted that held it) and what it adds, so these three are always exactly those
//! of an index built from scratch over the same agents; length norms are computed per serial
//! (by its first ranked search) against that exact average, never carried over from an older
//! serial. Scores are therefore the same bits as a fresh index's (each document's terms are
//! summed in query-term order either way), ties are broken by name across base and overlay,
//! and the statistics the federated merge sums ([`ZoneResult::stats`]) are exact.
//!
//! # Fields
//!
//! A document's fields and their weights (BM25F style, see [`bm25`]): the labels
//! of the agent's name below the zone's origin (3; `analyst` for `analyst.finance.acme` in
//! zone `finance.acme`, `deep` and `lab` for `deep.lab.research.acme` in `research.acme`;
//! the origin's own labels would only repeat the zone in every document), tags (2),
//! capabilities (2) and the description (1). Tags and capabilities are also kept whole,
//! case-folded, for the filters.
//!
//! # Searching
//!
//! A search scores term at a time into one dense accumulator per part (a zone of 100,000
//! agents costs 800 KB for the query's duration), then keeps the best `limit` of both parts
//! in one bounded heap, so the cost is the matching postings plus one pass over the
//! documents, with no sort of all matches.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

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

/// The overlay may hold this many changes (documents added or replaced, plus base documents
/// deleted) before a compaction is due, whatever the zone's size.
pub const OVERLAY_FLOOR: usize = 1_000;
/// ... or this fraction of the base's documents, when more.
pub const OVERLAY_DIVISOR: usize = 16;

/// A base document's number: its position in name order. An overlay document's number is
/// its slot in the overlay, in order of arrival.
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
}

/// The part built in full: documents in name order and their inverted lists.
struct Base {
    docs: Vec<Doc>,
    total_length: u64,
    postings: HashMap<Box<str>, Vec<Posting>>,
    tags: HashMap<Box<str>, Vec<DocId>>,
    capabilities: HashMap<Box<str>, Vec<DocId>>,
}

impl Base {
    /// The number of the live or deleted base document named `name`.
    fn find(&self, name: &Name) -> Option<DocId> {
        self.docs
            .binary_search_by(|doc| doc.agent.name.cmp(name))
            .ok()
            .map(|at| at as DocId)
    }
}

/// A document added or replaced since the base, with what it was analysed into (to take its
/// postings out again when it changes).
struct OverlayDoc {
    agent: Arc<Agent>,
    length: u32,
    terms: Box<[(Arc<str>, u32)]>,
    /// Folded, each once.
    tags: Box<[Arc<str>]>,
    capabilities: Box<[Arc<str>]>,
}

/// One step of a lineage the overlay applied: the serial it led to and the names it changed.
#[derive(Clone)]
struct Step {
    serial: u32,
    changed: Arc<[Name]>,
}

/// What changed since the base. Cloned once per derivation: its lists are `Arc`s, copied
/// only when a change touches them.
#[derive(Clone)]
struct Overlay {
    /// One bit per base document: deleted or replaced since the base.
    deleted: Vec<u64>,
    deleted_count: u64,
    deleted_length: u64,
    /// Per term: the deleted base documents that hold it.
    deleted_df: HashMap<Arc<str>, u64>,
    /// Documents added or replaced since the base, by slot; `None` once changed again.
    docs: Vec<Option<Arc<OverlayDoc>>>,
    /// The live slots by name.
    by_name: BTreeMap<Name, DocId>,
    live_length: u64,
    /// Postings of live overlay documents, sorted by slot.
    postings: HashMap<Arc<str>, Arc<Vec<Posting>>>,
    tags: HashMap<Arc<str>, Arc<Vec<DocId>>>,
    capabilities: HashMap<Arc<str>, Arc<Vec<DocId>>>,
    /// Every lineage step applied since the base, oldest first: what a compaction of an
    /// earlier index must apply again to catch up (see [`ZoneIndex::rebase`]).
    steps: Vec<Step>,
}

impl Overlay {
    fn new(base_docs: usize) -> Overlay {
        Overlay {
            deleted: vec![0; base_docs.div_ceil(64)],
            deleted_count: 0,
            deleted_length: 0,
            deleted_df: HashMap::new(),
            docs: Vec::new(),
            by_name: BTreeMap::new(),
            live_length: 0,
            postings: HashMap::new(),
            tags: HashMap::new(),
            capabilities: HashMap::new(),
            steps: Vec::new(),
        }
    }

    fn is_deleted(&self, doc: DocId) -> bool {
        self.deleted[doc as usize / 64] & (1 << (doc % 64)) != 0
    }

    fn live(&self, slot: DocId) -> Option<&OverlayDoc> {
        self.docs.get(slot as usize)?.as_deref()
    }

    /// Takes `name` out of the index, from the overlay and from the base, wherever it is.
    fn remove(&mut self, base: &Base, origin: &Name, name: &Name, analyzer: &mut MemoAnalyzer) {
        if let Some(slot) = self.by_name.remove(name)
            && let Some(doc) = self.docs[slot as usize].take()
        {
            self.live_length -= u64::from(doc.length);
            for (term, _) in &doc.terms {
                remove_from(&mut self.postings, term, slot, |p| p.doc);
            }
            for tag in &doc.tags {
                remove_from(&mut self.tags, tag, slot, |d| *d);
            }
            for capability in &doc.capabilities {
                remove_from(&mut self.capabilities, capability, slot, |d| *d);
            }
        }
        if let Some(doc) = base.find(name)
            && !self.is_deleted(doc)
        {
            self.deleted[doc as usize / 64] |= 1 << (doc % 64);
            let entry = &base.docs[doc as usize];
            self.deleted_count += 1;
            self.deleted_length += u64::from(entry.length);
            let mut terms = Vec::new();
            analyze_document(analyzer, &entry.agent, origin, &mut terms);
            for (term, _) in terms {
                match self.deleted_df.get_mut(term.as_str()) {
                    Some(count) => *count += 1,
                    None => {
                        self.deleted_df.insert(Arc::from(term), 1);
                    }
                }
            }
        }
    }

    /// Adds `agent` as a new overlay document (its name must not be live in the index).
    fn add(&mut self, agent: Arc<Agent>, origin: &Name, analyzer: &mut MemoAnalyzer) {
        // Beyond any overlay a compaction lets grow; the bound keeps the conversion total.
        let Ok(slot) = DocId::try_from(self.docs.len()) else {
            return;
        };
        let mut analysed = Vec::new();
        let length = analyze_document(analyzer, &agent, origin, &mut analysed);
        let terms: Box<[(Arc<str>, u32)]> = analysed
            .into_iter()
            .map(|(term, tf)| {
                let term = intern(&self.postings, &term);
                Arc::make_mut(self.postings.entry(Arc::clone(&term)).or_default())
                    .push(Posting { doc: slot, tf });
                (term, tf)
            })
            .collect();
        let tags = add_overlay_values(&mut self.tags, &agent.tags, slot);
        let capabilities = add_overlay_values(&mut self.capabilities, &agent.capabilities, slot);
        self.live_length += u64::from(length);
        self.by_name.insert(agent.name.clone(), slot);
        self.docs.push(Some(Arc::new(OverlayDoc {
            agent,
            length,
            terms,
            tags,
            capabilities,
        })));
    }
}

/// The key already in `map` for `term`, shared, or a new one.
fn intern<V>(map: &HashMap<Arc<str>, V>, term: &str) -> Arc<str> {
    map.get_key_value(term)
        .map_or_else(|| Arc::from(term), |(key, _)| Arc::clone(key))
}

/// Takes document `doc` out of `key`'s list (sorted by document), dropping an emptied list.
fn remove_from<T: Clone>(
    map: &mut HashMap<Arc<str>, Arc<Vec<T>>>,
    key: &str,
    doc: DocId,
    doc_of: impl Fn(&T) -> DocId,
) {
    let Some(list) = map.get_mut(key) else {
        return;
    };
    if let Ok(at) = list.binary_search_by_key(&doc, &doc_of) {
        Arc::make_mut(list).remove(at);
    }
    if list.is_empty() {
        map.remove(key);
    }
}

fn add_overlay_values(
    map: &mut HashMap<Arc<str>, Arc<Vec<DocId>>>,
    values: &[Arc<str>],
    slot: DocId,
) -> Box<[Arc<str>]> {
    let mut folded: Vec<String> = values.iter().map(|v| fold_value(v)).collect();
    folded.sort_unstable();
    folded.dedup();
    folded
        .into_iter()
        .map(|value| {
            let key = intern(map, &value);
            Arc::make_mut(map.entry(Arc::clone(&key)).or_default()).push(slot);
            key
        })
        .collect()
}

/// The search index of one zone at one serial.
pub struct ZoneIndex {
    origin: Name,
    serial: u32,
    base: Arc<Base>,
    overlay: Overlay,
    /// Each base document's [`bm25::length_norm`] against this serial's exact average
    /// length, computed by the first ranked search of this index (a pass over the base, far
    /// less than a build) and then shared by every search of the serial.
    norms: OnceLock<Box<[f64]>>,
}

impl fmt::Debug for ZoneIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneIndex")
            .field("origin", &self.origin)
            .field("serial", &self.serial)
            .field("agents", &self.len())
            .field("base", &self.base.docs.len())
            .field("overlay", &self.overlay_size())
            .finish()
    }
}

/// A document of either part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocRef {
    Base(DocId),
    Overlay(DocId),
}

impl ZoneIndex {
    /// Indexes every agent of the snapshot: a base and an empty overlay.
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

        let mut base = Base {
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
                match base.postings.get_mut(term.as_str()) {
                    Some(list) => list.push(posting),
                    None => {
                        base.postings.insert(term.into_boxed_str(), vec![posting]);
                    }
                }
            }
            add_values(&mut base.tags, &agent.tags, doc);
            add_values(&mut base.capabilities, &agent.capabilities, doc);
            base.total_length += u64::from(length);
            base.docs.push(Doc { agent, length });
        }
        ZoneIndex {
            origin,
            serial,
            overlay: Overlay::new(base.docs.len()),
            base: Arc::new(base),
            norms: OnceLock::new(),
        }
    }

    /// The index of `snapshot` derived from this one, when the snapshot's lineage says it
    /// directly follows this index's serial: O(overlay + changed names). `None` otherwise
    /// (no lineage, or it follows another serial): build it in full.
    pub fn follow_snapshot(&self, snapshot: &ZoneSnapshot) -> Option<ZoneIndex> {
        let lineage = snapshot.lineage()?;
        if lineage.parent_serial != self.serial || snapshot.origin() != &self.origin {
            return None;
        }
        let step = Step {
            serial: snapshot.serial(),
            changed: Arc::clone(&lineage.changed),
        };
        Some(self.follow(std::slice::from_ref(&step), |name| {
            snapshot.agent(name.as_str()).cloned()
        }))
    }

    /// Applies lineage steps: every name they changed is taken out and, when `current` has
    /// an agent of that name, put back as it is now. The result has the last step's serial.
    fn follow(&self, steps: &[Step], current: impl Fn(&Name) -> Option<Arc<Agent>>) -> ZoneIndex {
        let mut overlay = self.overlay.clone();
        let mut analyzer = MemoAnalyzer::new();
        let mut serial = self.serial;
        for step in steps {
            for name in step.changed.iter() {
                overlay.remove(&self.base, &self.origin, name, &mut analyzer);
                if let Some(agent) = current(name)
                    && agent.name == *name
                {
                    overlay.add(agent, &self.origin, &mut analyzer);
                }
            }
            overlay.steps.push(step.clone());
            serial = step.serial;
        }
        ZoneIndex {
            origin: self.origin.clone(),
            serial,
            base: Arc::clone(&self.base),
            overlay,
            norms: OnceLock::new(),
        }
    }

    /// The agent named `name` in this index.
    fn agent_named(&self, name: &Name) -> Option<Arc<Agent>> {
        if let Some(&slot) = self.overlay.by_name.get(name) {
            return self.overlay.live(slot).map(|doc| Arc::clone(&doc.agent));
        }
        let doc = self.base.find(name)?;
        (!self.overlay.is_deleted(doc)).then(|| Arc::clone(&self.base.docs[doc as usize].agent))
    }

    /// Changes held in the overlay: documents added or replaced since the base (including
    /// those changed again since), base documents deleted, and lineage steps applied (a step
    /// that touched only aliases or delegations still costs its place in the log).
    pub fn overlay_size(&self) -> usize {
        self.overlay.docs.len() + self.overlay.deleted_count as usize + self.overlay.steps.len()
    }

    /// The overlay size past which this index should be compacted: [`OVERLAY_FLOOR`] or a
    /// [`OVERLAY_DIVISOR`]th of the base, whichever is more.
    pub fn overlay_bound(&self) -> usize {
        OVERLAY_FLOOR.max(self.base.docs.len() / OVERLAY_DIVISOR)
    }

    /// The same documents as one new base with an empty overlay: a build in full, from the
    /// index's own agents (no snapshot needed), for a background thread.
    pub fn compacted(&self) -> ZoneIndex {
        let base = self
            .base
            .docs
            .iter()
            .enumerate()
            .filter(|(doc, _)| !self.overlay.is_deleted(*doc as DocId))
            .map(|(_, doc)| Arc::clone(&doc.agent));
        let overlay = self
            .overlay
            .docs
            .iter()
            .flatten()
            .map(|doc| Arc::clone(&doc.agent));
        let documents = base
            .chain(overlay)
            .map(|agent| (agent, self.origin.clone()));
        ZoneIndex::from_documents(self.origin.clone(), self.serial, documents)
    }

    /// Brings `self`, a compaction of `source`, up to `current`, an index derived from
    /// `source` since: applies again the lineage steps `current` took after `source`, with
    /// `current`'s agents. `None` when `current` does not descend from `source` (it was
    /// built in full since, say), and the compaction is of no use.
    pub fn rebase(&self, source: &ZoneIndex, current: &ZoneIndex) -> Option<ZoneIndex> {
        let (before, now) = (&source.overlay.steps, &current.overlay.steps);
        let descends = Arc::ptr_eq(&source.base, &current.base)
            && self.serial == source.serial
            && now.len() >= before.len()
            && before.last().is_none_or(|last| {
                let at = &now[before.len() - 1];
                at.serial == last.serial && Arc::ptr_eq(&at.changed, &last.changed)
            });
        if !descends {
            return None;
        }
        Some(self.follow(&now[before.len()..], |name| current.agent_named(name)))
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Agents indexed.
    pub fn len(&self) -> usize {
        self.doc_count() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn doc_count(&self) -> u64 {
        self.base.docs.len() as u64 - self.overlay.deleted_count + self.overlay.by_name.len() as u64
    }

    /// Distinct terms indexed (held by at least one live document).
    pub fn term_count(&self) -> usize {
        let overlay = &self.overlay;
        let in_base = |term: &str| {
            self.base
                .postings
                .get(term)
                .map_or(0, |list| list.len() as u64)
                > overlay.deleted_df.get(term).copied().unwrap_or(0)
        };
        self.base
            .postings
            .keys()
            .filter(|term| in_base(term))
            .count()
            + overlay
                .postings
                .keys()
                .filter(|term| !in_base(term))
                .count()
    }

    /// Runs a query: the zone's statistics for its terms, the number of agents that match,
    /// and the best `limit` of them (score descending, then name; name order for a listing).
    pub fn search(&self, query: &AnalyzedQuery) -> ZoneResult {
        let lists: Vec<(&[Posting], &[Posting])> = query
            .terms()
            .iter()
            .map(|term| {
                let base = self
                    .base
                    .postings
                    .get(term.as_str())
                    .map_or(&[][..], Vec::as_slice);
                let overlay = self
                    .overlay
                    .postings
                    .get(term.as_str())
                    .map_or(&[][..], |list| list.as_slice());
                (base, overlay)
            })
            .collect();
        let doc_freq = query
            .terms()
            .iter()
            .zip(&lists)
            .map(|(term, (base, overlay))| {
                let deleted = self
                    .overlay
                    .deleted_df
                    .get(term.as_str())
                    .copied()
                    .unwrap_or(0);
                base.len() as u64 - deleted + overlay.len() as u64
            })
            .collect();
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
            self.rank(&filter, &lists, query.limit(), &mut result);
        }
        result
    }

    fn corpus_stats(&self, doc_freq: Vec<u64>) -> CorpusStats {
        CorpusStats {
            doc_count: self.doc_count(),
            total_length: self.base.total_length - self.overlay.deleted_length
                + self.overlay.live_length,
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
        let mut base: Vec<&[DocId]> = Vec::new();
        let mut overlay: Vec<&[DocId]> = Vec::new();
        for (values, base_map, overlay_map) in [
            (query.tags(), &self.base.tags, &self.overlay.tags),
            (
                query.capabilities(),
                &self.base.capabilities,
                &self.overlay.capabilities,
            ),
        ] {
            for value in values {
                let in_base = base_map.get(value.as_str()).map_or(&[][..], Vec::as_slice);
                let in_overlay = overlay_map
                    .get(value.as_str())
                    .map_or(&[][..], |list| list.as_slice());
                if in_base.is_empty() && in_overlay.is_empty() {
                    return None;
                }
                base.push(in_base);
                overlay.push(in_overlay);
            }
        }
        Some(Filter {
            base: intersect(base),
            overlay: intersect(overlay),
            scope,
        })
    }

    /// The live base documents the tag and capability filters allow, in name order.
    fn base_candidates<'a>(&'a self, filter: &'a Filter<'_>) -> impl Iterator<Item = DocId> + 'a {
        let all = match &filter.base {
            Some(_) => 0..0,
            None => 0..self.base.docs.len() as DocId,
        };
        filter
            .base
            .iter()
            .flatten()
            .copied()
            .chain(all)
            .filter(|&doc| !self.overlay.is_deleted(doc))
    }

    /// The live overlay documents the filters allow, in slot order.
    fn overlay_candidates(&self, filter: &Filter<'_>) -> Vec<DocId> {
        match &filter.overlay {
            Some(allowed) => allowed.clone(),
            None => self.overlay.by_name.values().copied().collect(),
        }
    }

    /// A live document's agent and length.
    fn entry(&self, doc: DocRef) -> Option<(&Arc<Agent>, u32)> {
        match doc {
            DocRef::Base(doc) => {
                let entry = self.base.docs.get(doc as usize)?;
                Some((&entry.agent, entry.length))
            }
            DocRef::Overlay(slot) => {
                let entry = self.overlay.live(slot)?;
                Some((&entry.agent, entry.length))
            }
        }
    }

    fn name_of(&self, doc: DocRef) -> Option<&Name> {
        self.entry(doc).map(|(agent, _)| &agent.name)
    }

    fn list(&self, filter: &Filter<'_>, limit: usize, result: &mut ZoneResult) {
        let mut overlay = self.overlay_candidates(filter);
        overlay.retain(|&slot| self.overlay.live(slot).is_some());
        overlay.sort_unstable_by(|&a, &b| {
            self.name_of(DocRef::Overlay(a))
                .cmp(&self.name_of(DocRef::Overlay(b)))
        });
        let mut overlay = overlay.into_iter().map(DocRef::Overlay).peekable();
        let mut base = self.base_candidates(filter).map(DocRef::Base).peekable();
        // The two parts hold distinct names, each part in name order: merge them.
        loop {
            let next = match (base.peek(), overlay.peek()) {
                (Some(&b), Some(&o)) => {
                    if self.name_of(b) < self.name_of(o) {
                        base.next()
                    } else {
                        overlay.next()
                    }
                }
                (Some(_), None) => base.next(),
                (None, Some(_)) => overlay.next(),
                (None, None) => break,
            };
            let Some((agent, length)) = next.and_then(|doc| self.entry(doc)) else {
                continue;
            };
            if !filter.admits(&agent.name) {
                continue;
            }
            result.matches += 1;
            if result.hits.len() < limit {
                result.hits.push(self.hit(agent, length, 0.0, Vec::new()));
            }
        }
    }

    fn rank(
        &self,
        filter: &Filter<'_>,
        lists: &[(&[Posting], &[Posting])],
        limit: usize,
        result: &mut ZoneResult,
    ) {
        if lists
            .iter()
            .all(|(base, overlay)| base.is_empty() && overlay.is_empty())
        {
            return;
        }
        let idfs = result.stats.idfs();
        let avg_length = result.stats.avg_length();
        // Norms against the exact average of this serial: stored per index, never carried
        // over from an older serial whose average differed.
        let norm = |length: u32| bm25::length_norm(f64::from(length), avg_length);
        let norms = self
            .norms
            .get_or_init(|| self.base.docs.iter().map(|doc| norm(doc.length)).collect());
        let mut base_scores = vec![0.0_f64; self.base.docs.len()];
        let mut overlay_scores = vec![0.0_f64; self.overlay.docs.len()];
        for ((base, overlay), &idf) in lists.iter().zip(&idfs) {
            for posting in *base {
                let doc = posting.doc as usize;
                base_scores[doc] += bm25::term_score(idf, f64::from(posting.tf), norms[doc]);
            }
            for posting in *overlay {
                let slot = posting.doc as usize;
                let length = self.overlay.live(posting.doc).map_or(0, |doc| doc.length);
                overlay_scores[slot] += bm25::term_score(idf, f64::from(posting.tf), norm(length));
            }
        }
        // Every matching document scores above 0: idf > 0 and a matching tf >= 1.
        let mut best = TopK::new(limit);
        let mut offer = |doc: DocRef, score: f64| {
            if let Some(name) = self.name_of(doc)
                && filter.admits(name)
            {
                result.matches += 1;
                best.offer(Ranked { score, name, doc });
            }
        };
        let overlay = &self.overlay;
        match &filter.base {
            None => {
                for (doc, &score) in (0..).zip(&base_scores) {
                    if score > 0.0 && !overlay.is_deleted(doc) {
                        offer(DocRef::Base(doc), score);
                    }
                }
            }
            Some(allowed) => {
                for &doc in allowed {
                    let score = base_scores[doc as usize];
                    if score > 0.0 && !overlay.is_deleted(doc) {
                        offer(DocRef::Base(doc), score);
                    }
                }
            }
        }
        for slot in self.overlay_candidates(filter) {
            let score = overlay_scores[slot as usize];
            if score > 0.0 {
                offer(DocRef::Overlay(slot), score);
            }
        }
        result.hits = best
            .into_best_first()
            .into_iter()
            .filter_map(|Ranked { score, doc, .. }| {
                let (agent, length) = self.entry(doc)?;
                let term_freqs = lists
                    .iter()
                    .map(|(base, overlay)| {
                        let (list, doc) = match doc {
                            DocRef::Base(doc) => (base, doc),
                            DocRef::Overlay(slot) => (overlay, slot),
                        };
                        match list.binary_search_by_key(&doc, |p| p.doc) {
                            Ok(at) => list[at].tf as f32,
                            Err(_) => 0.0,
                        }
                    })
                    .collect();
                Some(self.hit(agent, length, score, term_freqs))
            })
            .collect();
    }

    fn hit(&self, agent: &Arc<Agent>, length: u32, score: f64, term_freqs: Vec<f32>) -> Hit {
        Hit {
            agent: Arc::clone(agent),
            zone: self.origin.clone(),
            score,
            term_freqs,
            length: length as f32,
        }
    }
}

/// The documents in every one of `lists` (each sorted), in order; `None` for no lists.
fn intersect(mut lists: Vec<&[DocId]>) -> Option<Vec<DocId>> {
    lists.sort_by_key(|list| list.len());
    lists.split_first().map(|(smallest, rest)| {
        let mut allowed = smallest.to_vec();
        allowed.retain(|doc| rest.iter().all(|list| list.binary_search(doc).is_ok()));
        allowed
    })
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

fn add_values(map: &mut HashMap<Box<str>, Vec<DocId>>, values: &[Arc<str>], doc: DocId) {
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
    /// Base documents that have every requested tag and capability, in order; `None` when
    /// the query asks for none.
    base: Option<Vec<DocId>>,
    /// The same among overlay slots.
    overlay: Option<Vec<DocId>>,
    /// The scope, when it does not cover the whole zone.
    scope: Option<&'q Name>,
}

impl Filter<'_> {
    fn admits(&self, name: &Name) -> bool {
        self.scope.is_none_or(|scope| name.is_at_or_below(scope))
    }
}

/// A scored document, ordered best first: higher score, then earlier name.
#[derive(Debug, Clone, Copy)]
struct Ranked<'a> {
    score: f64,
    name: &'a Name,
    doc: DocRef,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| match (self.doc, other.doc) {
                // Base documents are numbered in name order: the same order, cheaper.
                (DocRef::Base(a), DocRef::Base(b)) => b.cmp(&a),
                _ => other.name.cmp(self.name),
            })
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

/// The best `limit` documents seen: a min-heap of at most `limit`, its worst on top.
struct TopK<'a> {
    limit: usize,
    heap: BinaryHeap<Reverse<Ranked<'a>>>,
}

impl<'a> TopK<'a> {
    fn new(limit: usize) -> TopK<'a> {
        TopK {
            limit,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, candidate: Ranked<'a>) {
        if self.heap.len() < self.limit {
            self.heap.push(Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut()
            && candidate > worst.0
        {
            *worst = Reverse(candidate);
        }
    }

    fn into_best_first(self) -> Vec<Ranked<'a>> {
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
