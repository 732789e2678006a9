//! BM25 and the corpus statistics it is computed from.
//!
//! One function scores both a zone's local ranking and the federated merge, so a merge of a
//! single zone's result reproduces that zone's scores, and a merge of several reproduces what
//! one index over their union would give.
//!
//! Field weights are whole numbers, so weighted term frequencies and lengths are whole
//! numbers too: [`CorpusStats::total_length`] is an exact `u64` that sums exactly across
//! zones, and the `f32` term frequencies and lengths of a [`Hit`](super::Hit) are exact below
//! 2^24 (a description is at most 1 KiB, so a document's weighted length is far below that).

/// Term-frequency saturation.
pub const K1: f64 = 1.2;
/// Length normalisation.
pub const B: f64 = 0.75;

/// What BM25 needs to know about a corpus for one query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorpusStats {
    /// Documents (agents) in the corpus.
    pub doc_count: u64,
    /// Sum of the documents' weighted lengths.
    pub total_length: u64,
    /// Documents holding each query term, in query-term order.
    pub doc_freq: Vec<u64>,
}

impl CorpusStats {
    /// The average weighted document length; 0 for an empty corpus.
    pub fn avg_length(&self) -> f64 {
        if self.doc_count == 0 {
            0.0
        } else {
            self.total_length as f64 / self.doc_count as f64
        }
    }

    /// The idf of each query term.
    pub fn idfs(&self) -> Vec<f64> {
        self.doc_freq
            .iter()
            .map(|&df| idf(self.doc_count, df))
            .collect()
    }
}

/// `ln(1 + (N - df + 0.5) / (df + 0.5))`: always positive. A document frequency above the
/// document count (possible only in data from a confused peer) counts as the document count.
pub fn idf(doc_count: u64, doc_freq: u64) -> f64 {
    let n = doc_count as f64;
    let df = doc_freq.min(doc_count) as f64;
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// The denominator's length part, `k1 · (1 - b + b · length / avg_length)`: depends only on
/// the document and the corpus, so an index computes it once per document.
pub fn length_norm(length: f64, avg_length: f64) -> f64 {
    let ratio = if avg_length > 0.0 {
        length / avg_length
    } else {
        1.0
    };
    K1 * (1.0 - B + B * ratio)
}

/// One term's contribution to a document's score.
pub fn term_score(idf: f64, term_freq: f64, length_norm: f64) -> f64 {
    if term_freq <= 0.0 {
        return 0.0;
    }
    idf * term_freq * (K1 + 1.0) / (term_freq + length_norm)
}

/// A document's score: the sum over query terms, `idfs` and `term_freqs` in query-term order.
pub fn score(idfs: &[f64], term_freqs: impl IntoIterator<Item = f64>, length_norm: f64) -> f64 {
    idfs.iter()
        .zip(term_freqs)
        .map(|(&idf, tf)| term_score(idf, tf, length_norm))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_is_positive_and_falls_with_document_frequency() {
        let rare = idf(1000, 1);
        let common = idf(1000, 500);
        let everywhere = idf(1000, 1000);
        assert!(rare > common && common > everywhere && everywhere > 0.0);
        assert_eq!(idf(10, 50), idf(10, 10));
        assert!(idf(0, 0) > 0.0);
    }

    #[test]
    fn term_frequency_saturates_and_length_normalises() {
        let norm = length_norm(10.0, 10.0);
        assert!((norm - K1).abs() < 1e-12);
        let one = term_score(1.0, 1.0, norm);
        let ten = term_score(1.0, 10.0, norm);
        assert!(ten > one && ten < K1 + 1.0);
        assert!(term_score(1.0, 1.0, length_norm(5.0, 10.0)) > one);
        assert_eq!(term_score(1.0, 0.0, norm), 0.0);
        assert!(length_norm(3.0, 0.0).is_finite());
    }
}
