//! `callpark`: the SIP Call Park server and its administration commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use callpark_server::config::{Config, DEFAULT_CONFIG};
use callpark_server::logging::{self, LogFormat};
use callpark_server::plugin_check;
use callpark_server::provision::FileSource;

/// callpark: a SIP Call Park server whose policy lives in WebAssembly plugins.
///
/// Start with `callpark serve` (the embedded default configuration: SIP on
/// port 5060, orbits 701-750); `callpark default-config` prints that
/// configuration, commented, as a starting point for your own.
#[derive(Parser)]
#[command(name = "callpark", version)]
struct Cli {
    /// How log lines are written (to stderr).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the park server. With no --config, the embedded default: UDP and
    /// TCP on 0.0.0.0:5060, orbits 701-750, default plugins and music.
    Serve {
        /// The TOML configuration (see `callpark default-config`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Work with policy plugins (WASM components of callpark:policy@0.1.0).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Validate a configuration file without serving; exits non-zero with
    /// file, line and field on any error.
    Check {
        /// The TOML configuration to validate.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print the embedded default configuration, a starting point for your own.
    DefaultConfig,
    /// Turn a phone's password (read from stdin, never stored) into the
    /// `[[security.user]]` lines to put in the configuration: HA1 hashes
    /// with SHA-256 and MD5 for the realm.
    Credential {
        /// The user name the phone authenticates with.
        name: String,
        /// The digest realm (`[security] realm`, else `[server] domain`,
        /// else "callpark").
        #[arg(long, default_value = "callpark")]
        realm: String,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the admin API's OpenAPI 3.1 document (what
    /// `/api/v1/openapi.json` serves and `docs/openapi.json` keeps).
    Openapi,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a bearer token: prints its secret (once: only its hash is
    /// kept) and the `[[admin.token]]` lines to put in the configuration.
    New {
        /// admin (everything), operator (read, and parked-call actions) or
        /// viewer (read).
        #[arg(long)]
        role: String,
        /// Who holds it, for the log.
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a plugin: the worlds it implements, its check-params, and every
    /// conformance case, one line each. Exits non-zero on any failure.
    Check {
        /// The plugin component (.wasm).
        file: PathBuf,
        /// Plugin parameters, as key=value (repeatable), e.g.
        /// --params strategy=next.
        #[arg(long, value_name = "KEY=VALUE", num_args = 1.., action = clap::ArgAction::Append)]
        params: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callpark: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let loaded = match &config {
                Some(path) => match FileSource::load(path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return Ok(ExitCode::FAILURE);
                    }
                },
                None => FileSource::embedded(),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            // On a worker, not on this thread: a worker waits for sockets
            // itself, while a future under `block_on` is woken by a worker
            // through a thread switch, which every RTP packet would pay.
            runtime.block_on(async {
                tokio::spawn(callpark_server::serve::serve(loaded))
                    .await
                    .map_err(|e| anyhow::anyhow!("the serve loop panicked: {e}"))?
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Check { file, params },
        } => {
            let params = plugin_check::parse_params(&params)?;
            let passed = plugin_check::run(&file, &params, &mut std::io::stdout().lock())?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check { config } => match Config::load(&config) {
            Ok(loaded) => match callpark_server::serve::preflight(&loaded, &config) {
                Ok(()) => {
                    println!("{}: ok", config.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e:#}", config.display());
                    Ok(ExitCode::FAILURE)
                }
            },
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Openapi => {
            print!("{}", callpark_server::admin::openapi_document());
            Ok(ExitCode::SUCCESS)
        }
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Credential { name, realm } => {
            use callpark_sip::digest::{Algorithm, ha1};
            let mut password = String::new();
            std::io::stdin().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!("no password on stdin");
            }
            println!("[[security.user]]");
            println!("name = \"{name}\"");
            println!(
                "ha1_sha256 = \"{}\"",
                ha1(Algorithm::Sha256, &name, &realm, password)
            );
            println!(
                "ha1_md5 = \"{}\"",
                ha1(Algorithm::Md5, &name, &realm, password)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::New { role, name },
        } => {
            use callpark_server::admin;
            if admin::Role::parse(&role).is_none() {
                anyhow::bail!("--role `{role}` is not one of admin, operator, viewer");
            }
            let secret = admin::new_secret()?;
            println!("# The secret, shown this once: send it as `Authorization: Bearer <secret>`.");
            println!("# {secret}");
            println!("[[admin.token]]");
            println!("name = \"{name}\"");
            println!("role = \"{role}\"");
            println!("sha256 = \"{}\"", admin::hex(&admin::token_hash(&secret)));
            Ok(ExitCode::SUCCESS)
        }
    }
}
