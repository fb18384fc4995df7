//! The dependency rules of `../shared/STYLE.md`, checked on the source: no import cycle
//! between files of src/ (a folder's `mod.rs` and its own child files aside), no domain
//! file reaching up into `http`, `dispatch` or axum, `db/` and `mail/` importing nothing
//! above them, and the job runner knowing no job kind.
//!
//! Hand-written reader of `crate::`, `super::` and `self::` paths (and `pub use`
//! re-exports) because a full Rust parser would be a heavy dev-dependency for what is a
//! line-level question; it reads code lines only, not comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The domain folders: what they may not import.
const DOMAINS: &[&str] = &[
    "accounts",
    "clients",
    "messages",
    "mailings",
    "deliveries",
    "deliverability",
    "senders",
    "blog",
    "stats",
];

/// Imports a cycle may go through, each with its reason.
const ALLOWED_IN_A_CYCLE: &[(&str, &str, &str)] = &[(
    "clients/graphql.rs",
    "deliverability/graphql.rs",
    "the API's types are a graph: Client.suppression -> Suppression.delivery -> Delivery.client; \
     a Rust type cannot name a generic parameter its own users choose, so the bottom type \
     (Client) names the suppression as it is",
)];

#[test]
fn no_file_of_src_imports_itself_through_a_cycle() {
    let mut graph = Graph::read();
    graph.edges.retain(|edge| {
        !ALLOWED_IN_A_CYCLE
            .iter()
            .any(|(from, to, _)| edge.from == *from && edge.to == *to)
    });
    let cycles = graph.cycles();
    let described: Vec<String> = cycles
        .iter()
        .map(|files| {
            let edges: Vec<String> = graph
                .edges
                .iter()
                .filter(|edge| files.contains(&edge.from) && files.contains(&edge.to))
                .map(|edge| format!("    {} -> {}  ({})", edge.from, edge.to, edge.path))
                .collect();
            format!("  {} files: {}\n{}", files.len(), files.join(", "), edges.join("\n"))
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles in src/:\n{}", described.join("\n"));
}

#[test]
fn domains_do_not_import_the_edge_and_the_base_imports_nothing_above_it() {
    let graph = Graph::read();
    let mut wrong = Vec::new();
    for (file, source) in &graph.sources {
        let folder = file.split('/').next().unwrap_or_default();
        if DOMAINS.contains(&folder) {
            for line in code_lines(source) {
                if line.contains("axum::") || line.contains("crate::http") || line.contains("crate::dispatch") {
                    wrong.push(format!("{file}: {}", line.trim()));
                }
            }
        }
    }
    // The crate root holds only module declarations and the exported macros (`text_enum!`,
    // `id_type!`, `batch_loader!`), which every layer may use.
    for edge in graph.edges.iter().filter(|edge| edge.to != "lib.rs") {
        let from = edge.from.split('/').next().unwrap_or_default();
        let to = edge.to.split('/').next().unwrap_or_default();
        let allowed: &[&str] = match (from, edge.from.as_str()) {
            ("db", _) => &["db"],
            ("mail", _) => &["mail", "db"],
            // The runner itself knows no job kind.
            (_, "jobs/mod.rs" | "jobs/runner.rs") => &["jobs", "db", "retry"],
            _ => continue,
        };
        if !allowed.contains(&to.trim_end_matches(".rs")) {
            wrong.push(format!("{} -> {} ({})", edge.from, edge.to, edge.path));
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_reader_sees_a_cycle_when_there_is_one() {
    // The check itself: a made-up pair of files that import each other is one cycle.
    let mut graph = Graph {
        files: vec!["a.rs".into(), "b.rs".into(), "c.rs".into()],
        ..Graph::default()
    };
    for (from, to) in [("a.rs", "b.rs"), ("b.rs", "a.rs"), ("b.rs", "c.rs")] {
        graph.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            path: String::new(),
        });
    }
    assert_eq!(graph.cycles(), vec![vec!["a.rs".to_string(), "b.rs".to_string()]]);
    let parsed = paths_in("use crate::accounts::{model::{Role, User}, Viewer};");
    assert_eq!(
        parsed,
        vec![
            (Anchor::Crate, vec!["accounts".into(), "model".into(), "Role".into()]),
            (Anchor::Crate, vec!["accounts".into(), "model".into(), "User".into()]),
            (Anchor::Crate, vec!["accounts".into(), "Viewer".into()]),
        ]
    );
}

#[derive(Default)]
struct Graph {
    /// Files relative to src/, e.g. `accounts/model.rs`.
    files: Vec<String>,
    sources: BTreeMap<String, String>,
    edges: Vec<Edge>,
}

struct Edge {
    from: String,
    to: String,
    path: String,
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Anchor {
    Crate,
    /// `super::` as many times as the number.
    Super(usize),
    /// `self::` or a path that starts with a child module's name.
    SelfModule,
}

impl Graph {
    fn read() -> Graph {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        collect(&src, &src, &mut files);
        files.retain(|file| file != "main.rs");
        files.sort();
        let sources: BTreeMap<String, String> = files
            .iter()
            .map(|file| {
                (
                    file.clone(),
                    std::fs::read_to_string(src.join(file)).expect("source readable"),
                )
            })
            .collect();
        let modules: BTreeMap<Vec<String>, String> = files.iter().map(|file| (module_of(file), file.clone())).collect();

        // `pub use` re-exports: (module, name) -> full path of what it names.
        let mut reexports: BTreeMap<(Vec<String>, String), Vec<String>> = BTreeMap::new();
        for (file, source) in &sources {
            let module = module_of(file);
            let code: String = code_lines(source).collect::<Vec<_>>().join("\n");
            for statement in code.split(';') {
                let Some(rest) = statement.trim_start().strip_prefix("pub use ") else {
                    continue;
                };
                for (anchor, path) in paths_in(&format!("use {rest}")) {
                    if let Some(full) = absolute(&module, anchor, &path, &modules)
                        && let Some(name) = full.last()
                    {
                        reexports.insert((module.clone(), name.clone()), full);
                    }
                }
            }
        }

        let mut edges = Vec::new();
        let mut seen = BTreeSet::new();
        for (file, source) in &sources {
            let module = module_of(file);
            let code: String = code_lines(source).collect::<Vec<_>>().join("\n");
            {
                for (anchor, path) in paths_in(&code) {
                    let Some(full) = absolute(&module, anchor, &path, &modules) else {
                        continue;
                    };
                    let Some(to) = resolve(&full, &modules, &reexports, 0) else {
                        continue;
                    };
                    if &to == file || parent_and_child(file, &to) || !seen.insert((file.clone(), to.clone())) {
                        continue;
                    }
                    edges.push(Edge {
                        from: file.clone(),
                        to,
                        path: format!("crate::{}", full.join("::")),
                    });
                }
            }
        }
        Graph { files, sources, edges }
    }

    /// The strongly connected components of more than one file (Tarjan), each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        struct Tarjan<'g> {
            next: BTreeMap<&'g str, Vec<&'g str>>,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            found: Vec<Vec<String>>,
        }
        impl<'g> Tarjan<'g> {
            fn visit(&mut self, file: &'g str) {
                let order = self.index.len();
                self.index.insert(file, order);
                self.low.insert(file, order);
                self.stack.push(file);
                self.on_stack.insert(file);
                for to in self.next.get(file).cloned().unwrap_or_default() {
                    if !self.index.contains_key(to) {
                        self.visit(to);
                        let low = self.low[file].min(self.low[to]);
                        self.low.insert(file, low);
                    } else if self.on_stack.contains(to) {
                        let low = self.low[file].min(self.index[to]);
                        self.low.insert(file, low);
                    }
                }
                if self.low[file] == self.index[file] {
                    let mut component = Vec::new();
                    while let Some(top) = self.stack.pop() {
                        self.on_stack.remove(top);
                        component.push(top.to_string());
                        if top == file {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.found.push(component);
                    }
                }
            }
        }
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for edge in &self.edges {
            next.entry(edge.from.as_str()).or_default().push(edge.to.as_str());
        }
        let mut tarjan = Tarjan {
            next,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for file in &self.files {
            if !tarjan.index.contains_key(file.as_str()) {
                tarjan.visit(file);
            }
        }
        tarjan.found
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("src readable") {
        let path: PathBuf = entry.expect("entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(
                path.strip_prefix(root)
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// `accounts/model.rs` -> [accounts, model]; `accounts/mod.rs` -> [accounts]; `lib.rs` -> [].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// A folder's `mod.rs` (or `lib.rs`) and one of its own child files.
fn parent_and_child(a: &str, b: &str) -> bool {
    let (ma, mb) = (module_of(a), module_of(b));
    let is_parent = |parent: &Vec<String>, child: &Vec<String>, file: &str| {
        (file.ends_with("mod.rs") || file == "lib.rs") && child.len() == parent.len() + 1 && child.starts_with(parent)
    };
    is_parent(&ma, &mb, a) || is_parent(&mb, &ma, b)
}

/// Lines of code, without comment lines and trailing `//` comments.
fn code_lines(source: &str) -> impl Iterator<Item = &str> {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| line.split(" // ").next().unwrap_or(line))
}

/// Every path in a line that starts with `crate::`, `super::`, `self::` or (in a `use`
/// statement) a bare module name, with `{...}` groups expanded.
fn paths_in(line: &str) -> Vec<(Anchor, Vec<String>)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while at < bytes.len() {
        if !line.is_char_boundary(at) || at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
            at += 1;
            continue;
        }
        let rest = &line[at..];
        let (anchor, skip) = if rest.starts_with("crate::") {
            (Anchor::Crate, "crate::".len())
        } else if rest.starts_with("super::") {
            let mut count = 0;
            let mut skip = 0;
            while line[at + skip..].starts_with("super::") {
                count += 1;
                skip += "super::".len();
            }
            (Anchor::Super(count), skip)
        } else if rest.starts_with("self::") {
            (Anchor::SelfModule, "self::".len())
        } else if let Some(after_use) = rest.strip_prefix("use ").filter(|_| {
            let before = line[..at].rsplit('\n').next().unwrap_or("").trim();
            before.is_empty() || before == "pub" || before.starts_with("pub(")
        }) {
            // `use model::Client;` in a mod.rs: relative to the current module; checked
            // against the real modules when made absolute.
            let first = after_use
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("");
            if !first.is_empty()
                && after_use[first.len()..].starts_with("::")
                && !["crate", "super", "self", "std"].contains(&first)
            {
                (Anchor::SelfModule, "use ".len())
            } else {
                at += 1;
                continue;
            }
        } else {
            at += 1;
            continue;
        };
        let (paths, used) = expand(&line[at + skip..]);
        for path in paths {
            if !path.is_empty() {
                found.push((anchor, path));
            }
        }
        at += skip + used.max(1);
    }
    found
}

/// Parses `a::b::{c, d::e}` into [[a,b,c],[a,b,d,e]]; returns how many bytes it read.
fn expand(text: &str) -> (Vec<Vec<String>>, usize) {
    let bytes = text.as_bytes();
    let mut segments = Vec::new();
    let mut at = 0;
    loop {
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if at > start {
            segments.push(text[start..at].to_string());
        }
        if text[at..].starts_with("::{") {
            at += 3;
            let mut depth = 1;
            let inner_start = at;
            while at < bytes.len() && depth > 0 {
                match bytes[at] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                at += 1;
            }
            let inner = if depth == 0 {
                &text[inner_start..at - 1]
            } else {
                &text[inner_start..]
            };
            let mut paths = Vec::new();
            for item in split_top_level(inner) {
                let item = item.trim();
                let item = item.split(" as ").next().unwrap_or(item).trim();
                if item == "self" {
                    paths.push(segments.clone());
                    continue;
                }
                let (inner_paths, _) = expand(item);
                for inner_path in inner_paths {
                    let mut full = segments.clone();
                    full.extend(inner_path);
                    paths.push(full);
                }
            }
            return (paths, at);
        }
        if text[at..].starts_with("::") && text[at + 2..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            at += 2;
            continue;
        }
        return (vec![segments], at);
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|part| !part.trim().is_empty()).collect()
}

/// The path from the crate root, if it leads into a module of ours.
fn absolute(
    module: &[String],
    anchor: Anchor,
    path: &[String],
    modules: &BTreeMap<Vec<String>, String>,
) -> Option<Vec<String>> {
    let base: Vec<String> = match anchor {
        Anchor::Crate => Vec::new(),
        Anchor::Super(count) => module[..module.len().checked_sub(count)?].to_vec(),
        Anchor::SelfModule => module.to_vec(),
    };
    let mut full = base;
    full.extend(path.iter().cloned());
    // A relative `use` must start with a child module that exists.
    if anchor == Anchor::SelfModule {
        let mut first = module.to_vec();
        first.push(path.first()?.clone());
        if !modules.contains_key(&first) {
            return None;
        }
    }
    Some(full)
}

/// The file that defines what `full` names: the deepest module on the path, or, where
/// that module re-exports the next name, the file it re-exports from.
fn resolve(
    full: &[String],
    modules: &BTreeMap<Vec<String>, String>,
    reexports: &BTreeMap<(Vec<String>, String), Vec<String>>,
    depth: usize,
) -> Option<String> {
    let deepest = (0..=full.len()).rev().find(|len| modules.contains_key(&full[..*len]))?;
    let module = full[..deepest].to_vec();
    if depth < 8
        && let Some(name) = full.get(deepest)
        && let Some(target) = reexports.get(&(module.clone(), name.clone()))
    {
        let mut next = target.clone();
        next.extend(full[deepest + 1..].iter().cloned());
        if next != full {
            return resolve(&next, modules, reexports, depth + 1);
        }
    }
    modules.get(&module).cloned()
}
