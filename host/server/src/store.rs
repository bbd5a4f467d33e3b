//! The store (DESIGN §6): one SQLite file that keeps what administrators
//! made through the API (ranges, orbits, groups, settings sections and
//! music), so that a restart, even after kill -9, serves it again, and a
//! backup of the one file is a backup of all of it.
//!
//! WAL mode with `synchronous=NORMAL`: a committed write survives the
//! process dying; only a power loss may take the last commits. Schema
//! versions are kept in `PRAGMA user_version` and migrated at open, each
//! migration in the same transaction as its version bump, so a store is
//! always at one version or the next, never between.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, params};

/// Schema migrations; `MIGRATIONS[i]` takes a store from version `i` to
/// `i + 1`. Append only: a released migration never changes.
pub const MIGRATIONS: &[&str] = &[
    // 1: configuration objects by kind and key, in the order they were
    // made (`seq`); music files; facts about the store itself.
    "CREATE TABLE config_object (
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         seq INTEGER NOT NULL,
         body TEXT NOT NULL,
         updated_ms INTEGER NOT NULL,
         PRIMARY KEY (kind, key)
     );
     CREATE TABLE music (
         name TEXT PRIMARY KEY,
         wav BLOB NOT NULL,
         sha256 TEXT NOT NULL,
         updated_ms INTEGER NOT NULL
     );
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: music lists its size without reading the blob.
    "ALTER TABLE music ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE music SET bytes = length(wav);",
    // 3: bulk CSV import jobs and their per-row reports.
    "CREATE TABLE import_job (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         created_ms INTEGER NOT NULL,
         kind TEXT NOT NULL,
         dry_run INTEGER NOT NULL,
         report TEXT NOT NULL
     );",
    // 4: plugins uploaded through the API, one per slot.
    "CREATE TABLE plugin (
         slot TEXT PRIMARY KEY,
         wasm BLOB NOT NULL,
         sha256 TEXT NOT NULL,
         updated_ms INTEGER NOT NULL
     );",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What kind of configuration object a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Range,
    Orbit,
    Group,
    /// A settings section (`defaults`, `recall`, `features`, `access`),
    /// keyed by its name.
    Settings,
    /// A plugin slot's params, keyed by the slot (`allocator` ...).
    PluginParams,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Range => "range",
            ObjectKind::Orbit => "orbit",
            ObjectKind::Group => "group",
            ObjectKind::Settings => "settings",
            ObjectKind::PluginParams => "plugin-params",
        }
    }

    fn parse(text: &str) -> Option<ObjectKind> {
        [
            ObjectKind::Range,
            ObjectKind::Orbit,
            ObjectKind::Group,
            ObjectKind::Settings,
            ObjectKind::PluginParams,
        ]
        .into_iter()
        .find(|k| k.name() == text)
    }
}

/// One stored object: its kind, key (range or group name, orbit number,
/// section name) and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub kind: ObjectKind,
    pub key: String,
    pub body: String,
}

/// A change to apply, in one transaction with the others of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create, or replace keeping the object's place in the order.
    Put(StoredObject),
    Delete(ObjectKind, String),
}

/// A stored music file, without its audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MusicEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub updated_ms: u64,
}

pub struct Store {
    /// Behind a mutex only so that the store may be shared with the
    /// async admin handlers (a connection is `Send`, not `Sync`); one
    /// writer at a time is the provisioning lock's job.
    conn: std::sync::Mutex<Connection>,
    path: PathBuf,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (or creates) the store at `path` and migrates it to
    /// `SCHEMA_VERSION`. A file that is not a SQLite database, or one made
    /// by a newer callpark, is refused untouched.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let shown = path.display();
        let conn = Connection::open(path).with_context(|| format!("opening the store {shown}"))?;
        Store::prepare(conn, path).with_context(|| format!("the store {shown}"))
    }

    /// Opens an existing store at exactly `version`, migrating a new one
    /// only that far: what a store left by an older callpark looks like.
    pub fn create_at_version(path: &Path, version: u32) -> anyhow::Result<Store> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut conn, version)?;
        Ok(Store {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn prepare(mut conn: Connection, path: &Path) -> anyhow::Result<Store> {
        // A busy store (another process's checkpoint) is waited for, not
        // failed on.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The first statement that reads the file: "file is not a
        // database" surfaces here, before anything is written.
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context("reading the schema version (is it a SQLite database?)")?;
        if version > SCHEMA_VERSION {
            bail!(
                "schema version {version} is newer than this callpark's ({SCHEMA_VERSION}); run the newer callpark, or restore a backup"
            );
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .context("switching to WAL mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("the file system does not support WAL mode (journal_mode is {mode})");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let before = version;
        migrate(&mut conn, SCHEMA_VERSION)?;
        if before != SCHEMA_VERSION {
            tracing::info!(
                store = %path.display(),
                from = before,
                to = SCHEMA_VERSION,
                "store schema migrated"
            );
        }
        Ok(Store {
            conn: std::sync::Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> anyhow::Result<u32> {
        Ok(self
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Every configuration object, in the order each was first made.
    pub fn objects(&self) -> anyhow::Result<Vec<StoredObject>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT kind, key, body FROM config_object ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, key, body) = row?;
            let Some(kind) = ObjectKind::parse(&kind) else {
                bail!("config_object has an unknown kind `{kind}` (key `{key}`)");
            };
            out.push(StoredObject { kind, key, body });
        }
        Ok(out)
    }

    /// Applies `changes` in one transaction: all of them or none.
    pub fn apply(&mut self, changes: &[Change]) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        for change in changes {
            match change {
                Change::Put(object) => {
                    let updated = tx.execute(
                        "UPDATE config_object SET body = ?3, updated_ms = ?4 WHERE kind = ?1 AND key = ?2",
                        params![object.kind.name(), object.key, object.body, now],
                    )?;
                    if updated == 0 {
                        tx.execute(
                            "INSERT INTO config_object (kind, key, seq, body, updated_ms)
                             VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM config_object), ?3, ?4)",
                            params![object.kind.name(), object.key, object.body, now],
                        )?;
                    }
                }
                Change::Delete(kind, key) => {
                    tx.execute(
                        "DELETE FROM config_object WHERE kind = ?1 AND key = ?2",
                        params![kind.name(), key],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn music_list(&self) -> anyhow::Result<Vec<MusicEntry>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT name, bytes, sha256, updated_ms FROM music ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(MusicEntry {
                name: r.get(0)?,
                bytes: r.get::<_, i64>(1)? as u64,
                sha256: r.get(2)?,
                updated_ms: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn music(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row("SELECT wav FROM music WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn put_music(&mut self, name: &str, wav: &[u8], sha256: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO music (name, wav, sha256, updated_ms, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET wav = excluded.wav, sha256 = excluded.sha256,
                 updated_ms = excluded.updated_ms, bytes = excluded.bytes",
            params![name, wav, sha256, now_ms(), wav.len() as i64],
        )?;
        Ok(())
    }

    /// Whether it was there.
    pub fn delete_music(&mut self, name: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM music WHERE name = ?1", [name])?
            > 0)
    }
}

impl Store {
    /// Keeps an import job's report; returns its id.
    pub fn add_import(&mut self, kind: &str, dry_run: bool, report: &str) -> anyhow::Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO import_job (created_ms, kind, dry_run, report) VALUES (?1, ?2, ?3, ?4)",
            params![now_ms(), kind, dry_run, report],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn import(&self, id: i64) -> anyhow::Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT report FROM import_job WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The newest import jobs first: (id, created_ms, kind, dry_run).
    pub fn imports(&self, limit: u32) -> anyhow::Result<Vec<(i64, u64, String, bool)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, created_ms, kind, dry_run FROM import_job ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// The stored plugins: (slot, wasm).
    pub fn plugins(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT slot, wasm FROM plugin ORDER BY slot")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn put_plugin(&mut self, slot: &str, wasm: &[u8], sha256: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO plugin (slot, wasm, sha256, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (slot) DO UPDATE SET wasm = excluded.wasm, sha256 = excluded.sha256,
                 updated_ms = excluded.updated_ms",
            params![slot, wasm, sha256, now_ms()],
        )?;
        Ok(())
    }

    /// Whether it was there.
    pub fn delete_plugin(&mut self, slot: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM plugin WHERE slot = ?1", [slot])?
            > 0)
    }
}

/// Applies the migrations from the store's version up to `target`.
fn migrate(conn: &mut Connection, target: u32) -> anyhow::Result<()> {
    loop {
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version >= target {
            return Ok(());
        }
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[version as usize])
            .with_context(|| format!("migrating the schema from version {version}"))?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))?;
        tx.commit()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: ObjectKind, key: &str, body: &str) -> StoredObject {
        StoredObject {
            kind,
            key: key.into(),
            body: body.into(),
        }
    }

    #[test]
    fn objects_keep_their_order_across_replace_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callpark.db");
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        store
            .apply(&[
                Change::Put(object(ObjectKind::Range, "a", "{}")),
                Change::Put(object(ObjectKind::Range, "b", "{}")),
            ])
            .unwrap();
        store
            .apply(&[Change::Put(object(ObjectKind::Range, "a", "{\"x\":1}"))])
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        let keys: Vec<_> = store
            .objects()
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.body))
            .collect();
        assert_eq!(
            keys,
            vec![("a".into(), "{\"x\":1}".into()), ("b".into(), "{}".into())]
        );
    }

    #[test]
    fn a_version_1_store_is_migrated_with_its_music() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callpark.db");
        let old = Store::create_at_version(&path, 1).unwrap();
        old.conn()
            .execute(
                "INSERT INTO music (name, wav, sha256, updated_ms) VALUES ('m', x'0102030405', 'h', 1)",
                [],
            )
            .unwrap();
        drop(old);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(store.music_list().unwrap()[0].bytes, 5);
        assert_eq!(store.music("m").unwrap().unwrap(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callpark.db");
        let junk = b"\x89PNG\r\n\x1a\n not a database at all, just bytes".repeat(200);
        std::fs::write(&path, &junk).unwrap();
        let err = Store::open(&path).err().expect("refused");
        assert!(format!("{err:#}").contains("not a database"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }
}
