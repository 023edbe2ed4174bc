//! The token tools' commands: load the config as the server does, open
//! the keys, do the work, print, and choose the exit code.
//!
//! Exit codes: 0 done (`check-token`: valid); 1 refused or failed
//! (`check-token`: invalid); 2 usage or config error (`check-token`
//! also when it could not check at all: data dir held, Redis down).

use std::io::Read;
use std::process::ExitCode;

use super::key_tools;
use super::token_check;
use super::token_tools::{self, Access, TokenTools, ToolError};
use super::{Command, KeysCommand};
use crate::auth::token::MAX_TOKEN_BYTES;
use crate::infra::config::{Config, ServerRole};

/// Runs `gen-token`, `check-token` or `keys`; any other command is a
/// caller's mistake (exit 2).
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::GenToken {
            config,
            role,
            group,
            user,
            ttl,
        } => match gen_token(&config, role, group, &user, ttl) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        Command::CheckToken {
            config,
            role,
            token,
        } => check_token(&config, role, &token),
        Command::Keys {
            action: KeysCommand::List { config, role, json },
        } => match list_keys(&config, role, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        Command::Keys {
            action: KeysCommand::Rotate { config, role },
        } => match rotate_keys(&config, role) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        _ => {
            eprintln!("presence-server: not a token tool");
            ExitCode::from(2)
        }
    }
}

fn open(
    path: &std::path::Path,
    role: Option<ServerRole>,
    access: Access,
) -> Result<TokenTools, ToolError> {
    let config = Config::load_as(path, role).map_err(|e| ToolError::Config(e.to_string()))?;
    TokenTools::open(config, access)
}

fn gen_token(
    path: &std::path::Path,
    role: Option<ServerRole>,
    group: u64,
    user: &str,
    ttl: Option<u64>,
) -> Result<(), ToolError> {
    let config = Config::load_as(path, role).map_err(|e| ToolError::Config(e.to_string()))?;
    let ttl = ttl.unwrap_or(config.auth.token_default_secs);
    // A request the server would refuse opens (and creates) nothing.
    token_tools::requested_user(&config, group, user, ttl)?;
    let tools = TokenTools::open(config, Access::Write)?;
    let generated = token_tools::gen_token(&tools, group, user, ttl)?;
    if let Some(note) = &generated.unaudited {
        eprintln!("presence-server: warning: {note}");
    }
    let claims = &generated.issued.claims;
    eprintln!(
        "presence-server: issued jti {} to {} (group {}, role {}), expires {}",
        claims.jti,
        claims.sub,
        claims.groupid,
        claims.role.as_str(),
        key_tools::utc(claims.exp * 1000)
    );
    say(&generated.issued.token);
    Ok(())
}

fn check_token(path: &std::path::Path, role: Option<ServerRole>, token: &str) -> ExitCode {
    let token = if token == "-" {
        let mut read = String::new();
        if let Err(e) = std::io::stdin()
            .take(MAX_TOKEN_BYTES as u64 + 2)
            .read_to_string(&mut read)
        {
            eprintln!("presence-server: cannot read the token from stdin: {e}");
            return ExitCode::from(2);
        }
        read
    } else {
        token.to_owned()
    };
    let tools = match open(path, role, Access::Read) {
        Ok(tools) => tools,
        Err(e) => return fail(&e, 2),
    };
    let checked = token_check::check_token(&tools, &token);
    match &checked.outcome {
        Ok(()) => say("valid"),
        Err(e) => say(&format!(
            "invalid: {} ({}): {e}",
            checked.report["error"].as_str().unwrap_or_default(),
            e.reason()
        )),
    }
    say(&serde_json::to_string_pretty(&checked.report).unwrap_or_default());
    match checked.outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

fn list_keys(
    path: &std::path::Path,
    role: Option<ServerRole>,
    json: bool,
) -> Result<(), ToolError> {
    let tools = open(path, role, Access::Read)?;
    let keys = key_tools::list(&tools);
    if json {
        let text = serde_json::to_string_pretty(&keys)
            .map_err(|e| ToolError::Failed(format!("cannot print the keys: {e}")))?;
        say(&text);
    } else {
        say(key_tools::table(&keys).trim_end());
    }
    Ok(())
}

fn rotate_keys(path: &std::path::Path, role: Option<ServerRole>) -> Result<(), ToolError> {
    let tools = open(path, role, Access::Read)?;
    let rotated = key_tools::rotate(&tools)?;
    let was = rotated.previous.as_deref().unwrap_or("none");
    match tools.shared {
        Some(_) => eprintln!(
            "presence-server: rotated in Redis (previous {was}); every node reads the new key on the notice or within a second, and it signs from {}",
            key_tools::utc(rotated.active_at_ms)
        ),
        None => eprintln!(
            "presence-server: rotated (previous {was}, which keeps verifying its tokens); a server started on this data dir signs with the new key"
        ),
    }
    say(&rotated.kid);
    Ok(())
}

/// A line on stdout; a reader that went away (`| head`) is not an error.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Prints `e` and returns its exit code: 2 for a config error, else
/// `code`.
fn fail(e: &ToolError, code: u8) -> ExitCode {
    eprintln!("presence-server: {e}");
    match e {
        ToolError::Config(_) => ExitCode::from(2),
        _ => ExitCode::from(code),
    }
}
