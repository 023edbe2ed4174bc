//! Crash-safety run: starts the release server, does acknowledged work
//! against it over real HTTP and WebSocket, `kill -9`s it at a random
//! moment, restarts it on the same data directory and checks that
//! everything acknowledged before the kill is still there:
//! confirmations confirmed, tokens issued (and their audit records),
//! revocations, website sessions (and logouts), SSO token ids claimed,
//! session keys, and tokens signed by every rotated signing key.
//!
//! `loadtest/crash.sh ROUNDS` builds the release binary and runs this.
#![forbid(unsafe_code)]

mod check;
mod client;
mod journal;
mod server;
mod work;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::Rng;

use journal::Journal;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "kill -9 the server at random points and check that acknowledged work survives")]
struct Options {
    /// Rounds of work, kill and restart.
    #[arg(long, default_value_t = 200)]
    rounds: u32,
    /// The presence-server binary (release build).
    #[arg(long, default_value = "target/release/presence-server")]
    binary: PathBuf,
    /// PEM private key whose public half the SSO group trusts.
    #[arg(long, default_value = "tests/keys/group72-a.key.pem")]
    sso_key: PathBuf,
    /// Its public key.
    #[arg(long, default_value = "tests/keys/group72-a.pub.pem")]
    sso_public_key: PathBuf,
    /// Shortest time from the end of the checks to the kill, in ms.
    #[arg(long, default_value_t = 20)]
    min_kill_ms: u64,
    /// Longest time from the end of the checks to the kill, in ms.
    #[arg(long, default_value_t = 1500)]
    max_kill_ms: u64,
    /// Concurrent workers doing acknowledged work.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Keep the data directory and server logs here (default: a temporary
    /// directory, removed on success).
    #[arg(long)]
    keep: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("crash: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let root = options
        .keep
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    match run(options, &root).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Keep the data directory and the server log for a post-mortem.
            let kept = scratch.keep();
            eprintln!(
                "crash: FAILED: {e}\ncrash: data and server.log kept in {}",
                kept.display()
            );
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(options: Options, root: &std::path::Path) -> Result<(), String> {
    if options.min_kill_ms > options.max_kill_ms || options.rounds == 0 || options.workers == 0 {
        return Err("need --rounds >= 1, --workers >= 1 and --min-kill-ms <= --max-kill-ms".into());
    }
    let sso_key = std::fs::read(&options.sso_key)
        .map_err(|e| format!("{}: {e}", options.sso_key.display()))?;
    let setup = server::Setup::new(&options.binary, root, &options.sso_public_key)?;
    let journal = Arc::new(Mutex::new(Journal::default()));
    let started = Instant::now();
    let mut totals = check::Totals::default();
    let mut rng = rand::rng();
    for round in 0..=options.rounds {
        let server = setup.start(round).await?;
        let ctx = Arc::new(client::Ctx::new(server.url.clone(), sso_key.clone())?);
        // Checks first: restored session keys must be claimed within the
        // reconnect grace period.
        let checked = check::everything(&ctx, &journal, round)
            .await
            .map_err(|e| format!("round {round}, after restart: {e}"))?;
        totals.add(&checked);
        if round == options.rounds {
            server.stop().await?;
            break;
        }
        let kill_after = rng.random_range(options.min_kill_ms..=options.max_kill_ms);
        let done = work::until_killed(
            ctx.clone(),
            journal.clone(),
            round,
            options.workers,
            server,
            Duration::from_millis(kill_after),
        )
        .await?;
        totals.acknowledged += done;
        if round % 10 == 0 || round + 1 == options.rounds {
            let j = journal.lock().expect("journal");
            println!(
                "round {round}: killed after {kill_after} ms; acknowledged so far: {}",
                j.summary()
            );
        }
    }
    let j = journal.lock().expect("journal");
    println!(
        "crash: {} rounds of kill -9 in {:.0} s; acknowledged: {}; checks passed: {}",
        options.rounds,
        started.elapsed().as_secs_f64(),
        j.summary(),
        totals.summary()
    );
    Ok(())
}
