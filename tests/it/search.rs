//! Federated search over real gRPC: a root, `acme`, and its children `finance.acme` and
//! `research.acme` on their own nodes, plus `slow.acme` delegated to a server that accepts
//! connections and never answers. Searches go to a resolver node that serves no zone.

use std::time::{Duration, Instant};

use aop::grpc::{RegistryClient, pb};

use crate::support::{AgentSpec, DelegationSpec, Federation, FederationBuilder, ZoneSpec};

async fn federation(with_slow_zone: bool) -> Federation {
    let mut acme = ZoneSpec::new("acme")
        .agent(
            AgentSpec::new("concierge")
                .description(
                    "Front desk: answers questions about Acme and routes requests to the right team.",
                )
                .tags(&["support"])
                .capabilities(&["route", "answer"]),
        )
        .agent(
            AgentSpec::new("translator")
                .description("Translates documents between English, French and German.")
                .tags(&["language"])
                .capabilities(&["translate"]),
        );
    if with_slow_zone {
        acme = acme.delegation(DelegationSpec::to_black_hole("slow"));
    }
    let finance = ZoneSpec::new("finance.acme")
        .agent(
            AgentSpec::new("forecaster")
                .description("Forecasts revenue and cash flow from quarterly figures.")
                .tags(&["finance", "planning"])
                .capabilities(&["forecast"]),
        )
        .agent(
            AgentSpec::new("auditor")
                .description("Checks ledgers and expense reports against company policy.")
                .tags(&["finance", "compliance"])
                .capabilities(&["audit", "summarize"]),
        )
        .agent(
            AgentSpec::new("analyst")
                .description("Financial analyst: ratios, filings and market comparisons.")
                .tags(&["finance", "analysis"])
                .capabilities(&["summarize", "compare"]),
        );
    let research = ZoneSpec::new("research.acme")
        .agent(
            AgentSpec::new("librarian")
                .description("Finds and summarizes scientific papers on a topic.")
                .tags(&["research", "papers"])
                .capabilities(&["summarize", "search"]),
        )
        .agent(
            AgentSpec::new("weather")
                .description("Weather forecasting for field trials: rain, temperature and wind.")
                .tags(&["research", "climate"])
                .capabilities(&["forecast"]),
        );
    FederationBuilder::new()
        .zone(acme)
        .zone(finance)
        .zone(research)
        .start()
        .await
}

fn request(query: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        query: query.into(),
        recursive: true,
        ..pb::SearchRequest::default()
    }
}

async fn search(client: &mut RegistryClient, request: pb::SearchRequest) -> pb::SearchResponse {
    client
        .search(request)
        .await
        .expect("search answers")
        .into_inner()
}

fn names(response: &pb::SearchResponse) -> Vec<&str> {
    response
        .hits
        .iter()
        .map(|hit| hit.agent.as_ref().unwrap().name.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_agents_across_three_zones() {
    let fed = federation(false).await;
    let mut client = fed.client().await;

    // Words of descriptions, stemmed: "forecasting" meets "forecasts" and "forecast".
    let found = search(&mut client, request("a forecasting agent in finance")).await;
    assert!(!found.partial, "{:?}", found.missed);
    let hits = names(&found);
    assert_eq!(hits[0], "forecaster.finance.acme", "{hits:?}");
    assert!(hits.contains(&"weather.research.acme"), "{hits:?}");
    assert!(
        hits.iter().position(|h| *h == "weather.research.acme")
            > hits.iter().position(|h| *h == "forecaster.finance.acme")
    );
    let zones: Vec<&str> = found.searched.iter().map(|s| s.zone.as_str()).collect();
    for zone in [".", "acme", "finance.acme", "research.acme"] {
        assert!(zones.contains(&zone), "{zone} not searched: {zones:?}");
    }

    // Words spread over three zones.
    let found = search(&mut client, request("summarize papers")).await;
    let hits = names(&found);
    assert_eq!(hits[0], "librarian.research.acme", "{hits:?}");
    for agent in ["auditor.finance.acme", "analyst.finance.acme"] {
        assert!(hits.contains(&agent), "{agent} missing: {hits:?}");
    }
    let found = search(&mut client, request("translate French documents")).await;
    assert_eq!(names(&found)[0], "translator.acme");

    // By tag, and by capability, across zones; filters combine with words.
    let by_tag = search(
        &mut client,
        pb::SearchRequest {
            tags: vec!["Finance".into()],
            ..request("")
        },
    )
    .await;
    assert_eq!(
        names(&by_tag),
        [
            "analyst.finance.acme",
            "auditor.finance.acme",
            "forecaster.finance.acme"
        ]
    );
    let by_capability = search(
        &mut client,
        pb::SearchRequest {
            capabilities: vec!["summarize".into()],
            ..request("")
        },
    )
    .await;
    assert_eq!(by_capability.total_matches, 3);
    assert_eq!(
        names(&by_capability),
        [
            "analyst.finance.acme",
            "auditor.finance.acme",
            "librarian.research.acme"
        ]
    );
    let both = search(
        &mut client,
        pb::SearchRequest {
            capabilities: vec!["forecast".into()],
            ..request("rain")
        },
    )
    .await;
    assert_eq!(names(&both), ["weather.research.acme"]);

    // A scope: only finance.acme, asked of a node that does not serve it.
    let scoped = search(
        &mut client,
        pb::SearchRequest {
            zone: "finance.acme".into(),
            ..request("summarize")
        },
    )
    .await;
    assert_eq!(names(&scoped).len(), 2);
    assert!(names(&scoped).iter().all(|n| n.ends_with(".finance.acme")));

    // A limit.
    let limited = search(
        &mut client,
        pb::SearchRequest {
            limit: 1,
            ..request("summarize")
        },
    )
    .await;
    assert_eq!(limited.hits.len(), 1);
    assert_eq!(limited.total_matches, 3);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_scores_equal_one_index_over_all_zones() {
    // The same hit scores the same whether found from the root or within its own zone
    // alone only when the statistics are global; from the root they must be the union's.
    let fed = federation(false).await;
    let mut client = fed.client().await;
    let whole = search(&mut client, request("summarize")).await;
    let stats = whole.stats.clone().unwrap();
    assert_eq!(stats.doc_count, 7, "every agent of the four zones counts");
    assert_eq!(stats.doc_freqs, [3]);
    // Sorted by score, then name.
    let scores: Vec<f64> = whole.hits.iter().map(|h| h.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_searches_are_refused_naming_the_limit() {
    let fed = federation(false).await;
    let mut client = fed.client().await;
    let status = client
        .search(pb::SearchRequest {
            limit: 1001,
            ..request("x")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("1000"), "{}", status.message());
    let status = client
        .search(request(&"word ".repeat(300)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("1024"), "{}", status.message());
    let status = client
        .search(pb::SearchRequest {
            zone: "Bad_Label.acme".into(),
            ..request("x")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // The node keeps serving.
    assert!(
        !search(&mut client, request("forecast"))
            .await
            .hits
            .is_empty()
    );
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_child_zone_makes_results_partial_not_late() {
    let fed = federation(true).await;
    let mut client = fed.client().await;
    for budget in [Duration::from_millis(400), Duration::from_millis(1500)] {
        let mut ask = tonic::Request::new(request("forecast"));
        ask.set_timeout(budget);
        let started = Instant::now();
        let found = client
            .search(ask)
            .await
            .expect("a partial answer, not an error")
            .into_inner();
        let took = started.elapsed();
        assert!(took < budget, "answered after {took:?}, budget {budget:?}");
        assert!(found.partial);
        assert_eq!(found.missed.len(), 1, "{:?}", found.missed);
        assert_eq!(found.missed[0].zone, "slow.acme", "{:?}", found.missed);
        let reason = found.missed[0].reason.to_lowercase();
        assert!(
            ["in time", "deadline", "timeout"]
                .iter()
                .any(|w| reason.contains(w)),
            "{reason}"
        );
        // The zones that answered are all there.
        let hits = names(&found);
        assert_eq!(hits[0], "forecaster.finance.acme", "{hits:?}");
        assert!(hits.contains(&"weather.research.acme"));
    }
    fed.shutdown().await;
}

/// A scope that names nothing (a mistyped zone) is NOT_FOUND naming it, not an empty answer
/// from the enclosing zone; a name that exists inside a zone is a valid scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_that_names_nothing_is_not_found() {
    let fed = federation(false).await;
    let mut client = fed.client().await;
    // "nosuch.acme" lies in acme (served elsewhere), "nosuch.finance.acme" one level lower.
    for scope in ["nosuch.acme", "nosuch.finance.acme"] {
        let status = client
            .search(pb::SearchRequest {
                zone: scope.into(),
                ..request("forecasting")
            })
            .await
            .expect_err(scope);
        assert_eq!(status.code(), tonic::Code::NotFound, "{scope}: {status:?}");
        assert!(
            status.message().contains(scope),
            "{scope}: {}",
            status.message()
        );
    }
    // An agent's own name is a scope holding one agent.
    let found = search(
        &mut client,
        pb::SearchRequest {
            zone: "forecaster.finance.acme".into(),
            ..request("forecasting")
        },
    )
    .await;
    assert_eq!(names(&found), ["forecaster.finance.acme"]);
    fed.shutdown().await;
}
