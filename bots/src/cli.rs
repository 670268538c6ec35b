//! The command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Chorus: a self-hosted AI chat platform and plugin host.
#[derive(Parser)]
#[command(name = "chorus", version, about)]
pub struct Cli {
    /// Config file (TOML). Default: $CHORUS_CONFIG, else ./chorus.toml if it exists.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory for embedded data (the SQLite database). Default: ./data
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (web API, chat client, engine).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:3000 (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Ask a running server's /healthz and exit 0 if it answers 200 (a container's
    /// health check: the image has no shell or HTTP client).
    Healthcheck {
        /// The server to ask, e.g. http://127.0.0.1:3000 (default: this config's
        /// server.listen, on loopback when it listens on every interface).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config with secrets masked; fail if it is invalid.
    Check,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a local account (a password is generated unless --password-stdin).
    Create {
        name: String,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Add credits to USER's balance (a negative AMOUNT deducts), with a ledger row.
    Grant {
        user: String,
        /// Credits, e.g. 5 or 0.25; negative to deduct.
        #[arg(allow_negative_numbers = true)]
        amount: f64,
        /// Why, recorded on the ledger row.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for USER and print it once.
    Create {
        user: String,
        /// A name to recognise the key by.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}
