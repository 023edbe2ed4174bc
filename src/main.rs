//! The `presence-server` binary: parses the command line and hands over to
//! the library. All logic lives in `lib.rs` so tests can start the server.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use presence_server::cli::{self, Cli, Command};
use presence_server::config::{Config, ServerRole};

/// jemalloc, chosen by measurement (README, Performance): with 19,000
/// visitors the same idle RSS as glibc's malloc, but after a 20 s phase of
/// 5,000 invokes/s the server kept 4.5 MB more instead of 16 to 36 MB
/// (glibc fragments around the transient 8 KiB read buffers; mimalloc kept
/// 47 MB more at idle). Only the binary: tests that start the server in
/// their own process use the system allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match Cli::parse().command() {
        Command::Serve { config, role } => serve(&config, role),
        Command::HashPassword => match cli::hash_password_from(std::io::stdin()) {
            Ok(phc) => {
                println!("{phc}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Openapi => {
            println!("{}", presence_server::openapi_json());
            ExitCode::SUCCESS
        }
        Command::LoginKey {
            config,
            group,
            puid,
            ttl,
        } => {
            use presence_server::clock::{Clock, SystemClock};
            let result = Config::load(&config)
                .map_err(|e| e.to_string())
                .and_then(|c| cli::login_key(&c, group, &puid, ttl, SystemClock.now_secs()));
            match result {
                Ok(key) => {
                    println!("{key}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        command
        @ (Command::GenToken { .. } | Command::CheckToken { .. } | Command::Keys { .. }) => {
            cli::token_commands::run(command)
        }
        Command::Reload { config, role, all } => {
            let result = Config::load_as(&config, role)
                .map_err(|e| e.to_string())
                .and_then(|config| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("runtime: {e}"))?
                        .block_on(cli::reload(&config, all))
                });
            match result {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig { config, role } => match cli::check_config(&config, role) {
            Ok(checked) => {
                println!("{}: ok", config.display());
                for note in cli::check_config_notes(&checked) {
                    println!("{note}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn serve(path: &std::path::Path, role: Option<ServerRole>) -> ExitCode {
    let config = match Config::load_as(path, role) {
        Ok(config) => config,
        Err(e) => return fail(&e.to_string()),
    };
    presence_server::telemetry::init(config.server.log_format);
    let result = actix_web::rt::System::new().block_on(async move {
        let listener = presence_server::bind(&config)?;
        let source = presence_server::config::ConfigSource {
            path: path.to_owned(),
            role,
        };
        presence_server::run_with_source(config, listener, source)
            .await?
            .run_until_signal()
            .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            fail(&e.to_string())
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("presence-server: {message}");
    ExitCode::FAILURE
}
