//! A snapshot derived change by change ([`ZoneSnapshot::apply`]) must be the snapshot built
//! from scratch ([`ZoneSnapshot::build`]) from the same records, and must refuse exactly the
//! changes the build refuses. A fixed-seed pseudo-random sequence of registrations,
//! deregistrations, alias and delegation changes drives both and compares them after every
//! batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::record::{HealthSettings, LiveAgent, LiveRecord, RecordChange, RecordKind};

const ORIGIN: &str = "z.test";

fn name(text: &str) -> Name {
    Name::parse(text).expect("valid name")
}

fn header(serial: u32) -> ZoneHeader {
    ZoneHeader {
        origin: name(ORIGIN),
        serial,
        ttl: ZoneHeader::DEFAULT_TTL,
        negative_ttl: ZoneHeader::DEFAULT_NEGATIVE_TTL,
        refresh: ZoneHeader::DEFAULT_REFRESH,
        retry: ZoneHeader::DEFAULT_RETRY,
        expire: ZoneHeader::DEFAULT_EXPIRE,
        contact: String::new(),
        servers: Vec::new(),
        health: HealthSettings::DEFAULT,
    }
}

fn agent(full_name: &str, version: u64) -> LiveRecord {
    LiveRecord::Agent(LiveAgent {
        agent: Arc::new(Agent {
            name: name(full_name),
            description: String::new(),
            tags: Box::default(),
            capabilities: Box::default(),
            version: version.to_string().into(),
            ttl: None,
            timeout_ms: record::DEFAULT_TIMEOUT_MS,
            max_retries: record::DEFAULT_MAX_RETRIES,
            endpoints: Vec::new(),
            input_schema: record::default_input_schema(),
            output_schema: None,
            metadata: None,
            health_checks: true,
        }),
        from_file: false,
        live: Default::default(),
    })
}

fn alias(from: &str, to: &str) -> LiveRecord {
    LiveRecord::Alias(Arc::new(Alias {
        name: name(from),
        target: name(to),
        ttl: None,
    }))
}

fn delegation(zone: &str) -> LiveRecord {
    LiveRecord::Delegation(Arc::new(Delegation {
        zone: name(zone),
        servers: Vec::new(),
        ttl: Some(30),
    }))
}

/// The records of a zone as the authority holds them: one per kind and name.
type Records = BTreeMap<(RecordKind, Name), LiveRecord>;

fn build(records: &Records, serial: u32) -> Result<ZoneSnapshot, Vec<StructureError>> {
    let mut input = ZoneRecords::default();
    for record in records.values() {
        match record {
            LiveRecord::Agent(live) => input.agents.push(Arc::clone(&live.agent)),
            LiveRecord::Alias(alias) => input.aliases.push(Arc::clone(alias)),
            LiveRecord::Delegation(d) => input.delegations.push(Arc::clone(d)),
        }
    }
    ZoneSnapshot::build(header(serial), input)
}

fn apply_to(records: &mut Records, change: &RecordChange) {
    match change {
        RecordChange::Put(record) => {
            records.insert((record.kind(), record.name().clone()), record.clone());
        }
        RecordChange::Delete { kind, name } => {
            records.remove(&(*kind, name.clone()));
        }
    }
}

/// Every observable of the two snapshots is the same, for every name in `probes`.
fn assert_same(derived: &ZoneSnapshot, built: &ZoneSnapshot, probes: &[Name], step: usize) {
    let context = format!("step {step}");
    assert_eq!(derived.serial(), built.serial(), "{context}");
    assert_eq!(derived.agent_count(), built.agent_count(), "{context}");
    assert_eq!(derived.alias_count(), built.alias_count(), "{context}");
    assert_eq!(derived.agent_names(), built.agent_names(), "{context}");
    assert_eq!(derived.below, built.below, "{context}: names below");
    assert_eq!(
        derived.delegation_order, built.delegation_order,
        "{context}"
    );
    let delegations = |zone: &ZoneSnapshot| -> Vec<Delegation> {
        zone.delegations().map(|d| Delegation::clone(d)).collect()
    };
    assert_eq!(delegations(derived), delegations(built), "{context}");
    let aliases = |zone: &ZoneSnapshot| -> Vec<Alias> {
        zone.aliases()
            .into_iter()
            .map(|a| Alias::clone(a))
            .collect()
    };
    assert_eq!(aliases(derived), aliases(built), "{context}");
    assert_eq!(derived.entries.len(), built.entries.len(), "{context}");
    for name in probes {
        let text = name.as_str();
        assert_eq!(
            derived.agent(text).map(|a| Agent::clone(a)),
            built.agent(text).map(|a| Agent::clone(a)),
            "{context}: agent {name}"
        );
        assert_eq!(
            derived.is_empty_non_terminal(text),
            built.is_empty_non_terminal(text),
            "{context}: ENT {name}"
        );
        assert_eq!(
            derived.delegation_covering(text).map(|d| d.zone.clone()),
            built.delegation_covering(text).map(|d| d.zone.clone()),
            "{context}: cut above {name}"
        );
        if name.is_at_or_below(built.origin()) {
            assert_eq!(
                format!("{:?}", derived.lookup(name)),
                format!("{:?}", built.lookup(name)),
                "{context}: lookup {name}"
            );
        }
    }
    for limit in [1, 3, 1000] {
        let mut after: Option<Name> = None;
        loop {
            let page = derived.agents_page(after.as_ref().map(Name::as_str), limit);
            assert_eq!(
                page,
                built.agents_page(after.as_ref().map(Name::as_str), limit),
                "{context}: page after {after:?}"
            );
            match page.last() {
                Some(last) => after = Some(last.clone()),
                None => break,
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), so the sequence is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &'a [String]) -> &'a str {
        &from[self.below(from.len())]
    }
}

#[test]
fn a_derived_snapshot_is_the_built_one_through_any_sequence_of_changes() {
    // Names at several depths, so that empty non-terminals come and go; delegations at
    // names that also hold agents or have agents below, so that some batches are refused.
    let mut agent_names: Vec<String> = (0..24).map(|i| format!("a{i}.{ORIGIN}")).collect();
    for group in 0..4 {
        for i in 0..4 {
            agent_names.push(format!("x{i}.g{group}.{ORIGIN}"));
        }
        agent_names.push(format!("g{group}.{ORIGIN}"));
        agent_names.push(format!("deep.y.g{group}.{ORIGIN}"));
    }
    agent_names.push(ORIGIN.to_string());
    let alias_names: Vec<String> = (0..6)
        .map(|i| format!("al{i}.{ORIGIN}"))
        .chain(["al.g1.z.test".to_string(), "a1.z.test".to_string()])
        .collect();
    let delegation_names: Vec<String> = [
        "d0.z.test",
        "d1.z.test",
        "sub.d0.z.test",
        "g2.z.test",
        "y.g3.z.test",
        "x1.g0.z.test",
        "z.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let outside = ["a0.elsewhere".to_string(), "test".to_string()];
    let targets: Vec<String> = agent_names
        .iter()
        .chain(&alias_names)
        .cloned()
        .chain(["missing.z.test".to_string(), "far.away".to_string()])
        .collect();
    let mut probes: Vec<Name> = targets
        .iter()
        .chain(&delegation_names)
        .map(|n| name(n))
        .collect();
    probes.extend(
        [
            "y.g0.z.test",
            "y.g3.z.test",
            "q.sub.d0.z.test",
            "under.d1.z.test",
        ]
        .map(name),
    );

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut records = Records::new();
    let mut serial = 1;
    let mut snapshot = build(&records, serial).expect("an empty zone builds");
    let (mut accepted, mut refused) = (0, 0);
    for step in 0..3000 {
        let batch: Vec<RecordChange> = (0..1 + rng.below(4))
            .map(|_| match rng.below(100) {
                0..45 => RecordChange::Put(agent(rng.pick(&agent_names), rng.next() % 4)),
                45..70 => RecordChange::Delete {
                    kind: RecordKind::Agent,
                    name: name(rng.pick(&agent_names)),
                },
                70..78 => {
                    let from = rng.pick(&alias_names).to_string();
                    RecordChange::Put(alias(&from, rng.pick(&targets)))
                }
                78..86 => RecordChange::Delete {
                    kind: RecordKind::Alias,
                    name: name(rng.pick(&alias_names)),
                },
                86..91 => RecordChange::Put(delegation(rng.pick(&delegation_names))),
                91..98 => RecordChange::Delete {
                    kind: RecordKind::Delegation,
                    name: name(rng.pick(&delegation_names)),
                },
                _ => RecordChange::Put(agent(rng.pick(&outside), 0)),
            })
            .collect();
        let mut next_records = records.clone();
        for change in &batch {
            apply_to(&mut next_records, change);
        }
        let built = build(&next_records, serial + 1);
        let derived = snapshot.apply(header(serial + 1), &batch);
        match (derived, built) {
            (Ok(derived), Ok(built)) => {
                assert_same(&derived, &built, &probes, step);
                snapshot = derived;
                records = next_records;
                serial += 1;
                accepted += 1;
            }
            (Err(_), Err(_)) => refused += 1,
            (derived, built) => panic!(
                "step {step}: derived {:?} but built {:?} for {batch:?}",
                derived.map(|_| "a snapshot"),
                built.map(|_| "a snapshot")
            ),
        }
    }
    // The sequence exercises both outcomes, and the zone is not trivially empty at the end.
    assert!(accepted > 1000 && refused > 100, "{accepted} {refused}");
    assert!(snapshot.agent_count() > 10, "{}", snapshot.agent_count());
}

#[test]
fn a_change_that_breaks_a_rule_is_refused_with_the_rule() {
    let mut records = Records::new();
    for record in [
        agent("a.g.z.test", 0),
        agent("b.z.test", 0),
        alias("al.z.test", "b.z.test"),
        delegation("d.z.test"),
    ] {
        records.insert((record.kind(), record.name().clone()), record);
    }
    let zone = build(&records, 1).expect("a valid zone");
    let refused = |changes: Vec<RecordChange>| -> Vec<ZoneError> {
        zone.apply(header(2), &changes)
            .expect_err("the change breaks a rule")
    };
    // A delegation over an existing agent.
    assert_eq!(
        refused(vec![RecordChange::Put(delegation("g.z.test"))]),
        vec![ZoneError::Occluded {
            name: name("a.g.z.test"),
            delegation: name("g.z.test"),
        }]
    );
    // An agent below a delegation.
    assert_eq!(
        refused(vec![RecordChange::Put(agent("x.d.z.test", 0))]),
        vec![ZoneError::Occluded {
            name: name("x.d.z.test"),
            delegation: name("d.z.test"),
        }]
    );
    // An agent where an alias is.
    assert_eq!(
        refused(vec![RecordChange::Put(agent("al.z.test", 0))]),
        vec![ZoneError::Duplicate {
            name: name("al.z.test"),
            first_kind: "an agent",
        }]
    );
    // Outside the origin.
    assert_eq!(
        refused(vec![RecordChange::Put(agent("b.elsewhere", 0))]),
        vec![ZoneError::OutsideOrigin {
            name: name("b.elsewhere"),
            origin: name(ORIGIN),
        }]
    );
    // An alias closing a loop through an alias the change does not touch.
    let error = refused(vec![
        RecordChange::Delete {
            kind: RecordKind::Agent,
            name: name("b.z.test"),
        },
        RecordChange::Put(alias("b.z.test", "al.z.test")),
    ]);
    assert!(
        matches!(error.as_slice(), [ZoneError::AliasLoop { chain }] if chain.len() == 3),
        "{error:?}"
    );
    // A chain made too long by an alias put at the end of an existing one.
    let mut chained = zone.clone();
    for i in 0..ALIAS_CHAIN_MAX {
        chained = chained
            .apply(
                header(2),
                &[RecordChange::Put(alias(
                    &format!("c{i}.z.test"),
                    &format!("c{}.z.test", i + 1),
                ))],
            )
            .expect("within the limit");
    }
    let error = chained
        .apply(
            header(3),
            &[RecordChange::Put(alias(
                &format!("c{ALIAS_CHAIN_MAX}.z.test"),
                "c-end.z.test",
            ))],
        )
        .expect_err("one alias too many");
    assert!(
        matches!(error.as_slice(), [ZoneError::AliasChainTooLong { name }] if *name == Name::parse("c0.z.test").unwrap()),
        "{error:?}"
    );
    // The same changes undone in one batch are no change at all.
    let same = zone
        .apply(
            header(2),
            &[
                RecordChange::Put(delegation("g.z.test")),
                RecordChange::Delete {
                    kind: RecordKind::Delegation,
                    name: name("g.z.test"),
                },
            ],
        )
        .expect("nothing changed");
    assert_eq!(same.agent_names(), zone.agent_names());
    // Another origin is not a change of this zone.
    let mut moved = header(2);
    moved.origin = name("other.test");
    assert!(matches!(
        zone.apply(moved, &[]).expect_err("another zone").as_slice(),
        [ZoneError::OriginChanged { .. }]
    ));
}
