//! Bulk CSV (docs/api.md): orbits or groups imported row by row with a
//! status per row, and exported in the same shape, so that an export
//! imported again changes nothing.
//!
//! Each row is planned on top of the rows accepted before it and validated
//! with the whole configuration, as a single API write would be; a refused
//! row leaves the others standing. The accepted rows are then committed in
//! one store transaction and applied to the engine once, so 1,000 rows
//! cost the parked calls one reconfiguration, not 1,000.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{Config, GroupConfig, OrbitConfig};
use crate::provision::{Provisioning, Stored, compose, put};
use crate::store::{Change, ObjectKind};

/// Rows one job takes at most; a file with more is refused whole.
pub const MAX_ROWS: usize = 1000;

/// The columns of an orbits CSV; `action` and `number` are required, the
/// others may be left out.
pub const ORBIT_COLUMNS: [&str; 10] = [
    "action",
    "number",
    "name",
    "enabled",
    "capacity",
    "recall_after",
    "escape_key",
    "ring_pattern",
    "music",
    "blf_state",
];

/// The columns of a groups CSV; `action` and `name` are required.
pub const GROUP_COLUMNS: [&str; 10] = [
    "action",
    "name",
    "members",
    "destinations",
    "recall",
    "hunt_group",
    "use_members_as_destinations",
    "hunt_group_wait",
    "ring_pattern",
    "recall_after",
];

/// A cell that clears a setting (a blank cell changes nothing).
pub const REMOVE: &str = "REMOVE";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Orbits,
    Groups,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Orbits => "orbits",
            Kind::Groups => "groups",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "orbits" => Some(Kind::Orbits),
            "groups" => Some(Kind::Groups),
            _ => None,
        }
    }

    fn columns(self) -> &'static [&'static str; 10] {
        match self {
            Kind::Orbits => &ORBIT_COLUMNS,
            Kind::Groups => &GROUP_COLUMNS,
        }
    }

    fn key_column(self) -> &'static str {
        match self {
            Kind::Orbits => "number",
            Kind::Groups => "name",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowStatus {
    Applied,
    Unchanged,
    Refused,
}

/// One row's outcome. `line` is the line of the file the row is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowReport {
    pub line: u64,
    pub action: String,
    pub key: String,
    pub status: RowStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A job's outcome: the counts and every row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub kind: Kind,
    pub dry_run: bool,
    pub rows: usize,
    pub applied: usize,
    pub unchanged: usize,
    pub refused: usize,
    pub results: Vec<RowReport>,
}

/// A file refused whole: nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRefused {
    /// 0 when about the file as a whole.
    pub line: u64,
    pub message: String,
}

/// What a job would do: its report, the changes of the accepted rows, and
/// the store and configuration they make.
pub struct ImportPlan {
    pub report: ImportReport,
    pub changes: Vec<Change>,
    pub stored: Stored,
    pub config: Config,
}

enum Cell<'a> {
    Blank,
    Remove,
    Value(&'a str),
}

/// A row's refusal: the field (empty: the row) and why.
type Refused = (String, String);

fn refuse(field: &str, reason: impl Into<String>) -> Refused {
    (field.to_string(), reason.into())
}

struct Row<'a> {
    header: &'a [String],
    cells: Vec<&'a str>,
}

impl Row<'_> {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        let i = self.header.iter().position(|h| h == column)?;
        Some(match self.cells[i] {
            "" => Cell::Blank,
            REMOVE => Cell::Remove,
            v => Cell::Value(v),
        })
    }
}

fn parse_bool(field: &str, v: &str) -> Result<bool, Refused> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(refuse(field, format!("`{v}` is not true or false"))),
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Lays a row's cells over `o`: blank keeps, `REMOVE` clears, a value sets.
fn orbit_cells(row: &Row, o: &mut OrbitConfig) -> Result<(), Refused> {
    fn text(row: &Row, col: &str, slot: &mut Option<String>) {
        match row.cell(col) {
            None | Some(Cell::Blank) => {}
            Some(Cell::Remove) => *slot = None,
            Some(Cell::Value(v)) => *slot = Some(v.to_string()),
        }
    }
    text(row, "name", &mut o.name);
    text(row, "recall_after", &mut o.recall_after);
    text(row, "escape_key", &mut o.escape_key);
    text(row, "ring_pattern", &mut o.ring_pattern);
    text(row, "music", &mut o.music);
    text(row, "blf_state", &mut o.blf_state);
    match row.cell("enabled") {
        None | Some(Cell::Blank) => {}
        Some(Cell::Remove) => o.enabled = None,
        Some(Cell::Value(v)) => o.enabled = Some(parse_bool("enabled", v)?),
    }
    match row.cell("capacity") {
        None | Some(Cell::Blank) => {}
        Some(Cell::Remove) => o.capacity = None,
        Some(Cell::Value(v)) => {
            o.capacity = Some(
                v.parse()
                    .map_err(|_| refuse("capacity", format!("`{v}` is not a whole number")))?,
            )
        }
    }
    Ok(())
}

fn group_cells(row: &Row, g: &mut GroupConfig) -> Result<(), Refused> {
    fn text(row: &Row, col: &str, slot: &mut Option<String>) {
        match row.cell(col) {
            None | Some(Cell::Blank) => {}
            Some(Cell::Remove) => *slot = None,
            Some(Cell::Value(v)) => *slot = Some(v.to_string()),
        }
    }
    fn items(row: &Row, col: &str, slot: &mut Vec<String>) {
        match row.cell(col) {
            None | Some(Cell::Blank) => {}
            Some(Cell::Remove) => slot.clear(),
            Some(Cell::Value(v)) => *slot = list(v),
        }
    }
    items(row, "members", &mut g.members);
    items(row, "destinations", &mut g.destinations);
    text(row, "recall", &mut g.recall);
    text(row, "hunt_group_wait", &mut g.hunt_group_wait);
    text(row, "ring_pattern", &mut g.ring_pattern);
    text(row, "recall_after", &mut g.recall_after);
    match row.cell("hunt_group") {
        None | Some(Cell::Blank) => {}
        Some(Cell::Remove) => g.hunt_group.clear(),
        Some(Cell::Value(v)) => g.hunt_group = v.to_string(),
    }
    match row.cell("use_members_as_destinations") {
        None | Some(Cell::Blank) => {}
        Some(Cell::Remove) => g.use_members_as_destinations = false,
        Some(Cell::Value(v)) => {
            g.use_members_as_destinations = parse_bool("use_members_as_destinations", v)?
        }
    }
    Ok(())
}

/// A CSV's header and its rows, each with its line.
type Records = (Vec<String>, Vec<(u64, Vec<String>)>);

/// The records of a CSV file with its header, each with its line; a file
/// that is not UTF-8, has rows of another length than its header, lacks a
/// required column or names an unknown one, or has more than `MAX_ROWS`
/// rows, is refused whole.
fn read(csv_bytes: &[u8], kind: Kind) -> Result<Records, FileRefused> {
    let whole = |message: String| FileRefused { line: 0, message };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(csv_bytes);
    let header: Vec<String> = reader
        .byte_headers()
        .map_err(|e| whole(format!("the header does not read: {e}")))?
        .iter()
        .map(|h| {
            std::str::from_utf8(h)
                .map(str::to_string)
                .map_err(|_| FileRefused {
                    line: 1,
                    message: "the header is not UTF-8 text".into(),
                })
        })
        .collect::<Result<_, _>>()?;
    let header: Vec<String> = header
        .into_iter()
        .enumerate()
        // Spreadsheets may start the file with a byte order mark.
        .map(|(i, h)| {
            if i == 0 {
                h.trim_start_matches('\u{feff}').to_string()
            } else {
                h
            }
        })
        .collect();
    for required in ["action", kind.key_column()] {
        if !header.iter().any(|h| h == required) {
            return Err(FileRefused {
                line: 1,
                message: format!(
                    "the header has no `{required}` column; a {} CSV has {}",
                    kind.name(),
                    kind.columns().join(",")
                ),
            });
        }
    }
    if let Some(unknown) = header
        .iter()
        .find(|h| !kind.columns().contains(&h.as_str()))
    {
        return Err(FileRefused {
            line: 1,
            message: format!(
                "unknown column `{unknown}`; a {} CSV has {}",
                kind.name(),
                kind.columns().join(",")
            ),
        });
    }
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        let record = record.map_err(|e| FileRefused {
            line: e.position().map_or(0, |p| p.line()),
            message: match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => format!("{len} cells where the header has {expected_len}"),
                _ => e.to_string(),
            },
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if rows.len() == MAX_ROWS {
            return Err(whole(format!(
                "more than {MAX_ROWS} rows: a job takes at most {MAX_ROWS}; split the file (nothing was applied)"
            )));
        }
        let cells = record
            .iter()
            .map(|c| std::str::from_utf8(c).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| FileRefused {
                line,
                message: "not UTF-8 text (save the file as UTF-8)".into(),
            })?;
        // A row of blank cells (a spreadsheet's trailing line) is no row.
        if cells.iter().all(String::is_empty) {
            continue;
        }
        rows.push((line, cells));
    }
    if rows.is_empty() {
        return Err(whole("the file has a header and no rows".into()));
    }
    Ok((header, rows))
}

/// Which kind a CSV is, from its header.
pub fn detect(csv_bytes: &[u8]) -> Option<Kind> {
    let first = csv_bytes.split(|b| *b == b'\n').next()?;
    let header = String::from_utf8_lossy(first);
    let columns: Vec<&str> = header
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
    if columns.contains(&"number") {
        Some(Kind::Orbits)
    } else if columns.contains(&"name") {
        Some(Kind::Groups)
    } else {
        None
    }
}

/// Plans a job: every row in order, on top of the rows accepted before
/// it. `parked` says how many calls each orbit holds: a row that would
/// remove an orbit holding calls is refused unless `force`.
pub fn plan(
    prov: &Provisioning,
    csv_bytes: &[u8],
    kind: Kind,
    parked: &HashMap<String, usize>,
    force: bool,
    dry_run: bool,
) -> Result<ImportPlan, FileRefused> {
    let (header, rows) = read(csv_bytes, kind)?;
    let stored_music: BTreeSet<String> = prov
        .store
        .music_list()
        .map_err(|e| FileRefused {
            line: 0,
            message: format!("the store failed: {e:#}"),
        })?
        .into_iter()
        .map(|m| m.name)
        .collect();
    let mut stored = prov.stored.clone();
    let mut config = prov.config.clone();
    let mut changes = Vec::new();
    let mut results = Vec::with_capacity(rows.len());
    for (line, cells) in &rows {
        let row = Row {
            header: &header,
            cells: cells.iter().map(String::as_str).collect(),
        };
        let action = match row.cell("action") {
            Some(Cell::Value(v)) => v.to_ascii_lowercase(),
            _ => String::new(),
        };
        let key = match row.cell(kind.key_column()) {
            Some(Cell::Value(v)) => v.to_string(),
            _ => String::new(),
        };
        let outcome = plan_row(
            prov,
            kind,
            &row,
            &action,
            &key,
            &stored,
            &config,
            &stored_music,
            parked,
            force,
        );
        let (status, field, reason) = match outcome {
            Ok(None) => (RowStatus::Unchanged, None, None),
            Ok(Some((change, next_stored, next_config))) => {
                changes.push(change);
                stored = next_stored;
                config = next_config;
                (RowStatus::Applied, None, None)
            }
            Err((field, reason)) => (
                RowStatus::Refused,
                (!field.is_empty()).then_some(field),
                Some(reason),
            ),
        };
        results.push(RowReport {
            line: *line,
            action,
            key,
            status,
            field,
            reason,
        });
    }
    let count = |s: RowStatus| results.iter().filter(|r| r.status == s).count();
    let report = ImportReport {
        kind,
        dry_run,
        rows: results.len(),
        applied: count(RowStatus::Applied),
        unchanged: count(RowStatus::Unchanged),
        refused: count(RowStatus::Refused),
        results,
    };
    Ok(ImportPlan {
        report,
        changes,
        stored,
        config,
    })
}

/// One row: `Ok(None)` when it changes nothing, else the change and the
/// store and configuration after it.
#[allow(clippy::too_many_arguments)]
fn plan_row(
    prov: &Provisioning,
    kind: Kind,
    row: &Row,
    action: &str,
    key: &str,
    stored: &Stored,
    config: &Config,
    stored_music: &BTreeSet<String>,
    parked: &HashMap<String, usize>,
    force: bool,
) -> Result<Option<(Change, Stored, Config)>, Refused> {
    if !matches!(action, "add" | "update" | "delete") {
        return Err(refuse(
            "action",
            format!("`{action}` is not add, update or delete"),
        ));
    }
    if key.is_empty() {
        return Err(refuse(kind.key_column(), "required"));
    }
    let object_kind = match kind {
        Kind::Orbits => ObjectKind::Orbit,
        Kind::Groups => ObjectKind::Group,
    };
    if let Some(line) = prov.file.line_of_object(object_kind, key) {
        return Err(refuse(
            kind.key_column(),
            format!(
                "configured in {} line {line}: change it there",
                prov.file.name
            ),
        ));
    }
    let change = match kind {
        Kind::Orbits => {
            let current = stored.orbits.iter().find(|o| o.number == key);
            let mut next = match (action, current) {
                ("add", Some(_)) => {
                    return Err(refuse(
                        "number",
                        format!("orbit {key} has settings already: use update"),
                    ));
                }
                ("add", None) => OrbitConfig {
                    number: key.to_string(),
                    ..OrbitConfig::default()
                },
                ("update", Some(o)) => o.clone(),
                ("update", None) if config.has_orbit(key) => OrbitConfig {
                    number: key.to_string(),
                    ..OrbitConfig::default()
                },
                ("update", None) => {
                    return Err(refuse("number", format!("no orbit {key}: use add")));
                }
                (_, None) => {
                    return Err(refuse(
                        "number",
                        format!("orbit {key} has no stored settings"),
                    ));
                }
                (_, Some(_)) => OrbitConfig::default(),
            };
            if action == "delete" {
                Change::Delete(ObjectKind::Orbit, key.to_string())
            } else {
                orbit_cells(row, &mut next)?;
                // An update that sets nothing on an orbit without settings of
                // its own would only store an empty entry.
                let empty = OrbitConfig {
                    number: key.to_string(),
                    ..OrbitConfig::default()
                };
                if current == Some(&next)
                    || (current.is_none() && action == "update" && next == empty)
                {
                    return Ok(None);
                }
                if let Some(m) = next.music.as_deref().filter(|m| !m.is_empty())
                    && !stored_music.contains(m)
                    && !Config::resolve(prov.file.dir(), m).is_file()
                {
                    return Err(refuse(
                        "music",
                        format!("no stored music `{m}` and no such file"),
                    ));
                }
                put(ObjectKind::Orbit, key, &next)
            }
        }
        Kind::Groups => {
            let current = stored.groups.iter().find(|g| g.name == key);
            let mut next = match (action, current) {
                ("add", Some(_)) => {
                    return Err(refuse("name", format!("group `{key}` exists: use update")));
                }
                ("add", None) => GroupConfig {
                    name: key.to_string(),
                    ..GroupConfig::default()
                },
                ("update", Some(g)) => g.clone(),
                (_, None) => return Err(refuse("name", format!("no group `{key}`"))),
                (_, Some(_)) => GroupConfig::default(),
            };
            if action == "delete" {
                Change::Delete(ObjectKind::Group, key.to_string())
            } else {
                group_cells(row, &mut next)?;
                if current == Some(&next) {
                    return Ok(None);
                }
                put(ObjectKind::Group, key, &next)
            }
        }
    };
    let mut next_stored = stored.clone();
    next_stored
        .apply(&change)
        .map_err(|e| refuse("", format!("{e:#}")))?;
    let next_config = compose(&prov.file, &next_stored).map_err(|r| match &r.object {
        Some((k, o)) if *k == object_kind && o == key => (r.field.clone(), r.message.clone()),
        _ => (String::new(), r.to_string()),
    })?;
    if action == "delete" && kind == Kind::Orbits {
        let holding = parked.get(key).copied().unwrap_or(0);
        if !next_config.has_orbit(key) && holding > 0 && !force {
            return Err(refuse(
                "number",
                format!(
                    "orbit {key} holds {holding} parked call(s): import with ?force=true to remove it (its calls are recalled)"
                ),
            ));
        }
    }
    Ok(Some((change, next_stored, next_config)))
}

/// The stored orbits or groups as CSV, every row an `update`: imported
/// again, each row is `unchanged`.
pub fn export(stored: &Stored, kind: Kind) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    out.write_record(kind.columns()).expect("writes to memory");
    match kind {
        Kind::Orbits => {
            for o in &stored.orbits {
                out.write_record([
                    "update".to_string(),
                    o.number.clone(),
                    opt(&o.name),
                    o.enabled.map(|b| b.to_string()).unwrap_or_default(),
                    o.capacity.map(|c| c.to_string()).unwrap_or_default(),
                    opt(&o.recall_after),
                    opt(&o.escape_key),
                    opt(&o.ring_pattern),
                    opt(&o.music),
                    opt(&o.blf_state),
                ])
                .expect("writes to memory");
            }
        }
        Kind::Groups => {
            for g in &stored.groups {
                out.write_record([
                    "update".to_string(),
                    g.name.clone(),
                    g.members.join(";"),
                    g.destinations.join(";"),
                    opt(&g.recall),
                    g.hunt_group.clone(),
                    g.use_members_as_destinations.to_string(),
                    opt(&g.hunt_group_wait),
                    opt(&g.ring_pattern),
                    opt(&g.recall_after),
                ])
                .expect("writes to memory");
            }
        }
    }
    String::from_utf8(out.into_inner().expect("writes to memory")).expect("UTF-8 in, UTF-8 out")
}
