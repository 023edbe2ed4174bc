//! The integration suite spread over a 3-node cluster
//! (`PRESENCE_TEST_CLUSTER=3`, `tests/spread.sh`): a test server becomes
//! the REST node of a cluster whose other two nodes take its visitor and
//! agent sockets.

use std::net::SocketAddr;

use presence_server::config::{ClusterMode, Config};

use super::cluster::{join, wait_for_nodes, RedisServer, TEST_LEASE_MS};
use super::TestServer;

/// Whether the suite runs spread over a cluster (`PRESENCE_TEST_CLUSTER=3`)
/// and `config` is a single-node one (cluster tests build their own).
pub fn spread_requested(config: &Config) -> bool {
    config.cluster.mode == ClusterMode::Single
        && std::env::var("PRESENCE_TEST_CLUSTER").is_ok_and(|v| v == "3")
}

/// The two other nodes of a test server spread over a 3-node cluster:
/// visitor sockets connect to one, agent sockets to the other, and REST
/// calls to the test server itself.
pub struct Spread {
    pub redis: RedisServer,
    visitor_node: Option<presence_server::RunningServer>,
    agent_node: Option<presence_server::RunningServer>,
}

impl Spread {
    /// Starts Redis and the two other nodes with `config` (their own data
    /// directories under `dir`), and makes `config` the third node.
    pub async fn start(
        config: &mut Config,
        dir: &std::path::Path,
        clock: presence_server::clock::SharedClock,
    ) -> Self {
        let redis = RedisServer::start();
        join(config, &redis.url(), TEST_LEASE_MS);
        let mut nodes = Vec::new();
        for name in ["visitor-node", "agent-node"] {
            let mut node = config.clone();
            node.server.data_dir = dir.join(name);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            nodes.push(
                presence_server::run_with_clock(node, listener, clock.clone())
                    .await
                    .expect("node starts"),
            );
        }
        let agent_node = nodes.pop();
        let visitor_node = nodes.pop();
        Self {
            redis,
            visitor_node,
            agent_node,
        }
    }

    pub fn addr_for(&self, path: &str) -> Option<SocketAddr> {
        let node = if path.starts_with("/visitor") {
            self.visitor_node.as_ref()
        } else if path.starts_with("/agent") {
            self.agent_node.as_ref()
        } else {
            None
        };
        node.map(|n| n.local_addr())
    }

    /// Waits until the REST node counts all three.
    pub async fn wait_until_joined(&self, rest: &TestServer) {
        wait_for_nodes(rest, 3).await;
    }

    pub async fn shutdown(mut self) {
        for node in [self.visitor_node.take(), self.agent_node.take()]
            .into_iter()
            .flatten()
        {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}
