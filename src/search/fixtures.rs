//! Test agents and zones: a small, realistic federation of three zones.

use std::sync::Arc;

use crate::name::Name;
use crate::record::{self, Agent, ZoneHeader};
use crate::zone::{ZoneRecords, ZoneSnapshot};

pub fn name(text: &str) -> Name {
    Name::parse(text).expect("valid name")
}

pub fn agent(full_name: &str, description: &str, tags: &[&str], capabilities: &[&str]) -> Agent {
    Agent {
        name: name(full_name),
        description: description.to_string(),
        tags: record::intern::intern_all(tags),
        capabilities: record::intern::intern_all(capabilities),
        version: "".into(),
        ttl: None,
        timeout_ms: record::DEFAULT_TIMEOUT_MS,
        max_retries: record::DEFAULT_MAX_RETRIES,
        endpoints: Vec::new(),
        input_schema: record::default_input_schema(),
        output_schema: None,
        metadata: None,
        health_checks: true,
    }
}

pub fn zone(origin: &str, serial: u32, agents: Vec<Agent>) -> ZoneSnapshot {
    let header = ZoneHeader {
        origin: name(origin),
        serial,
        ttl: ZoneHeader::DEFAULT_TTL,
        negative_ttl: ZoneHeader::DEFAULT_NEGATIVE_TTL,
        refresh: ZoneHeader::DEFAULT_REFRESH,
        retry: ZoneHeader::DEFAULT_RETRY,
        expire: ZoneHeader::DEFAULT_EXPIRE,
        contact: String::new(),
        servers: Vec::new(),
        health: crate::record::HealthSettings::DEFAULT,
    };
    let records = ZoneRecords {
        agents: agents.into_iter().map(Arc::new).collect(),
        ..ZoneRecords::default()
    };
    ZoneSnapshot::build(header, records).expect("a valid zone")
}

/// Zones `acme`, `finance.acme` and `research.acme`, in that order.
pub fn federation() -> Vec<ZoneSnapshot> {
    vec![
        zone(
            "acme",
            1,
            vec![
                agent(
                    "helpdesk.acme",
                    "Answers employee questions about laptops, accounts and office equipment",
                    &["support", "IT"],
                    &["chat", "ticketing"],
                ),
                agent(
                    "translator.acme",
                    "Translates documents and messages between English, French and German",
                    &["language"],
                    &["translation"],
                ),
                agent(
                    "scheduler.acme",
                    "Schedules meetings and finds free time across calendars",
                    &["productivity"],
                    &["calendar"],
                ),
                agent(
                    "summarizer.acme",
                    "Summarizes long documents, reports and email threads into short summaries",
                    &["writing", "productivity"],
                    &["summarization"],
                ),
            ],
        ),
        zone(
            "finance.acme",
            7,
            vec![
                agent(
                    "forecaster.finance.acme",
                    "Forecasting agent for budgets, revenue and expenses of finance teams",
                    &["forecasting"],
                    &["forecast"],
                ),
                agent(
                    "analyst.finance.acme",
                    "Builds quarterly revenue and cash flow models from ledger data",
                    &["finance", "reporting"],
                    &["spreadsheet", "forecast_q1"],
                ),
                agent(
                    "auditor.finance.acme",
                    "Checks invoices and expense reports against company policy",
                    &["compliance", "finance"],
                    &["audit"],
                ),
                agent(
                    "payroll.finance.acme",
                    "Runs payroll, computes taxes and pays salaries every month",
                    &["hr", "finance"],
                    &["payments"],
                ),
                agent(
                    "fin-ops.finance.acme",
                    "Reconciles bank statements with the general ledger",
                    &["accounting"],
                    &["reconciliation"],
                ),
            ],
        ),
        zone(
            "research.acme",
            3,
            vec![
                agent(
                    "weather.research.acme",
                    "Forecasts the weather for the next ten days from satellite data",
                    &["forecasting", "climate"],
                    &["forecast"],
                ),
                agent(
                    "papers.research.acme",
                    "Finds research papers on a topic and writes a summary of each",
                    &["literature"],
                    &["summarization", "search"],
                ),
                agent(
                    "deep.lab.research.acme",
                    "Plans lab experiments and analyses their results",
                    &["science"],
                    &["analysis"],
                ),
            ],
        ),
    ]
}
