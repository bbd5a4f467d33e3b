//! Plugin files are watched and SIGHUP reloads them; a bad file is refused
//! and the previous plugin keeps serving. Real files, a real signal, bounded
//! waits. One test function, so that no other test's handler sees the signal.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callpark_core::{Allocation, Decision, OrbitState, ParkRequest, ParkTarget, Policy};
use callpark_policy::{PLUGIN_BUILD_DIR, PolicyRuntime};
use callpark_server::config::Config;
use callpark_server::plugins::{PluginSupervisor, ReloadOutcome};

fn copy_plugin(name: &str, to: &Path) {
    // Write beside, then rename over: how deploy tools replace files.
    let tmp = to.with_extension("partial");
    std::fs::copy(format!("{PLUGIN_BUILD_DIR}/{name}.wasm"), &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn generation(rt: &PolicyRuntime) -> u64 {
    rt.current(Decision::Allocator).map_or(0, |p| p.generation)
}

fn big_lot() -> ParkRequest {
    ParkRequest {
        parker: String::new(),
        parked_uri: "sip:bob@example.com".into(),
        parked_display: String::new(),
        target: ParkTarget::DefaultLot,
        candidates: (0..50)
            .map(|i| OrbitState {
                number: (701 + i).to_string(),
                occupied: 0,
                capacity: 1,
                enabled: true,
            })
            .collect(),
        last_orbit: None,
        now_ms: 0,
        entropy: 0,
        params: vec![],
    }
}

async fn start(
    dir: &Path,
    watch: bool,
) -> (
    Arc<PluginSupervisor>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let text = format!("[plugins]\nallocator = \"allocator.wasm\"\nwatch = {watch}\n");
    let config = Config::parse(&text, "park.toml").unwrap();
    let supervisor = PluginSupervisor::start(&config, Some(dir)).unwrap();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(supervisor.clone().watch(true, ready_tx, async {
        let _ = stopped.await;
    }));
    ready.await.unwrap();
    (supervisor, stop, task)
}

fn sighup() {
    // SAFETY: signalling our own process, whose SIGHUP handler the
    // supervisor installed before it reported ready.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_and_sighup_reload_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let allocator = dir.path().join("allocator.wasm");
    copy_plugin("callpark_allocator", &allocator);

    // Watching: a new file is swapped in.
    let (supervisor, stop, task) = start(dir.path(), true).await;
    let rt = supervisor.runtime().clone();
    assert_eq!(generation(&rt), 1);
    assert_eq!(
        rt.current(Decision::Allocator).unwrap().label,
        allocator.display().to_string()
    );
    copy_plugin("fixture_rogue_orbit", &allocator);
    wait_for("the swap", || generation(&rt) == 2).await;
    let rogue = rt.current(Decision::Allocator).unwrap().digest;

    // A broken file is refused and the previous generation keeps serving.
    std::fs::write(&allocator, b"\0asm this is not a component").unwrap();
    wait_for("the refusal", || {
        rt.stats(Decision::Allocator).refused_loads >= 1
    })
    .await;
    let serving = rt.current(Decision::Allocator).unwrap();
    assert_eq!((serving.generation, &serving.digest), (2, &rogue));
    assert!(matches!(rt.allocate(&big_lot()), Ok(Allocation::Orbit(_))));

    // SIGHUP with nothing changed makes no new generation.
    copy_plugin("fixture_rogue_orbit", &allocator);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sighup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(generation(&rt), 2);

    // A configuration re-read at run time (SIGHUP in `serve`) names a file
    // in another folder, with params: it loads, and the watch follows it.
    let elsewhere = tempfile::tempdir().unwrap();
    let vip = elsewhere.path().join("vip.wasm");
    copy_plugin("vip_allocator", &vip);
    let text = format!(
        "[plugins]\nallocator = \"{}\"\n[plugins.params.allocator]\nvip_domains = \"bigcustomer.com\"\nvip_orbits = \"745-750\"\n",
        vip.display()
    );
    supervisor.reconfigure(
        &Config::parse(&text, "park.toml").unwrap(),
        Some(dir.path()),
    );
    let sup = supervisor.clone();
    let outcomes = tokio::task::spawn_blocking(move || sup.reload_all())
        .await
        .unwrap();
    assert!(
        matches!(
            outcomes[0],
            (Decision::Allocator, ReloadOutcome::Swapped(_))
        ),
        "{outcomes:?}"
    );
    let serving = rt.current(Decision::Allocator).unwrap();
    assert_eq!(
        (serving.generation, serving.label.as_str()),
        (3, vip.display().to_string().as_str())
    );
    assert!(
        serving
            .params
            .contains(&("vip_domains".to_string(), "bigcustomer.com".to_string())),
        "{:?}",
        serving.params
    );
    copy_plugin("callpark_allocator", &vip);
    wait_for("the swap in the new folder", || generation(&rt) == 4).await;
    // The old file is no longer the plugin: changing it does nothing.
    copy_plugin("fixture_spin", &allocator);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(generation(&rt), 4);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    // Not watching: a changed file waits for SIGHUP.
    copy_plugin("callpark_allocator", &allocator);
    let (supervisor, stop, task) = start(dir.path(), false).await;
    let rt = supervisor.runtime().clone();
    assert_eq!(generation(&rt), 1);
    copy_plugin("fixture_spin", &allocator);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        generation(&rt),
        1,
        "watch = false must not reload on its own"
    );
    sighup();
    wait_for("the SIGHUP reload", || generation(&rt) == 2).await;
    assert!(rt.current(Decision::Allocator).unwrap().digest != rogue);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
