//! Keeps the import arrows pointing one way: no file of either crate
//! (`src/`, `crates/genesys-simulator/src/`) may reach itself through
//! its `use` lines.
//!
//! The graph is file to file. An edge A → B is a top-level `use` (or
//! `pub use`) line of file A that names something in file B: through
//! `crate::`, `super::`, `self::` or a child module's name. A path is
//! resolved to the deepest module file it reaches, so
//! `use crate::buffer::Buffer` is an edge to `buffer/mod.rs` (where the
//! name is, or is re-exported) and `use crate::buffer::gaps::GapRecord` an
//! edge to `buffer/gaps.rs`. Indented `use` lines (inside `mod tests { … }`
//! or a function) are not read: a test module importing its parent is not
//! a circle of the product. Paths written inline in code
//! (`crate::now_ms()`) count as well, outside comments and outside a
//! `#[cfg(test)] mod … { }` written in the file.
//!
//! The last test feeds the checker a deliberate circle, so this test is
//! known to fail when one comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["buffer", "gaps"]`) → file (relative to the crate's `src/`).
type Modules = BTreeMap<Vec<String>, String>;

fn modules(files: &BTreeMap<String, String>) -> Modules {
    files
        .keys()
        .filter(|rel| rel.as_str() != "main.rs")
        .map(|rel| {
            let mut parts: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            (parts, rel.clone())
        })
        .collect()
}

/// `a::{b, c::{d, e as f}}` → `[a,b]`, `[a,c,d]`, `[a,c,e]`.
fn expand(prefix: &[String], tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let mut path = prefix.to_vec();
        for segment in tree.split("::") {
            let name = segment.split(" as ").next().unwrap_or_default().trim();
            if !name.is_empty() {
                path.push(name.to_owned());
            }
        }
        return vec![path];
    };
    let mut base = prefix.to_vec();
    base.extend(
        tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut items, mut depth, mut current) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    items.push(current);
    items
        .iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(|item| expand(&base, item))
        .collect()
}

/// The trees of a file's top-level `use` lines (a line may run on).
fn use_trees(source: &str) -> Vec<String> {
    let mut trees = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let rest = ["pub(crate) use ", "pub(super) use ", "pub use ", "use "]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix));
        let Some(rest) = rest else { continue };
        let mut statement = rest.to_owned();
        while !statement.contains(';') {
            match lines.next() {
                Some(more) => statement.push_str(more),
                None => break,
            }
        }
        trees.push(statement.split(';').next().unwrap_or_default().to_owned());
    }
    trees
}

/// Paths written inline in code (`crate::now_ms()`,
/// `super::Inner::new`): outside comments and outside a `#[cfg(test)]`
/// module written in the file.
fn inline_paths(source: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut in_tests = false;
    let mut after_cfg_test = false;
    for line in source.lines() {
        if in_tests {
            in_tests = line != "}";
            continue;
        }
        let declared = ["pub(crate) ", "pub(super) ", "pub "]
            .iter()
            .fold(line, |l, v| l.strip_prefix(v).unwrap_or(l));
        if after_cfg_test && declared.starts_with("mod ") && line.ends_with('{') {
            in_tests = true;
            continue;
        }
        after_cfg_test = line.trim() == "#[cfg(test)]";
        let code = line.trim_start();
        if code.starts_with("//") || code.starts_with("use ") || code.starts_with("pub use ") {
            continue;
        }
        for start in ["crate::", "super::"] {
            let mut rest = code;
            while let Some(at) = rest.find(start) {
                let before = rest[..at].chars().next_back();
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(tail.len());
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    paths.push(tail[..end].trim_end_matches(':').to_owned());
                }
                rest = &tail[end.max(1)..];
            }
        }
    }
    paths
}

/// File → the files it imports from.
fn edges(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(files);
    let resolve = |path: &[String]| {
        (1..=path.len())
            .rev()
            .find_map(|n| modules.get(&path[..n]).cloned())
    };
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let mut targets = BTreeSet::new();
        let source = &files[file];
        let written = use_trees(source).into_iter().flat_map(|t| expand(&[], &t));
        let inline = inline_paths(source)
            .into_iter()
            .map(|p| p.split("::").map(str::to_owned).collect::<Vec<_>>());
        {
            for path in written.chain(inline) {
                let Some(first) = path.first() else { continue };
                let absolute: Vec<String> = match first.as_str() {
                    "crate" => path[1..].to_vec(),
                    "super" => {
                        let mut base = module.clone();
                        let mut rest = &path[..];
                        while rest.first().map(String::as_str) == Some("super") {
                            base.pop();
                            rest = &rest[1..];
                        }
                        base.into_iter().chain(rest.iter().cloned()).collect()
                    }
                    "self" => module.iter().chain(&path[1..]).cloned().collect(),
                    child => {
                        let mut own = module.clone();
                        own.push(child.to_owned());
                        if !modules.contains_key(&own) {
                            continue; // std, an external crate
                        }
                        module.iter().chain(&path).cloned().collect()
                    }
                };
                let absolute: Vec<String> = absolute.into_iter().filter(|s| s != "self").collect();
                if let Some(target) = resolve(&absolute) {
                    if &target != file {
                        targets.insert(target);
                    }
                }
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

/// The strongly connected components of more than one file (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under root");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&path).expect("a source file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn report(crate_dir: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(crate_dir);
    let graph = edges(&read_tree(&root));
    let mut out = String::new();
    for circle in circles(&graph) {
        out.push_str(&format!(
            "\n{crate_dir}: an import circle of {} files:\n",
            circle.len()
        ));
        for file in &circle {
            let inside: Vec<&str> = graph[file]
                .iter()
                .filter(|t| circle.contains(t))
                .map(String::as_str)
                .collect();
            out.push_str(&format!("  {file} -> {}\n", inside.join(", ")));
        }
    }
    out
}

#[test]
fn the_bridge_has_no_import_circle() {
    let found = report("src");
    assert!(found.is_empty(), "{found}");
}

#[test]
fn the_simulator_has_no_import_circle() {
    let found = report("crates/genesys-simulator/src");
    assert!(found.is_empty(), "{found}");
}

/// The files under `dir/` that import from a file of `forbidden`, as
/// "file -> target" lines.
fn imports_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    dirs: &[&str],
    allowed: impl Fn(&str) -> bool,
) -> Vec<String> {
    graph
        .iter()
        .filter(|(file, _)| dirs.iter().any(|d| file.starts_with(d)))
        .flat_map(|(file, targets)| {
            targets
                .iter()
                .filter(|t| !allowed(t))
                .map(move |t| format!("{file} -> {t}"))
        })
        .collect()
}

fn bridge_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    edges(&read_tree(&root))
}

/// Telemetry knows nothing of the components: they push facts into its
/// areas or register their own metrics with it. It may use the leaves
/// only (the config error type, channel-id masking, the gap record, the
/// crate root's helpers).
#[test]
fn telemetry_imports_no_component() {
    const LEAVES: &[&str] = &[
        "lib.rs",
        "config/error.rs",
        "genesys/channel_id.rs",
        "gap.rs",
        "secret.rs",
        "backoff.rs",
    ];
    let found = imports_from(&bridge_graph(), &["telemetry/"], |t| {
        t.starts_with("telemetry/") || LEAVES.contains(&t)
    });
    assert!(
        found.is_empty(),
        "telemetry imports a component:\n{}",
        found.join("\n")
    );
}

/// Nothing the connection actor uses imports it back: the buffer, the
/// producer, the token actor, the Genesys client, the network layer and
/// telemetry work without knowing who reads the sockets.
#[test]
fn nothing_below_the_connection_imports_it() {
    let below = [
        "buffer/",
        "producer/",
        "token/",
        "genesys/",
        "net/",
        "telemetry/",
        "gap.rs",
    ];
    let found = imports_from(&bridge_graph(), &below, |t| !t.starts_with("connection/"));
    assert!(
        found.is_empty(),
        "imports the connection:\n{}",
        found.join("\n")
    );
}

/// What every component may ask of cluster mode (`may_send`,
/// `is_leader`) is a leaf: it knows nothing of the bridge, so the
/// producer, the connections and the backfill actor can depend on it
/// without depending on the coordinator (which imports the producer).
#[test]
fn the_leadership_handle_is_a_leaf() {
    let found = imports_from(&bridge_graph(), &["cluster/leadership.rs"], |_| false);
    assert!(found.is_empty(), "imports:\n{}", found.join("\n"));
    let coordinator_users: Vec<String> = bridge_graph()
        .into_iter()
        .filter(|(file, targets)| {
            !file.starts_with("cluster/") && targets.iter().any(|t| t == "cluster/coordinator.rs")
        })
        .map(|(file, _)| file)
        .collect();
    assert_eq!(
        coordinator_users,
        ["app.rs"],
        "only the app starts the coordinator"
    );
}

/// The simulator is a test double kept out of the product: only the
/// command line (`simulate`) and the demo use it.
#[test]
fn only_the_cli_and_the_demo_use_the_simulator() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let users: Vec<String> = read_tree(&root)
        .into_iter()
        .filter(|(_, text)| text.contains("genesys_simulator"))
        .map(|(file, _)| file)
        .collect();
    assert_eq!(
        users,
        ["cli.rs", "demo.rs"],
        "files using the simulator crate"
    );
}

#[test]
fn a_deliberate_circle_is_found() {
    let files: BTreeMap<String, String> = [
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a/mod.rs", "mod inner;\nuse crate::b::{self, B};\n"),
        ("a/inner.rs", "use super::A;\n"),
        ("b.rs", "pub use crate::c::{C as Renamed, other::{X, Y}};\n"),
        ("c/mod.rs", "pub mod other;\n"),
        (
            "c/other.rs",
            "use std::fmt;\nuse crate::a::inner::{\n    Thing,\n};\n",
        ),
        ("d.rs", "    use crate::a::A; // indented: not read\n"),
        (
            "e.rs",
            "fn f() {\n    crate::b::g(); // an inline path\n}\n// crate::c::C in a comment\n#[cfg(test)]\nmod tests {\n    fn t() { crate::a::A; }\n}\n",
        ),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_owned(), text.to_owned()))
    .collect();
    let graph = edges(&files);
    assert_eq!(
        circles(&graph),
        vec![vec![
            "a/inner.rs".to_owned(),
            "a/mod.rs".into(),
            "b.rs".into(),
            "c/other.rs".into(),
        ]],
        "{graph:?}"
    );
    assert!(graph["d.rs"].is_empty());
    assert_eq!(graph["e.rs"], BTreeSet::from(["b.rs".to_owned()]));
}
