//! Agent search: a per-zone full-text index and the federated merge of per-zone results.
//!
//! A search ("a forecasting agent in finance", optionally narrowed by tag, capability and a
//! name scope) runs on every zone it concerns, each on the node that serves the zone, and
//! the caller merges the partial results. No sockets and no wire types here: other nodes are
//! reached through [`federate::SearchPeer`].
//!
//! # Why an in-memory inverted index, not tantivy
//!
//! - A zone is already in memory as an immutable [`ZoneSnapshot`](crate::zone::ZoneSnapshot),
//!   and its index lives beside it: nothing to persist or commit, which is most of what a
//!   search engine crate is for. Registrations still change a zone many times a second, so
//!   an index is one immutable base segment plus a small overlay of what changed since,
//!   derived per serial from the snapshot's lineage and compacted into a new base in the
//!   background (see [`index`] and [`cache`]): one segment and one merge, not an engine.
//! - The federated merge needs the raw term statistics of each zone (document count, total
//!   length, document frequency of each query term, each hit's term frequencies) to rescore
//!   hits against the union of the zones. Owning the index keeps those numbers one field
//!   away instead of behind a scorer API.
//! - Build time and binary size: a few hundred lines instead of a large dependency tree, for
//!   corpora of at most some hundred thousand short documents (an agent's name, tags,
//!   capabilities and a description of at most 1 KiB).
//!
//! # Scoring
//!
//! BM25F-style: each field's term counts are weighted (name 3, tags 2, capabilities 2,
//! description 1) and summed into one term frequency per document, and a document's length is
//! the same weighted sum of its field lengths; then plain BM25 (k1 = 1.2, b = 0.75). Scores of
//! different zones are not comparable (each has its own N, average length and document
//! frequencies), so [`merge()`] sums the statistics every zone sends and rescores every hit with
//! them: the merged ranking is the one a single index over the union of the zones would give
//! to those hits. Each zone sends only its own top `limit` by local score, so a document
//! outside every zone's local top `limit` cannot appear (the usual distributed-IDF
//! approximation).
//!
//! # Layout
//!
//! - [`analyze`]: the tokenizer (lowercase, split, stopwords, Snowball English stemming) and
//!   queries.
//! - [`index`]: [`ZoneIndex`], built from one snapshot or derived from the previous serial's,
//!   searched with an [`AnalyzedQuery`], with exact statistics either way.
//! - [`bm25`]: the scoring function and the corpus statistics it takes.
//! - [`merge`](mod@merge): per-zone results and their merge.
//! - [`cache`]: [`ZoneIndexes`], one index per zone and serial, shared by concurrent callers,
//!   derived from the previous serial's when the snapshot's lineage allows, compacted on a
//!   background thread.
//! - [`federate`]: the walk over a node's zones and its children's, behind a peer trait
//!   (the gRPC door implements it), shared by nodes and the gateway.

pub mod analyze;
pub mod bm25;
pub mod cache;
pub mod federate;
pub mod index;
pub mod merge;

#[cfg(test)]
mod fixtures;

pub use analyze::{AnalyzedQuery, SearchQuery};
pub use bm25::CorpusStats;
pub use cache::ZoneIndexes;
pub use index::ZoneIndex;
pub use merge::{Hit, InvalidZoneResult, Merged, ZoneResult, merge};
