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
            return 0;
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

    /// The WebSocket URL of a path on the server.
    pub fn socket_url(&self, path: &str) -> String {
        let base = self
            .server
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        format!("{}{path}", base.trim_end_matches('/'))
    }
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
            options.socket_url("/visitor/ws"),
            "wss://p.example/visitor/ws"
        );
        let idle = Options::parse_from(["loadtest"]);
        assert_eq!(idle.agent_users(), 0);
        assert_eq!(idle.socket_url("/agent/ws"), "ws://127.0.0.1:8080/agent/ws");
    }
}
