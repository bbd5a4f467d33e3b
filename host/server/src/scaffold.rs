//! `callpark plugin new NAME --world W --lang L`: a plugin project that
//! builds with one command (`./build.sh`) and passes `callpark plugin check`
//! and its own `cases.toml` as it is written.
//!
//! The templates live in `host/server/scaffold/` and are compiled in: per
//! language a head, one part per policy interface and a tail, so a world is
//! the parts of the interfaces it exports (`policy-plugin` takes all three).
//! The project carries its own copy of `wit/policy.wit`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The WIT the project builds against.
const WIT: &str = include_str!("../../../wit/policy.wit");

/// A plugin world a project implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    Allocator,
    Recall,
    Dialing,
    /// Told of park events, off the decision path (WIT 0.2.0).
    Events,
    /// All three decisions in one component.
    Policy,
}

impl World {
    fn wit(self) -> &'static str {
        match self {
            World::Allocator => "allocator-plugin",
            World::Recall => "recall-plugin",
            World::Dialing => "dialing-plugin",
            World::Events => "events-plugin",
            World::Policy => "policy-plugin",
        }
    }

    /// The interfaces (and plugin slots) the world exports.
    fn interfaces(self) -> &'static [Interface] {
        match self {
            World::Allocator => &[Interface::Allocator],
            World::Recall => &[Interface::Recall],
            World::Dialing => &[Interface::Dialing],
            World::Events => &[Interface::Events],
            World::Policy => &[Interface::Allocator, Interface::Recall, Interface::Dialing],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interface {
    Allocator,
    Recall,
    Dialing,
    Events,
}

impl Interface {
    fn slot(self) -> &'static str {
        match self {
            Interface::Allocator => "allocator",
            Interface::Recall => "recall",
            Interface::Dialing => "dialing",
            Interface::Events => "events",
        }
    }

    fn cases(self) -> &'static str {
        match self {
            Interface::Allocator => include_str!("../scaffold/common/allocator.toml"),
            Interface::Recall => include_str!("../scaffold/common/recall.toml"),
            Interface::Dialing => include_str!("../scaffold/common/dialing.toml"),
            Interface::Events => include_str!("../scaffold/common/events.toml"),
        }
    }
}

/// The language a project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// One language's templates.
struct Templates {
    name: &'static str,
    source: &'static str,
    head: &'static str,
    parts: [&'static str; 4],
    tail: &'static str,
    /// Build files besides the source: (path, template).
    files: &'static [(&'static str, &'static str)],
    gitignore: &'static str,
    needs: &'static str,
}

impl Lang {
    fn templates(self) -> Templates {
        match self {
            Lang::Rust => Templates {
                name: "Rust",
                source: "src/lib.rs",
                head: include_str!("../scaffold/rust/head.rs"),
                parts: [
                    include_str!("../scaffold/rust/allocator.rs"),
                    include_str!("../scaffold/rust/recall.rs"),
                    include_str!("../scaffold/rust/dialing.rs"),
                    include_str!("../scaffold/rust/events.rs"),
                ],
                tail: include_str!("../scaffold/rust/tail.rs"),
                files: &[("Cargo.toml", include_str!("../scaffold/rust/Cargo.toml"))],
                gitignore: include_str!("../scaffold/rust/gitignore"),
                needs: "Building needs Rust with the `wasm32-wasip2` target \
                        (`rustup target add wasm32-wasip2`).",
            },
            Lang::Python => Templates {
                name: "Python",
                source: "app.py",
                head: include_str!("../scaffold/python/head.py"),
                parts: [
                    include_str!("../scaffold/python/allocator.py"),
                    include_str!("../scaffold/python/recall.py"),
                    include_str!("../scaffold/python/dialing.py"),
                    include_str!("../scaffold/python/events.py"),
                ],
                tail: "",
                files: &[(
                    "requirements.txt",
                    include_str!("../scaffold/python/requirements.txt"),
                )],
                gitignore: include_str!("../scaffold/python/gitignore"),
                needs: "Building needs componentize-py (`pip install -r requirements.txt`). \
                        The component is about 18 MB and starts with about 12 MiB of \
                        memory in use: give its slot `[plugins.limits.<slot>] memory = \
                        \"48MiB\"` and `timeout = \"50ms\"` (docs/plugins.md, \"Memory and \
                        time, measured\").",
            },
            Lang::Js => Templates {
                name: "JavaScript",
                source: "plugin.js",
                head: include_str!("../scaffold/js/head.js"),
                parts: [
                    include_str!("../scaffold/js/allocator.js"),
                    include_str!("../scaffold/js/recall.js"),
                    include_str!("../scaffold/js/dialing.js"),
                    include_str!("../scaffold/js/events.js"),
                ],
                tail: "",
                files: &[("package.json", include_str!("../scaffold/js/package.json"))],
                gitignore: include_str!("../scaffold/js/gitignore"),
                needs: "Building needs Node.js; `build.sh` installs componentize-js \
                        (pinned in package.json). The component is about 12 MB and starts \
                        with about 9 MiB of memory in use: give its slot \
                        `[plugins.limits.<slot>] memory = \"32MiB\"` and `timeout = \"50ms\"`.",
            },
        }
    }

    fn build_script(self) -> &'static str {
        match self {
            Lang::Rust => include_str!("../scaffold/rust/build.sh"),
            Lang::Python => include_str!("../scaffold/python/build.sh"),
            Lang::Js => include_str!("../scaffold/js/build.sh"),
        }
    }
}

/// Checks a project name: it becomes a directory, a Cargo package or npm
/// name, and the `.wasm` file's name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "the plugin name `{name}` is not lower-case letters, digits, `-` and `_`, starting with a letter (at most 64)"
        );
    }
    Ok(())
}

/// Writes the project `name` into `dir` (which must not exist or be
/// empty). Returns the files written, relative to `dir`.
pub fn write(dir: &Path, name: &str, world: World, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; nothing was written",
            dir.display()
        );
    }
    let t = lang.templates();
    let crate_name = name.replace('-', "_");
    let slots: Vec<String> = world
        .interfaces()
        .iter()
        .map(|i| format!("{} = \"{crate_name}.wasm\"", i.slot()))
        .collect();
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{world}}", world.wit())
            .replace("{{lang}}", t.name)
            .replace("{{source}}", t.source)
            .replace("{{needs}}", t.needs)
            .replace("{{slots}}", &slots.join("\n"))
    };
    let mut source = t.head.to_string();
    let mut cases = include_str!("../scaffold/common/cases-head.toml").to_string();
    for interface in world.interfaces() {
        source.push_str(t.parts[*interface as usize]);
        cases.push_str(interface.cases());
    }
    source.push_str(t.tail);
    let mut files: Vec<(PathBuf, String)> = vec![
        (t.source.into(), fill(&source)),
        ("build.sh".into(), fill(lang.build_script())),
        ("cases.toml".into(), fill(&cases)),
        (
            "README.md".into(),
            fill(include_str!("../scaffold/common/README.md")),
        ),
        (".gitignore".into(), t.gitignore.to_string()),
        ("wit/policy.wit".into(), WIT.to_string()),
    ];
    for (path, template) in t.files {
        files.push((path.into(), fill(template)));
    }
    for (path, text) in &files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("writing {}", full.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("build.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", script.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_world_and_language_writes_a_project_whose_cases_parse() {
        for world in [
            World::Allocator,
            World::Recall,
            World::Dialing,
            World::Events,
            World::Policy,
        ] {
            for lang in [Lang::Rust, Lang::Python, Lang::Js] {
                let dir = tempfile::tempdir().unwrap();
                let project = dir.path().join("my-plugin");
                let files = write(&project, "my-plugin", world, lang).unwrap();
                assert!(files.iter().any(|f| f.ends_with("build.sh")));
                let cases = std::fs::read_to_string(project.join("cases.toml")).unwrap();
                let parsed = callpark_policy::cases::parse(&cases).unwrap();
                assert_eq!(
                    [
                        parsed.allocator.is_empty(),
                        parsed.recall.is_empty(),
                        parsed.dialing.is_empty(),
                        parsed.events.is_empty()
                    ]
                    .iter()
                    .filter(|e| !**e)
                    .count(),
                    world.interfaces().len(),
                    "{world:?} {lang:?}"
                );
                let source =
                    std::fs::read_to_string(project.join(lang.templates().source)).unwrap();
                assert!(!source.contains("{{"), "{world:?} {lang:?}: {source}");
                assert!(source.contains(world.wit()), "{world:?} {lang:?}");
            }
        }
    }

    #[test]
    fn bad_names_and_full_directories_are_refused() {
        for name in ["", "My", "1st", "a b", "../x", &"a".repeat(65)] {
            assert!(check_name(name).is_err(), "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let e = write(dir.path(), "x", World::Allocator, Lang::Rust).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
