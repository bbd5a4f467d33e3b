//! `callpark`: the SIP Call Park server and its administration commands.

use std::io::Write;
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
    /// Administer a running server through its admin API (docs/api.md).
    /// The token comes from CALLPARK_TOKEN, else --token-file, else
    /// ./admin-token. Exit codes: 0 done, 2 usage, 3 not allowed, 4 not
    /// found, 5 conflict, 6 refused, 7 server error, 8 unreachable.
    Ctl(CtlArgs),
}

#[derive(clap::Args)]
struct CtlArgs {
    /// The admin API's address.
    #[arg(long, env = "CALLPARK_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A file holding the token (used when CALLPARK_TOKEN is not set).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Validate a write and show what it would change; apply nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Remove orbits that hold parked calls anyway (they are recalled).
    #[arg(long, global = true)]
    force: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Orbits: list, show, add, set (KEY=VALUE ...; KEY=null clears), rm.
    Orbits {
        #[command(subcommand)]
        command: ObjectCommand,
    },
    /// Orbit ranges: list, show, add NAME start=... end=..., set, rm.
    Ranges {
        #[command(subcommand)]
        command: ObjectCommand,
    },
    /// Call park groups: list, show, add, set, rm, member-add, member-rm.
    Groups {
        #[command(subcommand)]
        command: ObjectCommand,
    },
    /// Settings sections (defaults, recall, features, access): show one or
    /// all, or set KEY=VALUE ... on one.
    Settings {
        /// The section; all of them without.
        section: Option<String>,
        /// KEY=VALUE pairs to set (a merge: other keys stay).
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// The effective configuration, each object with its source.
    Config,
    /// Re-read the configuration file (what SIGHUP does).
    Reload,
    /// Judge a configuration file as `callpark check` does, on the server.
    Validate { file: PathBuf },
    /// Import a CSV of orbits or groups; prints each row's status, exits 6
    /// when a row was refused.
    Import {
        file: PathBuf,
        /// orbits or groups; without it the header tells.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Print the stored orbits or groups as CSV (imports again unchanged).
    Export {
        /// orbits or groups.
        kind: String,
    },
    /// Hold music in the store: list, put NAME FILE, get NAME [FILE], rm NAME.
    Music {
        #[command(subcommand)]
        command: MusicCommand,
    },
    /// Plugin slots: list, show SLOT, put SLOT FILE, rm SLOT, params SLOT
    /// [KEY=VALUE ...].
    Plugins {
        #[command(subcommand)]
        command: Option<PluginsCommand>,
    },
}

#[derive(Subcommand)]
enum ObjectCommand {
    List,
    Show {
        key: String,
    },
    /// Make one: its key, then KEY=VALUE settings.
    Add {
        key: String,
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Change settings (a merge: others stay; KEY=null clears one).
    Set {
        key: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
    },
    Rm {
        key: String,
    },
    /// Groups: add one member.
    MemberAdd {
        key: String,
        member: String,
    },
    /// Groups: remove one member.
    MemberRm {
        key: String,
        member: String,
    },
}

#[derive(Subcommand)]
enum MusicCommand {
    List,
    /// Upload a WAV under NAME (orbits name it in `music`).
    Put {
        name: String,
        file: PathBuf,
    },
    /// Download it (to FILE, else stdout).
    Get {
        name: String,
        file: Option<PathBuf>,
    },
    Rm {
        name: String,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    List,
    Show {
        slot: String,
    },
    /// Load a .wasm into the slot (kept in the store).
    Put {
        slot: String,
        file: PathBuf,
    },
    /// Back to the embedded default.
    Rm {
        slot: String,
    },
    /// Show the slot's params, or set them (the whole set).
    Params {
        slot: String,
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
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

/// What `plugin check` and `plugin test` run a plugin with.
#[derive(clap::Args)]
struct PluginRunArgs {
    /// Plugin parameters, as key=value (repeatable), e.g.
    /// --params strategy=next.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., action = clap::ArgAction::Append)]
    params: Vec<String>,
    /// The CPU budget of one decision, as a slot's `timeout`.
    #[arg(long, default_value = "10ms")]
    timeout: String,
    /// The linear memory cap per instance, as a slot's `memory`.
    #[arg(long, default_value = "16MiB")]
    memory: String,
}

impl PluginRunArgs {
    fn parse(&self) -> anyhow::Result<(callpark_core::Params, callpark_policy::Limits)> {
        let params = plugin_check::parse_params(&self.params)?;
        let limits = callpark_policy::Limits {
            timeout: callpark_core::parse_duration(&self.timeout)
                .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?,
            memory_bytes: callpark_server::config::parse_size(&self.memory)
                .map_err(|e| anyhow::anyhow!("--memory: {e}"))?,
            ..callpark_policy::Limits::default()
        };
        Ok((params, limits))
    }
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a plugin: the worlds it implements, its check-params, and every
    /// conformance case, one line each. Exits non-zero on any failure.
    Check {
        /// The plugin component (.wasm).
        file: PathBuf,
        #[command(flatten)]
        run: PluginRunArgs,
    },
    /// Start a plugin project: NAME/ with the source, a one-command build
    /// (`./build.sh`), the WIT, a README and a cases.toml. It builds and
    /// passes `plugin check` and `plugin test` as it is written.
    New {
        /// The project's name (lower-case letters, digits, `-`, `_`); also
        /// the directory and the `.wasm` file's name.
        name: String,
        /// The world the plugin implements.
        #[arg(long, value_enum)]
        world: callpark_server::scaffold::World,
        /// The language it is written in.
        #[arg(long, value_enum)]
        lang: callpark_server::scaffold::Lang,
        /// Where to write the project (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run your own test cases on a plugin: a TOML file of inputs and the
    /// answers (or failures) they must give, one line per case. Exits 1 when
    /// a case does not pass, 2 when the case file is unusable. The format is
    /// in docs/plugins.md; the built-in conformance cases are an example.
    Test {
        /// The plugin component (.wasm).
        file: PathBuf,
        /// The case file (.toml).
        cases: PathBuf,
        #[command(flatten)]
        run: PluginRunArgs,
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
            command: PluginCommand::Check { file, run },
        } => {
            let (params, limits) = run.parse()?;
            let passed = plugin_check::run(&file, &params, limits, &mut std::io::stdout().lock())?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    world,
                    lang,
                    dir,
                },
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let files = callpark_server::scaffold::write(&dir, &name, world, lang)?;
            for f in &files {
                println!("wrote {}", dir.join(f).display());
            }
            println!(
                "next: cd {} && ./build.sh && callpark plugin check {}.wasm && callpark plugin test {}.wasm cases.toml",
                dir.display(),
                name.replace('-', "_"),
                name.replace('-', "_")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: PluginCommand::Test { file, cases, run },
        } => {
            let (params, limits) = run.parse()?;
            let text = std::fs::read_to_string(&cases)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", cases.display()))?;
            let cases_file = match callpark_policy::cases::parse(&text) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{}:{}: {}", cases.display(), e.line, e.reason);
                    return Ok(ExitCode::from(2));
                }
            };
            let passed = plugin_check::test(
                &file,
                &params,
                limits,
                &cases_file,
                &mut std::io::stdout().lock(),
            )?;
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
        Command::Ctl(args) => Ok(match ctl(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => {
                eprintln!("error: {}", f.message);
                ExitCode::from(f.code)
            }
        }),
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

/// `callpark ctl`: one API call (or two) per command.
fn ctl(args: CtlArgs) -> Result<(), callpark_server::ctl::Failure> {
    use callpark_server::ctl::{
        self, Client, EXIT_SERVER, EXIT_USAGE, Failure, columns, flags, key_values, pairs, segment,
        summary, table,
    };
    use serde_json::{Value, json};
    let client = Client::new(&args.server, ctl::token(args.token_file.as_deref())?);
    let q = flags(args.dry_run, args.force);
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| Failure {
        code: EXIT_SERVER,
        message: e.to_string(),
    };
    let usage = |m: String| Failure {
        code: EXIT_USAGE,
        message: m,
    };
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| usage(format!("{}: {e}", path.display())))
    };
    let json_mode = args.json;
    // Prints a listing, an object, or a write's answer.
    let show =
        |out: &mut std::io::StdoutLock, value: &Value, resource: &str| -> Result<(), Failure> {
            if json_mode {
                return writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(value).unwrap_or_default()
                )
                .map_err(io);
            }
            if let Some(rows) = value.as_array() {
                return table(out, rows, columns(resource)).map_err(io);
            }
            if let Some(changes) = value.get("changes") {
                writeln!(out, "{}", summary(changes)).map_err(io)?;
                if let Some(o) = value.get("object").filter(|o| !o.is_null()) {
                    key_values(out, o).map_err(io)?;
                }
                return Ok(());
            }
            key_values(out, value).map_err(io)
        };
    match args.command {
        CtlCommand::Orbits { command } => {
            object(&client, &mut out, "orbits", "number", command, &q, &show)
        }
        CtlCommand::Ranges { command } => object(
            &client,
            &mut out,
            "orbit-ranges",
            "name",
            command,
            &q,
            &show,
        ),
        CtlCommand::Groups { command } => {
            object(&client, &mut out, "groups", "name", command, &q, &show)
        }
        CtlCommand::Settings { section: None, .. } => {
            let v = client.json("GET", "/api/v1/settings", None)?;
            if json_mode {
                return show(&mut out, &v, "settings");
            }
            for (name, s) in v.as_object().into_iter().flatten() {
                writeln!(out, "[{name}]  # {}", ctl_source(&s["source"])).map_err(io)?;
                key_values(&mut out, &s["value"]).map_err(io)?;
            }
            Ok(())
        }
        CtlCommand::Settings {
            section: Some(name),
            set,
        } => {
            let path = format!("/api/v1/settings/{}", segment(&name));
            let v = if set.is_empty() {
                client.json("GET", &path, None)?
            } else {
                client.json("PATCH", &format!("{path}{q}"), Some(pairs(&set)?))?
            };
            if json_mode || set.is_empty() {
                if !json_mode {
                    writeln!(out, "[{name}]  # {}", ctl_source(&v["source"])).map_err(io)?;
                    return key_values(&mut out, &v["value"]).map_err(io);
                }
                return show(&mut out, &v, "settings");
            }
            writeln!(out, "{}", summary(&v["changes"])).map_err(io)?;
            key_values(&mut out, &v["object"]["value"]).map_err(io)
        }
        CtlCommand::Config => {
            let v = client.json("GET", "/api/v1/config", None)?;
            if json_mode {
                return show(&mut out, &v, "config");
            }
            writeln!(
                out,
                "file: {}\nstore: {} (schema {})",
                v["file"], v["store"], v["schema_version"]
            )
            .map_err(io)?;
            writeln!(out, "\nranges:").map_err(io)?;
            table(
                &mut out,
                v["ranges"].as_array().map_or(&[][..], |a| a),
                columns("ranges"),
            )
            .map_err(io)?;
            writeln!(out, "\norbit settings:").map_err(io)?;
            table(
                &mut out,
                v["orbits"].as_array().map_or(&[][..], |a| a),
                &[
                    "number",
                    "name",
                    "capacity",
                    "music",
                    "recall_after",
                    "source",
                ],
            )
            .map_err(io)?;
            writeln!(out, "\ngroups:").map_err(io)?;
            table(
                &mut out,
                v["groups"].as_array().map_or(&[][..], |a| a),
                columns("groups"),
            )
            .map_err(io)
        }
        CtlCommand::Reload => {
            let v = client.json("POST", "/api/v1/config:reload", None)?;
            if json_mode {
                return show(&mut out, &v, "reload");
            }
            writeln!(out, "reloaded {}", v["file"]).map_err(io)
        }
        CtlCommand::Validate { file } => {
            let (status, body) = client.request(
                "POST",
                "/api/v1/config:validate",
                Some(("text/plain", read(&file)?)),
            )?;
            let v = ctl::answer(status, &body)?;
            if json_mode {
                return show(&mut out, &v, "validate");
            }
            writeln!(out, "{}: valid", file.display()).map_err(io)
        }
        CtlCommand::Import { file, kind } => {
            let mut query = q.clone();
            if let Some(k) = kind {
                query.push(if query.is_empty() { '?' } else { '&' });
                query.push_str(&format!("kind={}", segment(&k)));
            }
            let (status, body) = client.request(
                "POST",
                &format!("/api/v1/imports{query}"),
                Some(("text/csv", read(&file)?)),
            )?;
            let v = ctl::answer(status, &body)?;
            if json_mode {
                show(&mut out, &v, "import")?;
                if v["refused"].as_u64().unwrap_or(0) > 0 {
                    return Err(Failure {
                        code: ctl::EXIT_REFUSED,
                        message: "some rows were refused".into(),
                    });
                }
                return Ok(());
            }
            ctl::import_report(&mut out, &v)
        }
        CtlCommand::Export { kind } => {
            let (status, body) = client.request(
                "GET",
                &format!("/api/v1/exports/{}.csv", segment(&kind)),
                None,
            )?;
            if !(200..300).contains(&status) {
                ctl::answer(status, &body)?;
            }
            out.write_all(&body).map_err(io)
        }
        CtlCommand::Music { command } => match command {
            MusicCommand::List => {
                let v = client.json("GET", "/api/v1/music", None)?;
                show(&mut out, &v, "music")
            }
            MusicCommand::Put { name, file } => {
                let (status, body) = client.request(
                    "PUT",
                    &format!("/api/v1/music/{}{q}", segment(&name)),
                    Some(("application/octet-stream", read(&file)?)),
                )?;
                let v = ctl::answer(status, &body)?;
                show(&mut out, &v, "music")
            }
            MusicCommand::Get { name, file } => {
                let (status, body) =
                    client.request("GET", &format!("/api/v1/music/{}", segment(&name)), None)?;
                if !(200..300).contains(&status) {
                    ctl::answer(status, &body)?;
                }
                match file {
                    Some(f) => std::fs::write(&f, &body)
                        .map_err(|e| usage(format!("{}: {e}", f.display()))),
                    None => out.write_all(&body).map_err(io),
                }
            }
            MusicCommand::Rm { name } => {
                let v = client.json(
                    "DELETE",
                    &format!("/api/v1/music/{}{q}", segment(&name)),
                    None,
                )?;
                show(&mut out, &v, "music")
            }
        },
        CtlCommand::Plugins { command } => match command.unwrap_or(PluginsCommand::List) {
            PluginsCommand::List => {
                let v = client.json("GET", "/api/v1/plugins", None)?;
                show(&mut out, &v, "plugins")
            }
            PluginsCommand::Show { slot } => {
                let v = client.json("GET", &format!("/api/v1/plugins/{}", segment(&slot)), None)?;
                show(&mut out, &v, "plugins")
            }
            PluginsCommand::Put { slot, file } => {
                let (status, body) = client.request(
                    "PUT",
                    &format!("/api/v1/plugins/{}{q}", segment(&slot)),
                    Some(("application/octet-stream", read(&file)?)),
                )?;
                let v = ctl::answer(status, &body)?;
                show(&mut out, &v, "plugins")
            }
            PluginsCommand::Rm { slot } => {
                let v = client.json(
                    "DELETE",
                    &format!("/api/v1/plugins/{}{q}", segment(&slot)),
                    None,
                )?;
                show(&mut out, &v, "plugins")
            }
            PluginsCommand::Params { slot, set } => {
                let path = format!("/api/v1/plugins/{}/params", segment(&slot));
                let v = if set.is_empty() {
                    client.json("GET", &path, None)?
                } else {
                    let body: serde_json::Map<String, Value> = set
                        .iter()
                        .map(|kv| {
                            kv.split_once('=')
                                .map(|(k, v)| (k.to_string(), json!(v)))
                                .ok_or_else(|| usage(format!("`{kv}` is not KEY=VALUE")))
                        })
                        .collect::<Result<_, _>>()?;
                    client.json("PUT", &format!("{path}{q}"), Some(Value::Object(body)))?
                };
                if json_mode {
                    return show(&mut out, &v, "params");
                }
                let params = if set.is_empty() {
                    &v["value"]
                } else {
                    &v["object"]["value"]
                };
                key_values(&mut out, params).map_err(io)
            }
        },
    }
}

fn ctl_source(source: &serde_json::Value) -> String {
    match source["kind"].as_str() {
        Some("file") => format!(
            "from {}:{}",
            source["file"].as_str().unwrap_or(""),
            source["line"]
        ),
        Some(kind) => format!("from {kind}"),
        None => String::new(),
    }
}

/// The list/show/add/set/rm (and group member) commands of a resource.
fn object(
    client: &callpark_server::ctl::Client,
    out: &mut std::io::StdoutLock,
    resource: &str,
    key_field: &str,
    command: ObjectCommand,
    q: &str,
    show: &dyn Fn(
        &mut std::io::StdoutLock,
        &serde_json::Value,
        &str,
    ) -> Result<(), callpark_server::ctl::Failure>,
) -> Result<(), callpark_server::ctl::Failure> {
    use callpark_server::ctl::{EXIT_USAGE, Failure, pairs, segment};
    let base = format!("/api/v1/{resource}");
    let kind = if resource == "orbit-ranges" {
        "ranges"
    } else {
        resource
    };
    let v = match command {
        ObjectCommand::List => client.json("GET", &base, None)?,
        ObjectCommand::Show { key } => {
            client.json("GET", &format!("{base}/{}", segment(&key)), None)?
        }
        ObjectCommand::Add { key, set } => {
            let mut body = pairs(&set)?;
            body[key_field] = serde_json::Value::String(key);
            client.json("POST", &format!("{base}{q}"), Some(body))?
        }
        ObjectCommand::Set { key, set } => client.json(
            "PATCH",
            &format!("{base}/{}{q}", segment(&key)),
            Some(pairs(&set)?),
        )?,
        ObjectCommand::Rm { key } => {
            client.json("DELETE", &format!("{base}/{}{q}", segment(&key)), None)?
        }
        ObjectCommand::MemberAdd { key, member } | ObjectCommand::MemberRm { key, member }
            if resource != "groups" =>
        {
            let _ = (key, member);
            return Err(Failure {
                code: EXIT_USAGE,
                message: "members are for groups".into(),
            });
        }
        ObjectCommand::MemberAdd { key, member } => client.json(
            "POST",
            &format!("{base}/{}/members{q}", segment(&key)),
            Some(serde_json::json!({ "member": member })),
        )?,
        ObjectCommand::MemberRm { key, member } => client.json(
            "DELETE",
            &format!("{base}/{}/members/{}{q}", segment(&key), segment(&member)),
            None,
        )?,
    };
    show(out, &v, kind)
}
