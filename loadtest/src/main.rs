//! Goose load test for presence-server: simulated visitors hold real
//! WebSockets and answer invokes; simulated agents invoke, look up and
//! signal them over REST (or over the agent socket) at a fixed total rate.
//!
//! goose records connect time and invoke service time per request
//! (milliseconds); the agent-side invoke round trip is also kept in an HDR
//! histogram in microseconds and printed at the end with the connection
//! setup rate and every error. `--check` makes any error or lost invoke a
//! non-zero exit, for the CI smoke run.
#![forbid(unsafe_code)]

mod agent;
mod backoff;
mod login_key;
mod options;
mod report;
mod visitor;

use std::sync::Arc;

use clap::Parser;
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;

use options::Options;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    match run(options).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs one load test; `Ok(false)` when `--check` found errors.
async fn run(options: Options) -> Result<bool, Box<dyn std::error::Error>> {
    if options.idle_agent_sockets > 0 && options.invoke_rate > 0.0 {
        return Err(
            "--idle-agent-sockets needs --invoke-rate 0 (idle agents do not invoke)".into(),
        );
    }
    // Every visitor holds a socket: use the whole open-file allowance.
    let limit = rlimit::increase_nofile_limit(u64::MAX)?;
    let needed = options.visitors as u64 + 256;
    if needed > limit {
        return Err(format!(
            "{} visitors need about {needed} open files but this process may hold {limit}; \
             split them over several processes with --shard/--shards (loadtest/bench.sh does)",
            options.visitors
        )
        .into());
    }
    let options = Arc::new(options);
    let stats = Arc::new(report::Stats::default());
    if let Some(path) = options.status_file.clone() {
        stats.clone().write_status_forever(options.clone(), path);
    }
    visitor::configure(options.clone(), stats.clone());
    if options.large_update_bytes > 0 {
        let mut signals =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                visitor::ask_for_large_updates();
            }
        });
    }
    agent::configure(options.clone(), stats.clone());

    let agents = options.agent_users();
    let users = options.visitors + agents;
    if users == 0 {
        return Err("nothing to do: --visitors and --invoke-rate are both 0".into());
    }
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .set_client_builder_without_cookies(
            GooseClientBuilder::new()
                .without_cookies()
                .timeout(std::time::Duration::from_secs(30)),
        )?
        .set_default(GooseDefault::Host, options.nodes()[0])?
        .set_default(GooseDefault::Users, users)?
        .set_default(
            GooseDefault::IncreaseRate,
            options.ramp_rate.to_string().as_str(),
        )?
        .set_default(GooseDefault::RunTime, options.duration_secs)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoAutoStart, false)?
        .set_default(GooseDefault::NoPrintMetrics, !options.goose_report)?
        .set_default(GooseDefault::Quiet, 1)?;
    if options.visitors > 0 {
        *attack = attack.register_scenario(visitor::scenario(options.visitors)?);
    }
    if agents > 0 {
        *attack = attack.register_scenario(agent::scenario(agents, &options)?);
    }
    attack.execute().await?;
    let clean = stats.print(&options);
    if let Some(path) = &options.status_file {
        let _ = std::fs::write(path, stats.status_json(&options).to_string());
    }
    Ok(clean || !options.check)
}
