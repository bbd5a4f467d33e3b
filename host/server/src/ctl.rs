//! `callpark ctl`: the admin API from a shell. Tables for people, `--json`
//! for scripts, and an exit code that says what failed:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 2 | the command line is wrong |
//! | 3 | no token, or the token may not do this (401, 403) |
//! | 4 | no such object (404) |
//! | 5 | a conflict: the file owns it, it exists, it holds calls, it is in use (409) |
//! | 6 | refused: a bad value, or an import with refused rows (400, 413, 422) |
//! | 7 | the server failed (5xx) |
//! | 8 | the server cannot be reached |

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// Exit codes (see the module docs).
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_AUTH: u8 = 3;
pub const EXIT_NOT_FOUND: u8 = 4;
pub const EXIT_CONFLICT: u8 = 5;
pub const EXIT_REFUSED: u8 = 6;
pub const EXIT_SERVER: u8 = 7;
pub const EXIT_UNREACHABLE: u8 = 8;

/// A failed command: what to print, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Where the API is and how to get in.
pub struct Client {
    server: String,
    token: String,
    agent: ureq::Agent,
}

/// The token: `CALLPARK_TOKEN`, else the file given, else `admin-token`
/// in the working directory (where `callpark serve` keeps its first-start
/// token when run there). Never a command-line argument: those show in
/// `ps`.
pub fn token(file: Option<&Path>) -> Result<String, Failure> {
    if let Ok(t) = std::env::var("CALLPARK_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let path = file.map_or_else(|| PathBuf::from("admin-token"), Path::to_path_buf);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|e| {
            fail(
                EXIT_AUTH,
                format!(
                    "no token: set CALLPARK_TOKEN or give --token-file ({}: {e})",
                    path.display()
                ),
            )
        })
}

impl Client {
    pub fn new(server: &str, token: String) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build();
        Client {
            server: server.trim_end_matches('/').to_string(),
            token,
            agent: config.into(),
        }
    }

    /// One request; answers (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let url = format!("{}{path}", self.server);
        let auth = format!("Bearer {}", self.token);
        let unreachable = |e: ureq::Error| {
            fail(
                EXIT_UNREACHABLE,
                format!("cannot reach {}: {e}", self.server),
            )
        };
        let mut response = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &auth)
                .call()
                .map_err(unreachable)?,
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call()
                .map_err(unreachable)?,
            (m, body) => {
                let (content_type, bytes) = body.unwrap_or(("application/json", Vec::new()));
                let builder = match m {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                builder
                    .header("Authorization", &auth)
                    .header("Content-Type", content_type)
                    .send(&bytes)
                    .map_err(unreachable)?
            }
        };
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(128 << 20)
            .read_to_vec()
            .map_err(unreachable)?;
        Ok((status, bytes))
    }

    /// A JSON request; a problem answer becomes a `Failure` with its
    /// detail, each refused field, and the exit code for its status.
    pub fn json(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let (status, bytes) = self.request(method, path, body)?;
        answer(status, &bytes)
    }
}

/// A 2xx answer as JSON, or the `Failure` its problem document says.
pub fn answer(status: u16, bytes: &[u8]) -> Result<Value, Failure> {
    let value: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()));
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let code = match status {
        401 | 403 => EXIT_AUTH,
        404 => EXIT_NOT_FOUND,
        409 => EXIT_CONFLICT,
        400 | 413 | 422 => EXIT_REFUSED,
        _ => EXIT_SERVER,
    };
    let mut message = match value.get("detail").and_then(Value::as_str) {
        Some(d) => format!("{status}: {d}"),
        None => format!("{status}: {value}"),
    };
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        for e in errors.iter().skip(usize::from(errors.len() == 1)) {
            message.push_str(&format!("\n  {e}"));
        }
    }
    Err(fail(code, message))
}

/// `KEY=VALUE` pairs as a JSON object: `null` clears a setting (PATCH),
/// a number setting is a number, a yes/no setting true or false, a list
/// setting takes `;`-separated items (or a JSON list), and anything else
/// is a string (so `escape_key=0` is the key "0").
pub fn pairs(items: &[String]) -> Result<Value, Failure> {
    const LISTS: [&str; 6] = [
        "members",
        "destinations",
        "retrieve",
        "parkers",
        "retrievers",
        "watchers",
    ];
    const NUMBERS: [&str; 2] = ["capacity", "max_attempts"];
    const BOOLS: [&str; 2] = ["enabled", "use_members_as_destinations"];
    let mut map = serde_json::Map::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(fail(EXIT_USAGE, format!("`{item}` is not KEY=VALUE")));
        };
        let bad = |what: &str| fail(EXIT_USAGE, format!("{k}: `{v}` is not {what}"));
        let value = if v == "null" {
            Value::Null
        } else if LISTS.contains(&k) {
            match serde_json::from_str::<Value>(v) {
                Ok(list @ Value::Array(_)) => list,
                _ => Value::Array(
                    v.split(';')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(Value::from)
                        .collect(),
                ),
            }
        } else if NUMBERS.contains(&k) {
            Value::from(v.parse::<u64>().map_err(|_| bad("a whole number"))?)
        } else if BOOLS.contains(&k) {
            Value::from(v.parse::<bool>().map_err(|_| bad("true or false"))?)
        } else {
            Value::String(v.to_string())
        };
        map.insert(k.to_string(), value);
    }
    Ok(Value::Object(map))
}

/// A path segment, percent-encoded (orbit numbers may start with `#`,
/// member URIs hold `:` and `@`).
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?dry_run=true&force=true` as asked.
pub fn flags(dry_run: bool, force: bool) -> String {
    match (dry_run, force) {
        (false, false) => String::new(),
        (true, false) => "?dry_run=true".into(),
        (false, true) => "?force=true".into(),
        (true, true) => "?dry_run=true&force=true".into(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(";"),
        Value::Object(o) if o.contains_key("kind") => {
            // A source: where it comes from.
            let kind = o["kind"].as_str().unwrap_or("");
            match (o.get("file"), o.get("line")) {
                (Some(Value::String(f)), Some(l)) => format!("{kind} {f}:{l}"),
                (Some(Value::String(f)), None) => format!("{kind} {f}"),
                _ => kind.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// Rows of `columns` (JSON keys; `a.b` reaches into an object) as an
/// aligned table with a header.
pub fn table(out: &mut impl Write, rows: &[Value], columns: &[&str]) -> std::io::Result<()> {
    let lookup = |row: &Value, col: &str| -> String {
        let mut v = row;
        for part in col.split('.') {
            v = &v[part];
        }
        cell(v)
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| lookup(r, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |out: &mut dyn Write, row: Vec<String>| -> std::io::Result<()> {
        let text: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(
        out,
        columns
            .iter()
            .map(|c| c.rsplit('.').next().unwrap_or(c).to_uppercase())
            .collect(),
    )?;
    for row in cells {
        line(out, row)?;
    }
    Ok(())
}

/// One line saying what a write changed.
pub fn summary(changes: &Value) -> String {
    let n = |k: &str| changes["orbits"][k]["count"].as_u64().unwrap_or(0);
    let list = |k: &str| {
        changes[k]
            .as_array()
            .map(|a| a.iter().map(cell).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let mut parts = vec![format!(
        "orbits +{} -{} ~{}",
        n("added"),
        n("removed"),
        n("changed")
    )];
    if !list("groups").is_empty() {
        parts.push(format!("groups {}", list("groups")));
    }
    if !list("settings").is_empty() {
        parts.push(format!("settings {}", list("settings")));
    }
    if let Some(r) = changes["recalled"].as_array().filter(|r| !r.is_empty()) {
        let calls: u64 = r.iter().filter_map(|x| x["calls"].as_u64()).sum();
        parts.push(format!("{calls} parked call(s) recalled"));
    }
    let verb = if changes["dry_run"] == json!(true) {
        "dry run, nothing applied"
    } else {
        "applied"
    };
    format!("{verb}: {}", parts.join("; "))
}

/// An import's report: one line per row, then the counts. `Err` (exit 6)
/// when a row was refused.
pub fn import_report(out: &mut impl Write, report: &Value) -> Result<(), Failure> {
    let rows = report["results"].as_array().cloned().unwrap_or_default();
    let io = |e: std::io::Error| fail(EXIT_SERVER, e.to_string());
    table(
        out,
        &rows,
        &["line", "action", "key", "status", "field", "reason"],
    )
    .map_err(io)?;
    writeln!(
        out,
        "import {}: {} rows, {} applied, {} unchanged, {} refused{}",
        report["id"],
        report["rows"],
        report["applied"],
        report["unchanged"],
        report["refused"],
        if report["dry_run"] == json!(true) {
            " (dry run: nothing applied)"
        } else {
            ""
        }
    )
    .map_err(io)?;
    if report["refused"].as_u64().unwrap_or(0) > 0 {
        return Err(fail(EXIT_REFUSED, "some rows were refused"));
    }
    Ok(())
}

/// The columns each listing shows.
pub fn columns(resource: &str) -> &'static [&'static str] {
    match resource {
        "orbits" => &[
            "number", "name", "enabled", "capacity", "parked", "music", "range", "group", "source",
        ],
        "ranges" => &["name", "start", "end", "source"],
        "groups" => &["name", "members", "destinations", "recall", "source"],
        "music" => &["name", "bytes", "used_by", "sha256"],
        "plugins" => &[
            "slot",
            "source",
            "loaded.label",
            "loaded.generation",
            "stats.calls",
            "stats.fallbacks",
            "stats.decision_p99_us",
        ],
        "imports" => &["id", "kind", "dry_run", "created_ms"],
        _ => &[],
    }
}

/// A settings section or params map as `key = value` lines.
pub fn key_values(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    let map: BTreeMap<String, Value> = value
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    for (k, v) in map {
        writeln!(out, "{k} = {}", cell(&v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_json_values_lists_and_strings() {
        let v = pairs(&[
            "capacity=3".into(),
            "enabled=false".into(),
            "name=vip".into(),
            "music=null".into(),
            "members=sip:a@x;sip:b@x".into(),
            "escape_key=0".into(),
        ])
        .unwrap();
        assert_eq!(
            v,
            json!({ "capacity": 3, "enabled": false, "name": "vip", "music": null,
                    "members": ["sip:a@x", "sip:b@x"], "escape_key": "0" })
        );
        assert_eq!(pairs(&["oops".into()]).unwrap_err().code, EXIT_USAGE);
        assert_eq!(
            pairs(&["capacity=two".into()]).unwrap_err().code,
            EXIT_USAGE
        );
    }

    #[test]
    fn problems_become_exit_codes() {
        let p = br#"{"status":409,"detail":"orbit 701 holds 1 parked call"}"#;
        let f = answer(409, p).unwrap_err();
        assert_eq!(f.code, EXIT_CONFLICT);
        assert!(f.message.contains("holds 1 parked call"));
        assert_eq!(answer(403, b"{}").unwrap_err().code, EXIT_AUTH);
        assert_eq!(answer(422, b"{}").unwrap_err().code, EXIT_REFUSED);
        assert_eq!(answer(503, b"{}").unwrap_err().code, EXIT_SERVER);
        assert_eq!(segment("#58"), "%2358");
        assert_eq!(segment("sip:a@b"), "sip%3Aa%40b");
    }
}
