//! Loading the configured plugins, and reloading them when their files
//! change or the process gets SIGHUP. Loads run on blocking threads, off the
//! decision path; a refused plugin leaves the previous one serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use callpark_core::{Decision, Params};
use callpark_policy::{ArtifactStore, LoadReport, PluginSource, PolicyRuntime, digest, embedded};
use notify::Watcher;

use crate::config::{Config, PluginsConfig, parse_on_failure};

/// Compiled plugins in a directory, one file per cache key.
pub struct DirArtifactStore {
    dir: PathBuf,
}

impl DirArtifactStore {
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating plugin cache {}", dir.display()))?;
        Ok(DirArtifactStore { dir })
    }
}

impl ArtifactStore for DirArtifactStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(format!("{key}.cwasm"))).ok()
    }

    fn put(&self, key: &str, artifact: &[u8]) {
        // Write then rename, so a reader never sees half an artifact.
        let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        let done = self.dir.join(format!("{key}.cwasm"));
        if let Err(e) = std::fs::write(&tmp, artifact).and_then(|_| std::fs::rename(&tmp, &done)) {
            tracing::warn!(cache = %self.dir.display(), "could not store a compiled plugin: {e}");
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The compiled-plugin cache's folder in the data folder when `cache_dir`
/// is not set.
pub const DEFAULT_CACHE_DIR: &str = "plugin-cache";

/// Where a slot's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginOrigin {
    Embedded,
    File(PathBuf),
    /// Uploaded through the admin API and kept in the store.
    Stored(Arc<[u8]>),
}

#[derive(Debug, Clone)]
struct SlotSetup {
    decision: Decision,
    origin: PluginOrigin,
    params: Params,
    /// Digest and params of what was loaded last, to skip no-op reloads.
    loaded: Option<(String, Params)>,
}

/// The configured plugins of a running server and their runtime.
pub struct PluginSupervisor {
    runtime: Arc<PolicyRuntime>,
    slots: Mutex<Vec<SlotSetup>>,
    watch: std::sync::atomic::AtomicBool,
    /// Held for a whole reload, and a reload reads its slot's setup only
    /// once it holds it: of two reloads racing (a file event and SIGHUP, or
    /// SIGHUP and a new configuration), the later always loads the latest
    /// setup, never an older one over a newer.
    reloading: Mutex<()>,
    /// Tells the watcher that the plugin files (or `watch`) changed.
    rewatch: tokio::sync::Notify,
    /// `[plugins]` as at start: its `timeout`, `memory` and `cache_dir`
    /// built the runtime and hold until a restart.
    at_start: PluginsConfig,
    /// Plugins uploaded through the admin API, by slot: what a slot runs
    /// when the configuration names no file for it.
    stored: Mutex<std::collections::HashMap<Decision, Arc<[u8]>>>,
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Swapped(LoadReport),
    Unchanged,
    Refused(String),
}

impl PluginSupervisor {
    /// Builds the runtime from `[plugins]` and loads every slot. At start-up
    /// a plugin that does not load is an error: a server must not come up
    /// silently on a policy other than the one configured.
    pub fn start(config: &Config, config_dir: Option<&Path>) -> anyhow::Result<Arc<Self>> {
        PluginSupervisor::start_with(config, config_dir, Default::default())
    }

    /// `start`, with the plugins the store keeps (`stored`) for the slots
    /// the configuration names no file for.
    pub fn start_with(
        config: &Config,
        config_dir: Option<&Path>,
        stored: std::collections::HashMap<Decision, Arc<[u8]>>,
    ) -> anyhow::Result<Arc<Self>> {
        let pl = &config.plugins;
        let limits = config.plugin_limits()?;
        // Compiled plugins persist by default, in the data folder: a
        // restart or a reload of a 12 MB Python or JavaScript component
        // does not compile it again. `cache_dir = "off"` keeps them in
        // memory only.
        let artifacts: Option<Arc<dyn ArtifactStore>> = match pl.cache_dir.as_str() {
            "off" => None,
            "" => Some(Arc::new(DirArtifactStore::new(
                config_dir
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                    .join(DEFAULT_CACHE_DIR),
            )?)),
            dir => Some(Arc::new(DirArtifactStore::new(Config::resolve(
                config_dir, dir,
            ))?)),
        };
        let runtime = Arc::new(PolicyRuntime::new(limits, artifacts)?);
        let on_failure = parse_on_failure(&pl.on_failure).map_err(anyhow::Error::msg)?;
        let mut slots = Vec::new();
        for (decision, params) in config.plugin_params() {
            runtime.set_on_failure(decision, on_failure);
            slots.push(SlotSetup {
                decision,
                origin: origin_of(config, config_dir, decision, stored.get(&decision)),
                params,
                loaded: None,
            });
        }
        let supervisor = Arc::new(PluginSupervisor {
            runtime,
            slots: Mutex::new(slots),
            watch: std::sync::atomic::AtomicBool::new(pl.watch),
            reloading: Mutex::new(()),
            rewatch: tokio::sync::Notify::new(),
            at_start: pl.clone(),
            stored: Mutex::new(stored),
        });
        supervisor
            .runtime
            .grant_http(Decision::Events, &pl.events_http);
        for decision in Decision::SLOTS {
            match supervisor.reload(decision) {
                ReloadOutcome::Refused(why) => {
                    anyhow::bail!(
                        "plugins.{decision}: {why} (the server does not start with a plugin it cannot load)"
                    )
                }
                ReloadOutcome::Swapped(_) | ReloadOutcome::Unchanged => {}
            }
        }
        Ok(supervisor)
    }

    pub fn runtime(&self) -> &Arc<PolicyRuntime> {
        &self.runtime
    }

    /// Takes the `[plugins]` settings of a configuration re-read at run time
    /// (SIGHUP): plugin files, params, `on_failure` and `watch`. Call
    /// `reload_all` after it; slots whose file and params are unchanged stay
    /// as they are. The runtime's limits and cache (`timeout`, `memory`,
    /// `cache_dir`) are fixed at start: a change is logged and waits for a
    /// restart.
    pub fn reconfigure(&self, config: &Config, config_dir: Option<&Path>) {
        let pl = &config.plugins;
        if self.at_start.limits != pl.limits {
            tracing::warn!(
                field = "plugins.limits",
                "per-slot limits take effect at the next restart"
            );
        }
        for (field, was, now) in [
            ("timeout", &self.at_start.timeout, &pl.timeout),
            ("memory", &self.at_start.memory, &pl.memory),
            ("cache_dir", &self.at_start.cache_dir, &pl.cache_dir),
        ] {
            if was != now {
                tracing::warn!(
                    field = %format!("plugins.{field}"),
                    running = %was,
                    configured = %now,
                    "this setting takes effect at the next restart"
                );
            }
        }
        self.runtime.grant_http(Decision::Events, &pl.events_http);
        if let Ok(on_failure) = parse_on_failure(&pl.on_failure) {
            for decision in Decision::SLOTS {
                self.runtime.set_on_failure(decision, on_failure);
            }
        }
        {
            let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            for (decision, params) in config.plugin_params() {
                if let Some(slot) = slots.iter_mut().find(|s| s.decision == decision) {
                    slot.origin = origin_of(config, config_dir, decision, stored.get(&decision));
                    slot.params = params;
                }
            }
        }
        self.watch
            .store(pl.watch, std::sync::atomic::Ordering::Relaxed);
        self.rewatch.notify_one();
    }

    /// The plugin files being watched.
    pub fn watched_files(&self) -> Vec<(Decision, PathBuf)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter_map(|s| match &s.origin {
                PluginOrigin::File(p) => Some((s.decision, p.clone())),
                PluginOrigin::Embedded | PluginOrigin::Stored(_) => None,
            })
            .collect()
    }

    /// Re-reads a slot's plugin and swaps it in if it changed. Blocking:
    /// call it from a blocking thread.
    pub fn reload(&self, decision: Decision) -> ReloadOutcome {
        let _reloading = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let setup = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.iter().find(|s| s.decision == decision) {
                Some(s) => s.clone(),
                None => return ReloadOutcome::Unchanged,
            }
        };
        let source = match &setup.origin {
            PluginOrigin::Embedded => match embedded::default_plugin(decision) {
                Some(source) => source,
                // A slot with no default (events): nothing configured, so
                // nothing serves.
                None => {
                    if setup.loaded.is_some() {
                        self.runtime.unload(decision);
                        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(s) = slots.iter_mut().find(|s| s.decision == decision) {
                            s.loaded = None;
                        }
                    }
                    return ReloadOutcome::Unchanged;
                }
            },
            PluginOrigin::Stored(wasm) => {
                PluginSource::new(format!("store:{decision}"), wasm.clone())
            }
            PluginOrigin::File(path) => match std::fs::read(path) {
                Ok(wasm) => PluginSource::new(path.display().to_string(), wasm),
                Err(e) => {
                    let why = format!("cannot read {}: {e}", path.display());
                    // At start nothing serves yet: `start` says what happens.
                    if setup.loaded.is_some() {
                        tracing::warn!(plugin = %path.display(), %decision, error = %why, "plugin refused; the previous one keeps serving");
                    }
                    return ReloadOutcome::Refused(why);
                }
            },
        };
        let fingerprint = (digest(&source.wasm), setup.params.clone());
        if setup.loaded.as_ref() == Some(&fingerprint) {
            tracing::debug!(plugin = %source.label, %decision, "plugin unchanged");
            return ReloadOutcome::Unchanged;
        }
        match self.runtime.load(decision, &source, setup.params.clone()) {
            Ok(report) => {
                let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(s) = slots.iter_mut().find(|s| s.decision == decision) {
                    s.loaded = Some(fingerprint);
                }
                ReloadOutcome::Swapped(report)
            }
            Err(e) => ReloadOutcome::Refused(e.to_string()),
        }
    }

    /// Puts (or with `None` takes away) the stored plugin of a slot, and
    /// loads what the slot runs then, on the path a file swap takes (type
    /// check, `check-params`, canary cases, atomic swap). A refused plugin
    /// is taken back out and the previous one keeps serving. Blocking.
    pub fn swap_stored(
        &self,
        decision: Decision,
        wasm: Option<Arc<[u8]>>,
    ) -> Result<Option<LoadReport>, String> {
        let previous = self.set_stored(decision, wasm);
        match self.reload(decision) {
            ReloadOutcome::Swapped(report) => Ok(Some(report)),
            ReloadOutcome::Unchanged => Ok(None),
            ReloadOutcome::Refused(why) => {
                self.set_stored(decision, previous);
                Err(why)
            }
        }
    }

    fn set_stored(&self, decision: Decision, wasm: Option<Arc<[u8]>>) -> Option<Arc<[u8]>> {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let previous = match &wasm {
            Some(w) => stored.insert(decision, w.clone()),
            None => stored.remove(&decision),
        };
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.iter_mut().find(|s| s.decision == decision)
            && !matches!(slot.origin, PluginOrigin::File(_))
        {
            slot.origin = wasm.map_or(PluginOrigin::Embedded, PluginOrigin::Stored);
        }
        previous
    }

    /// Where a slot's plugin comes from and the params it is loaded with.
    pub fn slot(&self, decision: Decision) -> Option<(PluginOrigin, Params)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .find(|s| s.decision == decision)
            .map(|s| (s.origin.clone(), s.params.clone()))
    }

    /// Whether the slot's plugin takes `params`: `check-params` and the
    /// conformance cases, run without swapping anything in. Blocking.
    pub fn check_params(&self, decision: Decision, params: &Params) -> Result<(), String> {
        let Some((origin, _)) = self.slot(decision) else {
            return Ok(());
        };
        let source = match origin {
            PluginOrigin::Embedded => match embedded::default_plugin(decision) {
                Some(source) => source,
                None => return Ok(()),
            },
            PluginOrigin::Stored(wasm) => PluginSource::new(format!("store:{decision}"), wasm),
            PluginOrigin::File(path) => PluginSource::new(
                path.display().to_string(),
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            ),
        };
        check_for(&self.runtime.check(&source, params), decision)
    }

    /// Whether `wasm` would load into the slot with its current params,
    /// without swapping it in (a dry run). Blocking.
    pub fn check_wasm(&self, decision: Decision, wasm: Arc<[u8]>) -> Result<(), String> {
        let params = self.slot(decision).map(|(_, p)| p).unwrap_or_default();
        let source = PluginSource::new(format!("store:{decision}"), wasm);
        check_for(&self.runtime.check(&source, &params), decision)
    }

    /// Reloads every slot (SIGHUP).
    pub fn reload_all(&self) -> Vec<(Decision, ReloadOutcome)> {
        Decision::SLOTS
            .into_iter()
            .map(|d| (d, self.reload(d)))
            .collect()
    }

    /// The folders to watch for the current plugin files ([] when `watch`
    /// is off). Folders, not files: deploy tools replace a file by renaming
    /// a new one over it, which ends a watch on the old inode.
    fn folders_to_watch(&self) -> std::collections::BTreeSet<PathBuf> {
        if !self.watch.load(std::sync::atomic::Ordering::Relaxed) {
            return Default::default();
        }
        self.watched_files()
            .iter()
            .filter_map(|(_, p)| p.parent())
            .map(|dir| {
                if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir.to_path_buf()
                }
            })
            .collect()
    }

    /// Watches the plugin files (when `watch = true`), and SIGHUP when
    /// `reload_on_sighup` (a caller that handles SIGHUP itself, as `serve`
    /// does to re-read its configuration first, calls `reload_all`), until
    /// `shutdown` resolves. `ready` fires once both are armed. After
    /// `reconfigure` the watch follows the new files.
    pub async fn watch(
        self: Arc<Self>,
        reload_on_sighup: bool,
        ready: tokio::sync::oneshot::Sender<()>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && !matches!(event.kind, notify::EventKind::Access(_))
                {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
            })
            .context("starting the plugin file watcher")?;
        let mut watching = std::collections::BTreeSet::new();
        let follow = |watcher: &mut notify::RecommendedWatcher,
                      watching: &mut std::collections::BTreeSet<PathBuf>|
         -> anyhow::Result<()> {
            let wanted = self.folders_to_watch();
            for dir in watching.difference(&wanted) {
                let _ = watcher.unwatch(dir);
            }
            for dir in wanted.difference(watching) {
                watcher
                    .watch(dir, notify::RecursiveMode::NonRecursive)
                    .with_context(|| format!("watching {}", dir.display()))?;
            }
            *watching = wanted;
            Ok(())
        };
        follow(&mut watcher, &mut watching)?;
        let _ = ready.send(());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = hangup.recv(), if reload_on_sighup => {
                    tracing::info!("SIGHUP: reloading plugins");
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_all()).await;
                }
                _ = self.rewatch.notified() => {
                    if let Err(e) = follow(&mut watcher, &mut watching) {
                        tracing::warn!("plugin files are not watched: {e:#}");
                    }
                }
                Some(path) = changed.recv() => {
                    // Let a writer finish: gather events until 200 ms of quiet.
                    let mut paths = vec![path];
                    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(200), changed.recv()).await {
                        paths.push(p);
                    }
                    if !self.watch.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    let decisions: Vec<Decision> = self
                        .watched_files()
                        .iter()
                        .filter(|(_, f)| paths.iter().any(|p| same_file(p, f)))
                        .map(|(d, _)| *d)
                        .collect();
                    for decision in decisions {
                        let me = self.clone();
                        let _ = tokio::task::spawn_blocking(move || me.reload(decision)).await;
                    }
                }
            }
        }
    }
}

/// Where `decision`'s plugin comes from under `config`.
/// What a check says about the world of `decision`: fine, or the first
/// reason it would be refused.
fn check_for(report: &callpark_policy::CheckReport, decision: Decision) -> Result<(), String> {
    if let Some(fatal) = &report.fatal {
        return Err(fatal.clone());
    }
    let world_name = format!("{}-plugin", decision.name());
    let Some(world) = report.worlds.iter().find(|w| w.world == world_name) else {
        return Err(format!("no {decision} world was checked"));
    };
    world
        .implemented
        .clone()
        .map_err(|e| format!("it does not implement the {decision} world: {e}"))?;
    if let Some(Err(e)) = &world.params {
        return Err(format!("check-params refused the params: {e}"));
    }
    if let Some(failed) = world.cases.iter().find(|c| c.result.is_err()) {
        let why = failed.result.clone().err().unwrap_or_default();
        return Err(format!("conformance case `{}` failed: {why}", failed.name));
    }
    Ok(())
}

/// A file the configuration names wins; else what the store keeps; else
/// the embedded default.
fn origin_of(
    config: &Config,
    config_dir: Option<&Path>,
    decision: Decision,
    stored: Option<&Arc<[u8]>>,
) -> PluginOrigin {
    let path = config.plugin_file(decision);
    match stored {
        _ if !path.is_empty() => PluginOrigin::File(Config::resolve(config_dir, path)),
        Some(wasm) => PluginOrigin::Stored(wasm.clone()),
        None => PluginOrigin::Embedded,
    }
}

fn same_file(event_path: &Path, configured: &Path) -> bool {
    if event_path == configured {
        return true;
    }
    match (event_path.canonicalize(), configured.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => {
            event_path.file_name() == configured.file_name()
                && event_path.parent().and_then(|p| p.canonicalize().ok())
                    == configured.parent().and_then(|p| p.canonicalize().ok())
        }
    }
}
