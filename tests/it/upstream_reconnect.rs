//! The resolver's connections to other nodes recover after a link comes back (issue 17's
//! second resolve failure): a connection left stuck behind a cut (TCP's retransmission
//! backoff, or a NAT that forgot it) is closed by the HTTP/2 keepalive, and a query that ran
//! out its whole timeout drops its pooled channel, so the next query connects afresh instead
//! of waiting on the dead connection again. A node behind a [`Link`] whose open connections
//! stall while new ones go through.

use std::time::Duration;

use aop::grpc::{ChannelPool, GrpcPeers};
use aop::name::Name;
use aop::peer::FailureKind;
use aop::record::ServerAddress;
use aop::resolver::Upstream;

use crate::support::{AgentSpec, Federation, FederationBuilder, ZoneSpec, eventually};

async fn federation() -> Federation {
    FederationBuilder::new()
        .zone(
            ZoneSpec::new("finance.acme")
                .agent(AgentSpec::new("analyst"))
                .through_links(),
        )
        .start()
        .await
}

fn analyst() -> Name {
    Name::parse("analyst.finance.acme").unwrap()
}

#[tokio::test]
async fn a_stalled_connection_is_closed_by_the_keepalive_and_the_next_query_reconnects() {
    let fed = federation().await;
    let link = fed.link("finance.acme", 0);
    let server = ServerAddress::new(&link.url(), None).unwrap();
    let peers = GrpcPeers::new(ChannelPool::new());
    peers
        .query(&server, &analyst(), Duration::from_secs(5))
        .await
        .expect("answered through the link");
    assert_eq!((link.accepted(), link.open()), (1, 1));

    // The link comes back with the connection stuck: nothing is asked meanwhile, and the
    // client's unanswered PING closes the connection on its own.
    link.stall();
    let took = eventually(
        Duration::from_secs(15),
        "the stalled connection closed by the client",
        || async { link.open() == 0 },
    )
    .await;
    assert!(took >= Duration::from_secs(1), "{took:?}");
    // The same pooled channel connects again at the next query, which is answered at once.
    assert!(peers.pool().holds(&server.grpc));
    peers
        .query(&server, &analyst(), Duration::from_secs(5))
        .await
        .expect("answered on a new connection");
    assert_eq!(link.accepted(), 2);
}

#[tokio::test]
async fn a_query_that_runs_out_its_timeout_drops_the_channel_and_the_next_one_reconnects() {
    let fed = federation().await;
    let link = fed.link("finance.acme", 0);
    let server = ServerAddress::new(&link.url(), None).unwrap();
    let peers = GrpcPeers::new(ChannelPool::new());
    peers
        .query(&server, &analyst(), Duration::from_secs(5))
        .await
        .expect("answered through the link");

    link.stall();
    let failure = peers
        .query(&server, &analyst(), Duration::from_millis(300))
        .await
        .expect_err("the stalled connection answers nothing");
    assert!(matches!(failure.kind, FailureKind::Timeout(_)), "{failure}");
    assert!(!peers.pool().holds(&server.grpc), "the channel was dropped");
    // Long before any keepalive would notice, the next query connects afresh.
    let answer = tokio::time::timeout(
        Duration::from_millis(900),
        peers.query(&server, &analyst(), Duration::from_secs(5)),
    )
    .await
    .expect("no wait on the stalled connection")
    .expect("answered on a new connection");
    assert_eq!(answer.name, analyst());
    assert_eq!(link.accepted(), 2);
}
