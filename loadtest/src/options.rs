//! Command-line options of a load-test run.

use std::net::IpAddr;

use clap::Parser;

/// Drive presence-server with simulated visitors and agents.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Options {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Base URLs of a cluster's nodes (instead of `--server`). Visitor
    /// `lt-<shard>-<n>` lives on node `(shard + n) % nodes` (its home
    /// node); each agent request goes to a random node other than the
    /// visitor's home, so every invoke crosses nodes.
    #[arg(long, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Send each agent request to its visitor's home node instead (the
    /// same-node baseline).
    #[arg(long)]
    pub same_node: bool,
    /// A visitor whose socket is closed or fails reconnects, as the
    /// visitor script does: to the next node in the list (or through the
    /// same balancer URL), after the visitor script's backoff: full
    /// jitter from 500 ms doubling to 20 s, never longer than the time
    /// already offline.
    /// Closes are then counted as drops, not errors, and only visitors
    /// still offline at the end count against `--check`.
    #[arg(long)]
    pub reconnect: bool,
    /// Write this process's live counts here as JSON every 200 ms
    /// (`connected`, `visitors`, `connects`, `drops`, ...), for scripts
    /// that wait on them.
    #[arg(long)]
    pub status_file: Option<std::path::PathBuf>,
    /// Group the visitors and agents belong to.
    #[arg(long, default_value_t = 72)]
    pub group: u64,
    /// Visitors this process simulates (each holds one socket).
    #[arg(long, default_value_t = 100)]
    pub visitors: usize,
    /// This process's shard: its visitors are `lt-<shard>-<n>`.
    #[arg(long, default_value_t = 0)]
    pub shard: usize,
    /// Agents pick visitors from shards 0..target_shards of
    /// `target_per_shard` each (bench: visitors live in other processes).
    /// Without it they pick from this process's own online visitors.
    #[arg(long)]
    pub target_shards: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub target_per_shard: usize,
    /// Users (visitors and agents) started per second.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,
    /// Seconds to run once every user has started.
    #[arg(long, default_value_t = 30)]
    pub duration_secs: usize,
    /// Total invokes per second across all agents (0: no agents).
    #[arg(long, default_value_t = 0.0)]
    pub invoke_rate: f64,
    /// Agent users sharing the rate (default: one per 250 invokes/s).
    #[arg(long)]
    pub agents: Option<usize>,
    /// Agents use the agent socket instead of REST.
    #[arg(long)]
    pub agent_socket: bool,
    /// With `--invoke-rate 0`: this many agents that only open an agent
    /// socket, authenticate and hold it (answering pings), as a parked
    /// console does.
    #[arg(long, default_value_t = 0)]
    pub idle_agent_sockets: usize,
    /// Each visitor sends one presence update of this many bytes of page
    /// data whenever the process gets SIGUSR1 (0: never). Over the server's
    /// 4 KiB presence cap it is refused with an error frame and the socket
    /// stays; the bytes still pass every buffer of the socket.
    #[arg(long, default_value_t = 0)]
    pub large_update_bytes: usize,
    /// Agent credentials: a password ...
    #[arg(long, default_value = "fred.demo")]
    pub username: String,
    #[arg(long, default_value = "fred-demo-pass")]
    pub password: String,
    /// ... or a login key signed with the group's api_key for this partner
    /// user id (used instead of the password when given).
    #[arg(long)]
    pub api_key: Option<String>,
    #[arg(long, default_value = "fred")]
    pub partner_user_id: String,
    /// Lifetime of agent tokens; agents get a new one when it runs out.
    #[arg(long, default_value_t = 3600)]
    pub token_secs: u64,
    /// The server's invoke deadline (`presence.invoke_timeout_ms`): an
    /// answer later than this plus a second counts as late.
    #[arg(long, default_value_t = 10_000)]
    pub invoke_deadline_ms: u64,
    /// Milliseconds a visitor takes before answering an invoke.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// Each visitor sends a presence update this often (seconds, 0: never).
    #[arg(long, default_value_t = 20)]
    pub presence_every_secs: u64,
    /// Chance per second that a visitor navigates (closes and reconnects).
    #[arg(long, default_value_t = 0.0)]
    pub navigate_prob: f64,
    /// Local addresses visitor sockets connect from, round robin
    /// (127.0.0.2,127.0.0.3,...), so one address's ~28k ports never limit a run.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    pub source_addrs: Vec<IpAddr>,
    /// Exit 1 if any request failed or any invoke went unanswered.
    #[arg(long)]
    pub check: bool,
    /// Also print goose's own report.
    #[arg(long)]
    pub goose_report: bool,
}

impl Options {
    pub fn agent_users(&self) -> usize {
        if self.invoke_rate <= 0.0 {
            return self.idle_agent_sockets;
        }
        self.agents
            .unwrap_or_else(|| (self.invoke_rate / 250.0).ceil() as usize)
            .max(1)
    }

    /// Seconds between one agent's invokes.
    pub fn agent_period(&self) -> std::time::Duration {
        let per_agent = self.invoke_rate / self.agent_users().max(1) as f64;
        std::time::Duration::from_secs_f64(1.0 / per_agent.max(0.001))
    }

    /// The nodes' base URLs: `--servers`, or the one `--server`.
    pub fn nodes(&self) -> Vec<&str> {
        if self.servers.is_empty() {
            vec![self.server.as_str()]
        } else {
            self.servers.iter().map(String::as_str).collect()
        }
    }

    /// The index of the home node of visitor `lt-<shard>-<n>`.
    pub fn home_node(&self, shard: usize, n: usize) -> usize {
        (shard + n) % self.nodes().len()
    }

    /// The node an agent request about visitor `lt-<shard>-<n>` goes to:
    /// its home with `--same-node` (or with one node), otherwise a random
    /// other node.
    pub fn agent_node(&self, shard: usize, n: usize, rng: &mut impl rand::Rng) -> usize {
        let nodes = self.nodes().len();
        let home = self.home_node(shard, n);
        if self.same_node || nodes == 1 {
            return home;
        }
        (home + rng.random_range(1..nodes)) % nodes
    }
}

/// The WebSocket URL of a path on the node at `base`.
pub fn socket_url(base: &str, path: &str) -> String {
    let base = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The shard and number of a load-test visitor id `lt-<shard>-<n>`.
pub fn parse_visitor(id: &str) -> Option<(usize, usize)> {
    let rest = id.strip_prefix("lt-")?;
    let (shard, n) = rest.split_once('-')?;
    Some((shard.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_share_the_rate_and_urls_follow_the_scheme() {
        let options = Options::parse_from([
            "loadtest",
            "--invoke-rate",
            "2000",
            "--server",
            "https://p.example/",
        ]);
        assert_eq!(options.agent_users(), 8);
        assert_eq!(options.agent_period(), std::time::Duration::from_millis(4));
        assert_eq!(
            socket_url(&options.server, "/visitor/ws"),
            "wss://p.example/visitor/ws"
        );
        let idle = Options::parse_from(["loadtest"]);
        assert_eq!(idle.nodes(), vec!["http://127.0.0.1:8080"]);
        assert_eq!(idle.agent_users(), 0);
        assert_eq!(
            socket_url(idle.nodes()[0], "/agent/ws"),
            "ws://127.0.0.1:8080/agent/ws"
        );
    }

    #[test]
    fn visitors_spread_round_robin_and_agents_cross_nodes_unless_pinned() {
        let urls = "http://a:1,http://b:2,http://c:3";
        let cross = Options::parse_from(["loadtest", "--servers", urls]);
        assert_eq!(cross.nodes().len(), 3);
        let homes: Vec<usize> = (0..6).map(|n| cross.home_node(1, n)).collect();
        assert_eq!(homes, vec![1, 2, 0, 1, 2, 0]);
        let mut rng = rand::rng();
        for n in 0..300 {
            assert_ne!(cross.agent_node(1, n, &mut rng), cross.home_node(1, n));
        }
        let pinned = Options::parse_from(["loadtest", "--servers", urls, "--same-node"]);
        for n in 0..30 {
            assert_eq!(pinned.agent_node(0, n, &mut rng), pinned.home_node(0, n));
        }
        assert_eq!(parse_visitor("lt-3-41"), Some((3, 41)));
        assert_eq!(parse_visitor("v-3-41"), None);
        assert_eq!(parse_visitor("lt-3"), None);
    }
}
