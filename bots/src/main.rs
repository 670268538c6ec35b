//! `chorus`: the one binary. It owns the runtime, the CLI, configuration loading,
//! logging and signals, and wires core to the surfaces.

/// mimalloc instead of glibc's malloc: a streaming reply allocates a little per event
/// on several threads, where glibc's arenas cost about a tenth of the server's time.
/// Measured (README, "Performance"): about a fifth less CPU per reply and lower lag
/// under load, for some more resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod healthcheck;
mod serve;
mod settings;
mod telemetry;

use anyhow::Context;
use clap::Parser;
use cli::{ApiKeyCommand, Cli, Command, ConfigCommand, UserCommand};
use settings::Settings;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The config comes first: it says how to log (and where spans and metrics go).
    let settings = match load_config(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let serving = matches!(cli.command, Command::Serve { .. });
    let telemetry = match telemetry::init(&settings.core.telemetry, serving) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, settings, telemetry.metrics.clone()));
    drop(runtime);
    // After the runtime: the exporter's blocking client sends the last spans.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config file: `--config`, else `CHORUS_CONFIG`, else `./chorus.toml` if present.
fn config_path(cli: &Cli) -> Option<PathBuf> {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("CHORUS_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("chorus.toml")).filter(|p| p.exists()))
}

fn load_config(cli: &Cli) -> anyhow::Result<Settings> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let mut settings = Settings::load(config_path(cli).as_deref(), &env)?;
    if let Some(dir) = &cli.data_dir {
        settings.core.data_dir = Some(dir.clone());
    }
    Ok(settings)
}

async fn run(
    cli: Cli,
    mut settings: Settings,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Serve { listen } => {
            drop(out);
            if let Some(listen) = listen {
                settings.core.server.listen = listen;
                settings.core.listen_addr()?;
            }
            serve::serve(settings, metrics).await
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            write!(out, "{}", settings.masked_toml())?;
            writeln!(out, "# config is valid")?;
            // On stderr, so that stdout stays the config.
            let mut err = std::io::stderr().lock();
            for warning in settings.warnings() {
                writeln!(err, "warning: {warning}")?;
            }
            Ok(())
        }
        Command::Migrate => {
            chorus_core::Core::migrate(&settings.core).await?;
            writeln!(out, "database is up to date")?;
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    name,
                    admin,
                    password_stdin,
                },
        } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (chorus_core::auth::new_token()[..20].to_string(), true)
            };
            let (core, _) = chorus_core::Core::start_for_admin(settings.core).await?;
            let account = core.create_account(&name, admin, Some(&password)).await?;
            writeln!(
                out,
                "created {} account {:?} ({})",
                account.role.as_str(),
                account.name,
                account.id
            )?;
            if generated {
                writeln!(out, "password: {password}")?;
                writeln!(out, "(shown once; pass --password-stdin to choose one)")?;
            }
            core.shutdown().await;
            Ok(())
        }
        Command::User {
            command: UserCommand::Grant { user, amount, note },
        } => {
            let (core, operator) = chorus_core::Core::start_for_admin(settings.core).await?;
            let result = match core.account_by_name(&user).await {
                Ok(Some(account)) => {
                    core.grant_credits(&operator, &account.id, amount, note.as_deref())
                        .await
                }
                Ok(None) => Err(chorus_core::CoreError::NotFound("account")),
                Err(e) => Err(e),
            };
            core.shutdown().await;
            let balance = result?;
            writeln!(
                out,
                "{user}: balance {} credits",
                chorus_core::quota::fmt_credits(balance)
            )?;
            Ok(())
        }
        Command::Healthcheck { url } => {
            let url = match url {
                Some(url) => url,
                None => healthcheck::own_url(settings.core.listen_addr()?),
            };
            healthcheck::check(&url).await?;
            writeln!(out, "healthy: {url}/healthz answered 200")?;
            Ok(())
        }
        Command::Apikey {
            command: ApiKeyCommand::Create { user, name },
        } => {
            let (core, _) = chorus_core::Core::start_for_admin(settings.core).await?;
            let account = core
                .account_by_name(&user)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no account named {user:?}"))?;
            let scopes = ["read".to_string(), "chat".to_string()];
            let (record, key) = core.create_api_key(&account, &name, &scopes).await?;
            writeln!(out, "{key}")?;
            eprintln!(
                "API key {:?} ({}) for {user}: shown once, stored hashed",
                record.name, record.prefix
            );
            core.shutdown().await;
            Ok(())
        }
    }
}
