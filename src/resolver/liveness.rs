//! Liveness as gossip knows it, an input to server choice beside SRTT: a server that the
//! node's membership group (`docs/protocol.md` 9.2) knows to be down is tried last, one
//! under suspicion after the rest, whatever its RTT says. Servers outside the group (other
//! operators' nodes) are ranked by SRTT alone.
//!
//! The resolver knows no gossip: the node hands it a [`ServerLiveness`] that reads the
//! member list.

use crate::record::ServerAddress;

/// What the group believes of the node serving gRPC at a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerHealth {
    /// A member known alive, or not a member at all: SRTT decides.
    AliveOrUnknown,
    /// A member a probe failed to reach; it may yet refute.
    Suspect,
    /// A member the group declared down.
    Down,
}

pub trait ServerLiveness: Send + Sync + 'static {
    fn health(&self, grpc_url: &str) -> ServerHealth;
}

/// `servers` (in SRTT order) with suspects after the rest and down members last; the order
/// within each rank is kept.
pub fn order_by_liveness(servers: &mut [ServerAddress], liveness: &dyn ServerLiveness) {
    servers.sort_by_cached_key(|server| liveness.health(&server.grpc));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Known(Vec<(&'static str, ServerHealth)>);

    impl ServerLiveness for Known {
        fn health(&self, url: &str) -> ServerHealth {
            self.0
                .iter()
                .find(|(known, _)| *known == url)
                .map_or(ServerHealth::AliveOrUnknown, |(_, health)| *health)
        }
    }

    #[test]
    fn down_members_go_last_and_the_rest_keep_their_order() {
        let server = |url: &str| ServerAddress::new(url, None).unwrap();
        let mut servers = vec![
            server("http://a:1"),
            server("http://b:1"),
            server("http://c:1"),
            server("http://d:1"),
        ];
        let liveness = Known(vec![
            ("http://a:1", ServerHealth::Down),
            ("http://b:1", ServerHealth::Suspect),
        ]);
        order_by_liveness(&mut servers, &liveness);
        let urls: Vec<&str> = servers.iter().map(|s| s.grpc.as_str()).collect();
        assert_eq!(
            urls,
            ["http://c:1", "http://d:1", "http://b:1", "http://a:1"]
        );
    }
}
