//! Tests of [`ZoneIndex`], and the 100,000-agent benchmark (`--ignored`).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

use super::*;
use crate::search::SearchQuery;
use crate::search::fixtures::{agent, federation, name, zone};

fn index_of(origin: &str) -> ZoneIndex {
    let snapshot = federation()
        .into_iter()
        .find(|zone| zone.origin().as_str() == origin)
        .expect("a fixture zone");
    ZoneIndex::build(&snapshot)
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.to_string(),
        limit: 10,
        ..SearchQuery::default()
    }
}

fn names(result: &ZoneResult) -> Vec<&str> {
    result
        .hits
        .iter()
        .map(|hit| hit.agent.name.as_str())
        .collect()
}

#[test]
fn an_empty_query_lists_every_agent_in_name_order() {
    let index = index_of("finance.acme");
    let result = index.search(&query("").analyze());
    assert_eq!(
        names(&result),
        [
            "analyst.finance.acme",
            "auditor.finance.acme",
            "fin-ops.finance.acme",
            "forecaster.finance.acme",
            "payroll.finance.acme",
        ]
    );
    assert_eq!(result.matches, 5);
    assert!(result.hits.iter().all(|hit| hit.score == 0.0));
    assert!(result.hits.iter().all(|hit| hit.term_freqs.is_empty()));
    assert_eq!((result.zone.as_str(), result.serial), ("finance.acme", 7));

    let mut limited = query("the, of");
    limited.limit = 2;
    let result = index.search(&limited.analyze());
    assert_eq!(
        names(&result),
        ["analyst.finance.acme", "auditor.finance.acme"]
    );
    assert_eq!(result.matches, 5);
}

#[test]
fn filters_are_conjunctive_whole_values_ignoring_case() {
    let index = index_of("finance.acme");
    let mut q = query("");
    q.tags = vec!["FINANCE".into()];
    let result = index.search(&q.analyze());
    assert_eq!(
        names(&result),
        [
            "analyst.finance.acme",
            "auditor.finance.acme",
            "payroll.finance.acme"
        ]
    );
    assert_eq!(result.matches, 3);

    q.capabilities = vec!["Audit".into()];
    assert_eq!(names(&index.search(&q.analyze())), ["auditor.finance.acme"]);

    q.capabilities = vec!["forecast_q1".into()];
    assert_eq!(names(&index.search(&q.analyze())), ["analyst.finance.acme"]);

    // Whole values only: "forecast" is not "forecast_q1", "fin" is not "finance".
    q.tags = vec!["fin".into()];
    let result = index.search(&q.analyze());
    assert!(result.hits.is_empty());
    assert_eq!(result.matches, 0);

    // With text: filters narrow the ranked matches.
    let mut q = query("revenue");
    assert_eq!(index.search(&q.analyze()).matches, 2);
    q.tags = vec!["finance".into()];
    let result = index.search(&q.analyze());
    assert_eq!(names(&result), ["analyst.finance.acme"]);
    assert_eq!(result.matches, 1);
    assert!(result.hits[0].score > 0.0);
}

#[test]
fn scope_keeps_names_at_or_below_it() {
    let index = index_of("research.acme");
    let mut q = query("");
    q.scope = Some(name("lab.research.acme"));
    assert_eq!(
        names(&index.search(&q.analyze())),
        ["deep.lab.research.acme"]
    );

    q.scope = Some(name("acme"));
    assert_eq!(index.search(&q.analyze()).matches, 3);

    q.scope = Some(name("papers.research.acme"));
    assert_eq!(names(&index.search(&q.analyze())), ["papers.research.acme"]);

    q.scope = Some(name("finance.acme"));
    let result = index.search(&q.analyze());
    assert_eq!(result.matches, 0);
    // Statistics still describe the zone: the merge counts its documents.
    assert_eq!(result.stats.doc_count, 3);

    let mut q = query("forecasts of lab results");
    q.scope = Some(name("lab.research.acme"));
    assert_eq!(
        names(&index.search(&q.analyze())),
        ["deep.lab.research.acme"]
    );
}

#[test]
fn ranks_with_bm25_over_weighted_fields() {
    let index = index_of("finance.acme");
    let q = query("a forecasting agent in finance").analyze();
    assert_eq!(q.terms(), ["forecast", "agent", "financ"]);
    let result = index.search(&q);
    assert_eq!(names(&result)[0], "forecaster.finance.acme");
    // forecast: name 3 + tag 2 + capability 2 + description 1; agent and finance: description.
    assert_eq!(result.hits[0].term_freqs, [8.0, 1.0, 1.0]);
    // Every finance agent but fin-ops (whose name is "fin", not "finance") matches something;
    // the analyst's capability forecast_q1 holds "forecast".
    assert_eq!(result.matches, 4);
    assert_eq!(result.stats.doc_count, 5);
    assert_eq!(result.stats.doc_freq, [2, 1, 4]);
    assert!(result.hits.windows(2).all(|w| w[0].score >= w[1].score));

    let result = index.search(&query("fin ops").analyze());
    assert_eq!(names(&result), ["fin-ops.finance.acme"]);
    assert_eq!(result.hits[0].term_freqs, [3.0, 3.0]);

    let result = index.search(&query("audit invoices").analyze());
    assert_eq!(names(&result)[0], "auditor.finance.acme");

    let result = index.search(&query("quantum entanglement").analyze());
    assert_eq!((result.matches, result.hits.len()), (0, 0));
    assert_eq!(result.stats.doc_freq, [0, 0]);
}

#[test]
fn document_length_is_the_weighted_sum_of_field_lengths() {
    let snapshot = zone(
        "acme",
        1,
        vec![
            agent("fin-ops.acme", "Pays the bills", &["finance"], &["pay"]),
            agent("acme", "The zone's own agent", &[], &[]),
        ],
    );
    let index = ZoneIndex::build(&snapshot);
    let result = index.search(&query("").analyze());
    // "acme" at the origin is indexed by its own label: 3 + "zone", "s", "own", "agent".
    assert_eq!(result.hits[0].length, 3.0 + 4.0);
    // fin, ops: 2 × 3; finance: 2; pay: 2; pays, bills: 2 × 1 ("the" is a stopword).
    assert_eq!(result.hits[1].length, 6.0 + 2.0 + 2.0 + 2.0);
    assert_eq!(result.stats.total_length, 7 + 12);
    assert_eq!(names(&index.search(&query("acme").analyze())), ["acme"]);
}

/// The bounded heap keeps exactly the head of the full ranking.
#[test]
fn top_k_is_the_head_of_the_full_ranking() {
    let generator = Generator::new(7);
    let snapshot = generator.zone(3_000);
    let index = ZoneIndex::build(&snapshot);
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..50 {
        let mut q = query(&generator.query(&mut rng));
        q.limit = usize::MAX;
        let all = index.search(&q.analyze());
        assert_eq!(all.matches as usize, all.hits.len());
        let sorted = all.hits.windows(2).all(|w| {
            w[0].score > w[1].score
                || (w[0].score == w[1].score && w[0].agent.name < w[1].agent.name)
        });
        assert!(sorted, "{:?}", q.text);
        for limit in [0, 1, 10, 100] {
            q.limit = limit;
            let top = index.search(&q.analyze());
            let expected: Vec<_> = all.hits.iter().take(limit).map(|h| &h.agent.name).collect();
            let got: Vec<_> = top.hits.iter().map(|h| &h.agent.name).collect();
            assert_eq!(got, expected, "{:?} limit {limit}", q.text);
            assert_eq!(top.matches, all.matches);
        }
    }
}

/// Asserts that two indexes answer `query` alike: statistics, matches, hits in order, each
/// hit's frequencies and length, and scores to 1e-9 (they are in fact the same bits).
fn assert_same_answers(got: &ZoneIndex, fresh: &ZoneIndex, query: &SearchQuery, context: &str) {
    let analyzed = query.analyze();
    let (a, b) = (got.search(&analyzed), fresh.search(&analyzed));
    assert_eq!(a.stats, b.stats, "{context}: statistics for {query:?}");
    assert_eq!(a.matches, b.matches, "{context}: matches for {query:?}");
    assert_eq!(a.serial, b.serial, "{context}");
    assert_eq!(names(&a), names(&b), "{context}: hits for {query:?}");
    for (x, y) in a.hits.iter().zip(&b.hits) {
        assert_eq!(x.agent, y.agent, "{context}: {}", x.agent.name);
        assert!(
            (x.score - y.score).abs() < 1e-9,
            "{context}: {} scores",
            x.agent.name
        );
        assert_eq!(x.score.to_bits(), y.score.to_bits(), "{context}: same bits");
        assert_eq!(x.term_freqs, y.term_freqs, "{context}: {}", x.agent.name);
        assert_eq!(x.length, y.length, "{context}: {}", x.agent.name);
    }
}

/// Queries that exercise ranking, listing, both filters and a scope.
fn probe_queries(generator: &Generator, rng: &mut StdRng) -> Vec<SearchQuery> {
    let mut out: Vec<SearchQuery> = (0..6).map(|_| query(&generator.query(rng))).collect();
    out.push(query(""));
    out.push(query("agent"));
    let mut tagged = query(&generator.query(rng));
    tagged.tags = vec![generator.tags[rng.random_range(0..generator.tags.len())].to_uppercase()];
    out.push(tagged);
    let mut listed = query("");
    listed.capabilities = vec![generator.capabilities[rng.random_range(0..5)].clone()];
    out.push(listed);
    let mut both = query("agent");
    both.tags = vec![generator.tags[rng.random_range(0..5)].clone()];
    both.capabilities = vec![generator.capabilities[rng.random_range(0..5)].clone()];
    out.push(both);
    let mut scoped = query(&generator.query(rng));
    scoped.scope = Some(name(&format!("a{:06}.bench", rng.random_range(0..50))));
    out.push(scoped);
    for q in &mut out {
        q.limit = [1, 10, 50][rng.random_range(0..3)];
    }
    out
}

/// Random registrations, replacements and deletions, followed through lineages, give the
/// answers of an index built from scratch over the same snapshot: after every step, across
/// compactions, and after a compaction that is brought forward over the steps published
/// while it ran.
#[test]
fn an_index_following_changes_answers_as_one_built_from_scratch() {
    use crate::zone::Lineage;
    use std::collections::BTreeMap;

    let generator = Generator::new(3);
    let mut rng = StdRng::seed_from_u64(17);
    let mut agents: BTreeMap<String, crate::record::Agent> = (0..400)
        .map(|i| {
            let agent = generator.agent(&mut rng, i);
            (agent.name.to_string(), agent)
        })
        .collect();
    let mut next_id = 400;
    let mut serial = 1;
    let snapshot = |serial: u32, agents: &BTreeMap<String, crate::record::Agent>| {
        zone("bench", serial, agents.values().cloned().collect())
    };
    let first = snapshot(serial, &agents);
    let mut index = ZoneIndex::build(&first);
    let mut compacting: Option<(ZoneIndex, ZoneIndex)> = None;
    let (mut derived, mut compactions, mut rebases) = (0, 0, 0);
    for step in 0..240 {
        let mut changed = Vec::new();
        for _ in 0..rng.random_range(1..=6) {
            let existing: Vec<String> = agents.keys().cloned().collect();
            match rng.random_range(0..10) {
                // Register a new agent.
                0..=3 => {
                    let agent = generator.agent(&mut rng, next_id);
                    next_id += 1;
                    changed.push(agent.name.clone());
                    agents.insert(agent.name.to_string(), agent);
                }
                // Replace one (same name, new text, tags and capabilities).
                4..=6 if !existing.is_empty() => {
                    let victim = &existing[rng.random_range(0..existing.len())];
                    let mut agent = generator.agent(&mut rng, 0);
                    agent.name = name(victim);
                    changed.push(agent.name.clone());
                    agents.insert(victim.clone(), agent);
                }
                // Deregister one.
                7..=8 if !existing.is_empty() => {
                    let victim = &existing[rng.random_range(0..existing.len())];
                    agents.remove(victim);
                    changed.push(name(victim));
                }
                // A name that is no agent (an alias or a delegation in a real lineage).
                _ => changed.push(name(&format!("alias{step}.bench"))),
            }
        }
        changed.sort();
        changed.dedup();
        let parent = serial;
        serial += 1;
        let next = snapshot(serial, &agents).with_lineage(Lineage {
            parent_serial: parent,
            changed: changed.into(),
        });
        index = index
            .follow_snapshot(&next)
            .expect("the snapshot follows the index");
        derived += 1;
        let fresh = ZoneIndex::build(&next);
        assert_eq!(index.len(), fresh.len());
        assert_eq!(index.term_count(), fresh.term_count(), "step {step}");
        for q in probe_queries(&generator, &mut rng) {
            assert_same_answers(&index, &fresh, &q, &format!("step {step}"));
        }
        // A compaction starts every 60 steps and is brought forward 7 steps later.
        if step % 60 == 20 {
            compacting = Some((index.compacted(), clone_index(&index)));
        }
        if step % 60 == 27
            && let Some((compacted, source)) = compacting.take()
        {
            index = compacted
                .rebase(&source, &index)
                .expect("the index descends from the compacted one");
            rebases += 1;
            assert!(index.overlay_size() > 0, "the 7 steps are in the overlay");
            for q in probe_queries(&generator, &mut rng) {
                assert_same_answers(&index, &fresh, &q, &format!("rebased at {step}"));
            }
        }
        if step % 60 == 50 {
            index = index.compacted();
            compactions += 1;
            assert_eq!(index.overlay_size(), 0);
            for q in probe_queries(&generator, &mut rng) {
                assert_same_answers(&index, &fresh, &q, &format!("compacted at {step}"));
            }
        }
    }
    assert_eq!((derived, compactions, rebases), (240, 4, 4));

    // A snapshot that does not follow the index's serial cannot be derived.
    let unrelated = snapshot(serial + 5, &agents).with_lineage(Lineage {
        parent_serial: serial + 4,
        changed: Vec::new().into(),
    });
    assert!(index.follow_snapshot(&unrelated).is_none());
    assert!(
        index
            .follow_snapshot(&snapshot(serial + 1, &agents))
            .is_none()
    );
}

/// The same index, for a test to keep as the source of a compaction.
fn clone_index(index: &ZoneIndex) -> ZoneIndex {
    ZoneIndex {
        origin: index.origin.clone(),
        serial: index.serial,
        base: Arc::clone(&index.base),
        overlay: index.overlay.clone(),
        norms: OnceLock::new(),
    }
}

/// A compaction of an index the current one does not descend from is refused.
#[test]
fn a_compaction_is_rebased_only_onto_a_descendant() {
    use crate::zone::Lineage;

    let generator = Generator::new(5);
    let mut rng = StdRng::seed_from_u64(5);
    let agents: Vec<_> = (0..50).map(|i| generator.agent(&mut rng, i)).collect();
    let one = ZoneIndex::build(&zone("bench", 1, agents.clone()));
    let compacted = one.compacted();
    // Built in full at serial 2: another base.
    let two = ZoneIndex::build(&zone("bench", 2, agents.clone()));
    assert!(compacted.rebase(&one, &two).is_none());
    // Derived from serial 1: rebased.
    let followed = one
        .follow_snapshot(
            &zone("bench", 2, agents[1..].to_vec()).with_lineage(Lineage {
                parent_serial: 1,
                changed: vec![agents[0].name.clone()].into(),
            }),
        )
        .expect("follows");
    let rebased = compacted.rebase(&one, &followed).expect("descends");
    assert_eq!((rebased.serial(), rebased.len()), (2, 49));
}

/// Generated agents: a vocabulary of 2,000 made-up words drawn with a Zipf law (so some are
/// common and most rare, as in real text), and "agent" in every description.
struct Generator {
    words: Vec<String>,
    tags: Vec<String>,
    capabilities: Vec<String>,
    zipf: Zipf<f64>,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "dro", "fen", "gul", "hax",
            "jor", "quin", "bel", "cor", "dun", "yst",
        ];
        let mut rng = StdRng::seed_from_u64(seed);
        let mut word = |syllables: usize| -> String {
            (0..syllables)
                .map(|_| SYLLABLES[rng.random_range(0..SYLLABLES.len())])
                .collect()
        };
        let words = (0..2_000).map(|_| word(3)).collect();
        let tags = (0..50).map(|_| word(2)).collect();
        let capabilities = (0..50)
            .map(|_| format!("{}_{}", word(2), word(1)))
            .collect();
        Generator {
            words,
            tags,
            capabilities,
            zipf: Zipf::new(2_000.0, 1.0).expect("valid Zipf parameters"),
        }
    }

    fn word(&self, rng: &mut StdRng) -> &str {
        let rank = self.zipf.sample(rng) as usize;
        &self.words[rank.clamp(1, self.words.len()) - 1]
    }

    fn agent(&self, rng: &mut StdRng, i: usize) -> crate::record::Agent {
        let mut description = vec!["agent"];
        for _ in 0..rng.random_range(8..=20) {
            description.push(self.word(rng));
        }
        let pick = |rng: &mut StdRng, from: &[String]| -> Vec<String> {
            let mut picked: Vec<String> = (0..rng.random_range(1..=3))
                .map(|_| from[rng.random_range(0..from.len())].clone())
                .collect();
            picked.sort();
            picked.dedup();
            picked
        };
        let mut agent = agent(&format!("a{i:06}.bench"), &description.join(" "), &[], &[]);
        agent.tags = crate::record::intern::intern_all(&pick(rng, &self.tags));
        agent.capabilities = crate::record::intern::intern_all(&pick(rng, &self.capabilities));
        agent
    }

    fn zone(&self, agents: usize) -> crate::zone::ZoneSnapshot {
        let mut rng = StdRng::seed_from_u64(agents as u64);
        let agents = (0..agents).map(|i| self.agent(&mut rng, i)).collect();
        zone("bench", 1, agents)
    }

    /// 1 to 3 words; a third of the queries hold "agent", which every document has.
    fn query(&self, rng: &mut StdRng) -> String {
        let mut words: Vec<&str> = (0..rng.random_range(1..=3))
            .map(|_| self.word(rng))
            .collect();
        if rng.random_range(0..3) == 0 {
            words[0] = "agent";
        }
        words.join(" ")
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

#[test]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
fn bench_100k_agents() {
    const AGENTS: usize = 100_000;
    const QUERIES: usize = 2_000;
    let generator = Generator::new(1);
    let started = Instant::now();
    let snapshot = generator.zone(AGENTS);
    let generated = started.elapsed();

    let started = Instant::now();
    let index = ZoneIndex::build(&snapshot);
    let built = started.elapsed();
    println!(
        "{AGENTS} agents: snapshot generated in {generated:?}, index built in {built:?} ({} terms)",
        index.term_count()
    );

    let mut rng = StdRng::seed_from_u64(2);
    let queries: Vec<_> = (0..QUERIES)
        .map(|_| query(&generator.query(&mut rng)).analyze())
        .collect();
    let mut mixed = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
    let mut matched = 0;
    for q in &queries {
        let started = Instant::now();
        let result = index.search(q);
        mixed.record(micros(started.elapsed())).expect("in range");
        matched += result.matches;
    }
    let mut everywhere = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
    let all = query("agent").analyze();
    for _ in 0..200 {
        let started = Instant::now();
        let result = index.search(&all);
        everywhere
            .record(micros(started.elapsed()))
            .expect("in range");
        assert_eq!(result.matches, AGENTS as u64);
    }
    for (what, histogram) in [
        ("mixed 1-3 word queries", &mixed),
        ("\"agent\" (in every agent)", &everywhere),
    ] {
        println!(
            "{what}: {} queries, p50 {} µs, p99 {} µs, max {} µs",
            histogram.len(),
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
            histogram.max(),
        );
    }
    println!("mean matches per mixed query: {}", matched / QUERIES as u64);

    // Following changes one at a time (a third new agents, a third replaced, a third
    // deregistered), up to the overlay's bound, as a node derives serial after serial.
    let bound = index.overlay_bound();
    let mut current = index;
    let mut derive = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
    let mut rng = StdRng::seed_from_u64(3);
    let mut next_id = AGENTS;
    for serial in 2.. {
        if current.overlay_size() > bound {
            break;
        }
        let (name, agent) = match serial % 3 {
            0 => {
                let agent = generator.agent(&mut rng, next_id);
                next_id += 1;
                (agent.name.clone(), Some(Arc::new(agent)))
            }
            1 => {
                let mut agent = generator.agent(&mut rng, 0);
                agent.name = name(&format!("a{:06}.bench", rng.random_range(0..AGENTS)));
                (agent.name.clone(), Some(Arc::new(agent)))
            }
            _ => (
                name(&format!("a{:06}.bench", rng.random_range(0..AGENTS))),
                None,
            ),
        };
        let step = Step {
            serial,
            changed: vec![name].into(),
        };
        let started = Instant::now();
        current = current.follow(std::slice::from_ref(&step), |_| agent.clone());
        derive.record(micros(started.elapsed())).expect("in range");
    }
    let started = Instant::now();
    let compacted = current.compacted();
    let compaction = started.elapsed();
    println!(
        "{} changes followed one at a time: p50 {} µs, p99 {} µs, max {} µs per change; \
         overlay {} (bound {bound}); compaction {compaction:?}",
        derive.len(),
        derive.value_at_quantile(0.5),
        derive.value_at_quantile(0.99),
        derive.max(),
        current.overlay_size(),
    );
    for (what, index) in [
        ("with the overlay full", &current),
        ("compacted", &compacted),
    ] {
        let mut latency = hdrhistogram::Histogram::<u64>::new(3).expect("a histogram");
        for q in &queries {
            let started = Instant::now();
            let result = index.search(q);
            latency.record(micros(started.elapsed())).expect("in range");
            std::hint::black_box(result);
        }
        println!(
            "mixed queries {what}: p50 {} µs, p99 {} µs, max {} µs",
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
            latency.max(),
        );
    }
}
