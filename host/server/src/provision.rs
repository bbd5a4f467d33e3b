//! The provisioning model (DESIGN §5): the configuration file and the
//! store side by side, each range, orbit, group and settings section from
//! exactly one of them.
//!
//! What the file names is the file's: read-only through the API. The rest
//! is made through the API and kept in the store. The effective
//! configuration is the file's with the store's objects added after it
//! (ranges, orbits and groups) or in place of the built-in defaults
//! (settings sections the file does not name), validated as a whole by the
//! same validator `callpark check` uses; a clash (the same orbit or name
//! in both) is refused like any bad configuration.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use callpark_engine::MusicLibrary;
use callpark_media::Music;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{
    AccessConfig, Config, ConfigError, FeaturesConfig, GroupConfig, OrbitConfig, OrbitDefaults,
    PathPart, RangeConfig, RecallConfig,
};
use crate::store::{Change, ObjectKind, Store, StoredObject};

/// The settings sections the API may own, in the order they are shown.
pub const SECTIONS: [&str; 4] = ["defaults", "recall", "features", "access"];

/// The largest music file the store takes (a minute of 48 kHz 16-bit
/// stereo is 11 MB; hold music is resampled to 8 kHz at load anyway).
pub const MAX_MUSIC_BYTES: usize = 16 << 20;

/// The configuration file (or the embedded default) as read.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// How errors name it: the path, or `<embedded default>`.
    pub name: String,
    pub path: Option<PathBuf>,
    /// The text, for lines; empty for the embedded default, which names
    /// nothing the API could not change.
    text: String,
    /// The top-level keys the text names.
    named: BTreeSet<String>,
    pub config: Config,
}

impl FileSource {
    pub fn embedded() -> FileSource {
        FileSource {
            name: "<embedded default>".into(),
            path: None,
            text: String::new(),
            named: BTreeSet::new(),
            config: Config::embedded(),
        }
    }

    /// Reads and validates a file on its own.
    pub fn load(path: &Path) -> Result<FileSource, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            line: 0,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        let config = Config::parse(&text, &name)?;
        let named = toml_edit::Document::parse(text.as_str())
            .map(|doc| doc.as_table().iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default();
        Ok(FileSource {
            name,
            path: Some(path.to_path_buf()),
            text,
            named,
            config,
        })
    }

    /// Whether the file names a top-level key (`range`, `orbit`, `group`,
    /// a settings section).
    pub fn names(&self, key: &str) -> bool {
        self.named.contains(key)
    }

    /// Whether the file names `[plugins.params.<slot>]`.
    pub fn names_params(&self, slot: &str) -> bool {
        self.names("plugins")
            && toml_edit::Document::parse(self.text.as_str()).is_ok_and(|doc| {
                doc.get("plugins")
                    .and_then(|p| p.get("params"))
                    .and_then(|p| p.get(slot))
                    .is_some()
            })
    }

    /// The line of a field of the file, 0 when not there.
    fn line(&self, path: &[PathPart]) -> usize {
        crate::config::locate(&self.text, path)
    }

    /// The folder relative paths resolve against.
    pub fn dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// The line of the file's `[[kind]]` table whose `field` is `value`,
    /// if the file names one: what a 409 for a read-only object cites.
    pub fn line_of_object(&self, kind: ObjectKind, value: &str) -> Option<usize> {
        let (key, list): (&'static str, Vec<&str>) = match kind {
            ObjectKind::Range if self.names("range") => (
                "range",
                self.config.range.iter().map(|r| r.name.as_str()).collect(),
            ),
            ObjectKind::Orbit => (
                "orbit",
                self.config
                    .orbit
                    .iter()
                    .map(|o| o.number.as_str())
                    .collect(),
            ),
            ObjectKind::Group => (
                "group",
                self.config.group.iter().map(|g| g.name.as_str()).collect(),
            ),
            ObjectKind::Settings => {
                let key = section_key(value)?;
                return self.names(value).then(|| self.line(&[PathPart::Key(key)]));
            }
            ObjectKind::PluginParams => {
                let slot = ["allocator", "recall", "dialing", "events"]
                    .into_iter()
                    .find(|s| *s == value)?;
                return self.names_params(slot).then(|| {
                    self.line(&[
                        PathPart::Key("plugins"),
                        PathPart::Key("params"),
                        PathPart::Key(slot),
                    ])
                });
            }
            _ => return None,
        };
        let i = list.iter().position(|v| *v == value)?;
        Some(self.line(&[PathPart::Key(key), PathPart::Index(i)]))
    }
}

fn section_key(name: &str) -> Option<&'static str> {
    SECTIONS.into_iter().find(|s| *s == name)
}

/// What the store holds, typed, in the order it was made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub ranges: Vec<RangeConfig>,
    pub orbits: Vec<OrbitConfig>,
    pub groups: Vec<GroupConfig>,
    pub defaults: Option<OrbitDefaults>,
    pub recall: Option<RecallConfig>,
    pub features: Option<FeaturesConfig>,
    pub access: Option<AccessConfig>,
    /// Params of plugin slots, by slot name, for the slots whose
    /// `[plugins.params.*]` table the file does not name.
    pub plugin_params:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

fn body<T: DeserializeOwned>(object: &StoredObject) -> anyhow::Result<T> {
    serde_json::from_str(&object.body).with_context(|| {
        format!(
            "the stored {} `{}` does not read",
            object.kind.name(),
            object.key
        )
    })
}

/// Puts `value` in place of the entry `key_of` says is `key`, or at the
/// end.
fn upsert<T>(list: &mut Vec<T>, value: T, key: &str, key_of: impl Fn(&T) -> &str) {
    match list.iter().position(|v| key_of(v) == key) {
        Some(i) => list[i] = value,
        None => list.push(value),
    }
}

impl Stored {
    pub fn from_objects(objects: &[StoredObject]) -> anyhow::Result<Stored> {
        let mut stored = Stored::default();
        for object in objects {
            stored.apply(&Change::Put(object.clone()))?;
        }
        Ok(stored)
    }

    /// The same change `Store::apply` makes, on the typed objects.
    pub fn apply(&mut self, change: &Change) -> anyhow::Result<()> {
        match change {
            Change::Put(o) => match o.kind {
                ObjectKind::Range => upsert(&mut self.ranges, body(o)?, &o.key, |r| &r.name),
                ObjectKind::Orbit => upsert(&mut self.orbits, body(o)?, &o.key, |r| &r.number),
                ObjectKind::Group => upsert(&mut self.groups, body(o)?, &o.key, |r| &r.name),
                ObjectKind::Settings => match o.key.as_str() {
                    "defaults" => self.defaults = Some(body(o)?),
                    "recall" => self.recall = Some(body(o)?),
                    "features" => self.features = Some(body(o)?),
                    "access" => self.access = Some(body(o)?),
                    other => anyhow::bail!("no settings section `{other}`"),
                },
                ObjectKind::PluginParams => {
                    self.plugin_params.insert(o.key.clone(), body(o)?);
                }
            },
            Change::Delete(kind, key) => match kind {
                ObjectKind::Range => self.ranges.retain(|r| &r.name != key),
                ObjectKind::Orbit => self.orbits.retain(|r| &r.number != key),
                ObjectKind::Group => self.groups.retain(|r| &r.name != key),
                ObjectKind::Settings => match key.as_str() {
                    "defaults" => self.defaults = None,
                    "recall" => self.recall = None,
                    "features" => self.features = None,
                    "access" => self.access = None,
                    _ => {}
                },
                ObjectKind::PluginParams => {
                    self.plugin_params.remove(key);
                }
            },
        }
        Ok(())
    }

    /// Whether the store has a settings section of its own.
    pub fn has_section(&self, name: &str) -> bool {
        match name {
            "defaults" => self.defaults.is_some(),
            "recall" => self.recall.is_some(),
            "features" => self.features.is_some(),
            "access" => self.access.is_some(),
            _ => false,
        }
    }
}

/// A change that puts `value` as the object `kind`/`key`.
pub fn put(kind: ObjectKind, key: &str, value: &impl Serialize) -> Change {
    Change::Put(StoredObject {
        kind,
        key: key.to_string(),
        body: serde_json::to_string(value).expect("configuration objects serialize"),
    })
}

/// Why a composed configuration was refused: in a stored object (its kind
/// and key, and the field within it) or in the file (its line and the
/// field's full path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub object: Option<(ObjectKind, String)>,
    pub file: Option<String>,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((kind, key)) = &self.object {
            write!(f, "stored {} `{key}`", kind.name())?;
        } else if let Some(file) = &self.file {
            f.write_str(file)?;
            if self.line > 0 {
                write!(f, ":{}", self.line)?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl From<ConfigError> for Refusal {
    fn from(e: ConfigError) -> Refusal {
        Refusal {
            object: None,
            file: Some(e.file),
            line: e.line,
            field: e.field,
            message: e.message,
        }
    }
}

/// The effective configuration of a file and a store, validated whole.
pub fn compose(file: &FileSource, stored: &Stored) -> Result<Config, Refusal> {
    let mut c = file.config.clone();
    // A file without `[[range]]` gets no default range here: the store
    // was given it when it was made (see `Provisioning::open`).
    if !file.names("range") {
        c.range.clear();
    }
    let (file_ranges, file_orbits, file_groups) = (c.range.len(), c.orbit.len(), c.group.len());
    c.range.extend(stored.ranges.iter().cloned());
    c.orbit.extend(stored.orbits.iter().cloned());
    c.group.extend(stored.groups.iter().cloned());
    if !file.names("defaults")
        && let Some(s) = &stored.defaults
    {
        c.defaults = s.clone();
    }
    if !file.names("recall")
        && let Some(s) = &stored.recall
    {
        c.recall = s.clone();
    }
    if !file.names("features")
        && let Some(s) = &stored.features
    {
        c.features = s.clone();
    }
    if !file.names("access")
        && let Some(s) = &stored.access
    {
        c.access = s.clone();
    }
    for (slot, params) in &stored.plugin_params {
        if file.names_params(slot) {
            continue;
        }
        let table = params
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
            .collect();
        match slot.as_str() {
            "allocator" => c.plugins.params.allocator = table,
            "recall" => c.plugins.params.recall = table,
            "dialing" => c.plugins.params.dialing = table,
            "events" => c.plugins.params.events = table,
            _ => {}
        }
    }
    let Err((path, message)) = c.validate() else {
        return Ok(c);
    };
    // Which source the refused field is in.
    let stored_object = match path.as_slice() {
        [PathPart::Key("range"), PathPart::Index(i), ..] if *i >= file_ranges => Some((
            ObjectKind::Range,
            stored.ranges[i - file_ranges].name.clone(),
            2,
        )),
        [PathPart::Key("orbit"), PathPart::Index(i), ..] if *i >= file_orbits => Some((
            ObjectKind::Orbit,
            stored.orbits[i - file_orbits].number.clone(),
            2,
        )),
        [PathPart::Key("group"), PathPart::Index(i), ..] if *i >= file_groups => Some((
            ObjectKind::Group,
            stored.groups[i - file_groups].name.clone(),
            2,
        )),
        [PathPart::Key(section), ..]
            if SECTIONS.contains(section)
                && !file.names(section)
                && stored.has_section(section) =>
        {
            Some((ObjectKind::Settings, section.to_string(), 1))
        }
        _ => None,
    };
    Err(match stored_object {
        Some((kind, key, skip)) => Refusal {
            object: Some((kind, key)),
            file: None,
            line: 0,
            field: crate::config::render_path(&path[skip..]),
            message,
        },
        None => Refusal {
            object: None,
            file: Some(file.name.clone()),
            line: file.line(&path),
            field: crate::config::render_path(&path),
            message,
        },
    })
}

/// Where an object of the effective configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    File {
        file: String,
        line: usize,
    },
    Store,
    /// A settings section neither names: the built-in defaults.
    Default,
}

/// Names a stored music file may have: plain, so an orbit's `music` that
/// is one is never taken for a path.
pub fn check_music_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("a music name is 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit".into())
    }
}

/// Decoded music by the key a configuration names it with, and what the
/// decoding was made from (a stored file's digest, or a file's size and
/// time): a write that leaves a file alone does not decode it again, and
/// keeps its `Music` handle, so that the engine sees it did not change.
#[derive(Default)]
struct MusicCache {
    by_key: HashMap<String, (String, Music)>,
}

/// The file and the store side by side, and the configuration they make.
pub struct Provisioning {
    pub file: FileSource,
    pub store: Store,
    pub stored: Stored,
    /// The effective configuration last applied.
    pub config: Config,
    /// Its park lot, built once: writes diff against it and the engine
    /// is handed the next one.
    pub lot: callpark_core::lot::ParkLot,
    /// Where the store and the first-start token live.
    pub data_dir: PathBuf,
    music: MusicCache,
}

/// What the store is first given when the file names no `[[range]]`: the
/// default range, which the administrator may then change or remove.
fn seed_range() -> RangeConfig {
    Config::default().range.remove(0)
}

impl Provisioning {
    /// Opens the store the file's `[store] path` names (default:
    /// `callpark.db` in the data folder) and composes the effective
    /// configuration.
    pub fn open(file: FileSource) -> anyhow::Result<Provisioning> {
        let data_dir = file
            .dir()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let path = match file.config.store.path.as_str() {
            "" => data_dir.join("callpark.db"),
            p => Config::resolve(file.dir(), p),
        };
        let mut store = Store::open(&path)?;
        if store.meta("seeded")?.is_none() {
            if !file.names("range") && !store.objects()?.iter().any(|o| o.kind == ObjectKind::Range)
            {
                let main = seed_range();
                store.apply(&[put(ObjectKind::Range, &main.name, &main)])?;
            }
            store.set_meta("seeded", "1")?;
        }
        let stored = Stored::from_objects(&store.objects()?)
            .with_context(|| format!("the store {}", path.display()))?;
        let config = compose(&file, &stored).map_err(|e| {
            anyhow::anyhow!(
                "{e} (the file {} and the store {} do not fit together)",
                file.name,
                path.display()
            )
        })?;
        tracing::info!(store = %path.display(), file = %file.name, "configuration store open");
        Ok(Provisioning {
            file,
            store,
            stored,
            lot: config.lot(),
            config,
            data_dir,
            music: MusicCache::default(),
        })
    }

    /// The configuration `changes` would make, validated; nothing is
    /// applied or stored.
    pub fn plan(&self, changes: &[Change]) -> Result<(Stored, Config), Refusal> {
        let mut stored = self.stored.clone();
        for change in changes {
            stored.apply(change).map_err(|e| Refusal {
                object: None,
                file: None,
                line: 0,
                field: String::new(),
                message: format!("{e:#}"),
            })?;
        }
        let config = compose(&self.file, &stored)?;
        Ok((stored, config))
    }

    /// Commits `changes` to the store (one transaction) and takes the
    /// configuration they make as the effective one.
    pub fn commit(
        &mut self,
        changes: &[Change],
        stored: Stored,
        config: Config,
        lot: callpark_core::lot::ParkLot,
    ) -> anyhow::Result<()> {
        self.store.apply(changes)?;
        self.stored = stored;
        // Decoded music no longer named is let go.
        let used: BTreeSet<&str> = std::iter::once(config.media.music.as_str())
            .chain(config.orbit.iter().filter_map(|o| o.music.as_deref()))
            .collect();
        self.music.by_key.retain(|k, _| used.contains(k.as_str()));
        self.config = config;
        self.lot = lot;
        Ok(())
    }

    /// Where an object of the effective configuration comes from.
    pub fn source_of(&self, kind: ObjectKind, key: &str) -> Source {
        if let Some(line) = self.file.line_of_object(kind, key) {
            return Source::File {
                file: self.file.name.clone(),
                line,
            };
        }
        let stored = match kind {
            ObjectKind::Range => self.stored.ranges.iter().any(|r| r.name == key),
            ObjectKind::Orbit => self.stored.orbits.iter().any(|o| o.number == key),
            ObjectKind::Group => self.stored.groups.iter().any(|g| g.name == key),
            ObjectKind::Settings => self.stored.has_section(key),
            ObjectKind::PluginParams => self.stored.plugin_params.contains_key(key),
        };
        if stored {
            Source::Store
        } else {
            Source::Default
        }
    }

    /// The music library of `config`: an orbit's `music` that names a
    /// stored music file plays it, any other is a path relative to the
    /// configuration file. Unchanged files are not decoded again.
    pub fn music_library(&mut self, config: &Config) -> anyhow::Result<MusicLibrary> {
        let stored: HashMap<String, String> = self
            .store
            .music_list()?
            .into_iter()
            .map(|m| (m.name, m.sha256))
            .collect();
        let dir = self.file.dir().map(Path::to_path_buf);
        let store = &self.store;
        let cache = &mut self.music;
        let library = crate::serve::music_library_with(config, |key| {
            let (fingerprint, from_store) = match stored.get(key) {
                Some(sha) => (format!("store:{sha}"), true),
                None => {
                    let path = Config::resolve(dir.as_deref(), key);
                    let meta = std::fs::metadata(&path)
                        .with_context(|| format!("reading music {}", path.display()))?;
                    (
                        format!("file:{}:{:?}", meta.len(), meta.modified().ok()),
                        false,
                    )
                }
            };
            if let Some((f, music)) = cache.by_key.get(key)
                && *f == fingerprint
            {
                return Ok(music.clone());
            }
            let music = if from_store {
                let wav = store
                    .music(key)?
                    .with_context(|| format!("stored music `{key}` is gone"))?;
                Music::from_wav(key, &wav)?
            } else {
                crate::serve::load_music(&Config::resolve(dir.as_deref(), key))?
            };
            cache
                .by_key
                .insert(key.to_string(), (fingerprint, music.clone()));
            Ok(music)
        })?;
        Ok(library)
    }

    /// Re-reads the configuration file and composes it with the store:
    /// what SIGHUP and `config:reload` apply. `Ok(None)` without a file.
    pub fn reread_file(&self) -> Result<Option<(FileSource, Config)>, Refusal> {
        let Some(path) = &self.file.path else {
            return Ok(None);
        };
        let file = FileSource::load(path)?;
        let config = compose(&file, &self.stored)?;
        Ok(Some((file, config)))
    }

    /// The orbits of the running lot that `after` no longer has: what a
    /// write would take away (and the calls parked there with it).
    pub fn orbits_removed(&self, after: &callpark_core::lot::ParkLot) -> BTreeSet<String> {
        self.lot
            .orbits()
            .iter()
            .filter(|o| after.orbit(&o.number).is_none())
            .map(|o| o.number.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, FileSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("park.toml");
        std::fs::write(&path, text).unwrap();
        let f = FileSource::load(&path).unwrap();
        (dir, f)
    }

    fn range(name: &str, start: &str, end: &str) -> RangeConfig {
        RangeConfig {
            name: name.into(),
            start: start.into(),
            end: end.into(),
        }
    }

    #[test]
    fn the_store_adds_to_the_file_and_clashes_are_refused_naming_the_object() {
        let (_d, f) = file("[[range]]\nname = \"main\"\nstart = \"701\"\nend = \"710\"\n");
        let mut stored = Stored {
            ranges: vec![range("sales", "800", "809")],
            ..Stored::default()
        };
        let c = compose(&f, &stored).unwrap();
        assert_eq!(c.lot().orbits().len(), 20);
        stored.ranges.push(range("clash", "705", "799"));
        let e = compose(&f, &stored).unwrap_err();
        assert_eq!(e.object, Some((ObjectKind::Range, "clash".into())));
        assert_eq!(
            e.to_string(),
            "stored range `clash`: start: overlaps range `main`"
        );
        // A stored orbit the file configures too.
        let (_d, f) = file("[[orbit]]\nnumber = \"745\"\ncapacity = 2\n");
        let stored = Stored {
            ranges: vec![range("main", "701", "750")],
            orbits: vec![OrbitConfig {
                number: "745".into(),
                ..OrbitConfig::default()
            }],
            ..Stored::default()
        };
        let e = compose(&f, &stored).unwrap_err();
        assert_eq!(e.object, Some((ObjectKind::Orbit, "745".into())), "{e}");
        assert_eq!(f.line_of_object(ObjectKind::Orbit, "745"), Some(1));
    }

    #[test]
    fn settings_come_from_the_file_when_it_names_them_else_the_store() {
        let (_d, f) = file(
            "[recall]\nmax_attempts = 3\n[[range]]\nname = \"m\"\nstart = \"1\"\nend = \"2\"\n",
        );
        let stored = Stored {
            recall: Some(RecallConfig {
                max_attempts: 7,
                ..RecallConfig::default()
            }),
            defaults: Some(OrbitDefaults {
                capacity: 4,
                ..OrbitDefaults::default()
            }),
            ..Stored::default()
        };
        let c = compose(&f, &stored).unwrap();
        assert_eq!(c.recall.max_attempts, 3, "the file names [recall]");
        assert_eq!(c.defaults.capacity, 4, "the file does not name [defaults]");
        let bad = Stored {
            defaults: Some(OrbitDefaults {
                capacity: 0,
                ..OrbitDefaults::default()
            }),
            ..Stored::default()
        };
        let e = compose(&f, &bad).unwrap_err();
        assert_eq!(e.object, Some((ObjectKind::Settings, "defaults".into())));
        assert_eq!(e.field, "capacity");
    }

    #[test]
    fn a_store_made_for_a_file_without_ranges_is_given_the_default_range_once() {
        let (d, f) = file("[media]\nmusic_on_hold = false\n");
        let p = Provisioning::open(f.clone()).unwrap();
        assert_eq!(p.stored.ranges, vec![seed_range()]);
        assert_eq!(p.config.lot().orbits().len(), 50);
        assert_eq!(p.source_of(ObjectKind::Range, "main"), Source::Store);
        assert_eq!(p.source_of(ObjectKind::Settings, "media"), Source::Default);
        // Removed by the administrator (another range first), it stays gone.
        let mut p = p;
        let changes = vec![
            put(ObjectKind::Range, "b", &range("b", "800", "801")),
            Change::Delete(ObjectKind::Range, "main".into()),
        ];
        let (stored, config) = p.plan(&changes).unwrap();
        let lot = config.lot();
        p.commit(&changes, stored, config, lot).unwrap();
        drop(p);
        let p = Provisioning::open(f).unwrap();
        assert_eq!(p.stored.ranges, vec![range("b", "800", "801")]);
        drop(d);
    }
}
