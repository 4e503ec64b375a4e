//! The codemap in ARCHITECTURE.md is checked against the imports: every
//! `crate::` path a library module names must be an arrow its row
//! declares, pointing to a row below it (arrows point down only), and no
//! two source files import each other, however indirectly.
//!
//! Reads files only: no broker, no sockets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One library source file: its module path (`kafka::codec`) and the
/// text the build sees outside tests.
struct Source {
    module: String,
    text: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `src/a/b.rs` -> `a::b`; `src/a/mod.rs` -> `a`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The text without comments, string literals and `#[cfg(test)]` modules
/// (inline ones; test-only files are left out by `sources`).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // Skip the item that follows: a `mod x { ... }` block up to
            // its closing brace at the same indent, or a one-line item.
            let Some(next) = lines.next() else { break };
            if next.trim_end().ends_with('{') {
                let indent = next.len() - next.trim_start().len();
                let close = format!("{}}}", " ".repeat(indent));
                for l in lines.by_ref() {
                    if l.trim_end() == close {
                        break;
                    }
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        // Drop string literals: paths named in messages are not imports.
        let mut in_str = false;
        for c in code.chars() {
            if c == '"' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// Library files: everything under `src/` but the binary (`main.rs` and
/// the modules it declares), flatc's output, and test-only modules
/// (declared after `#[cfg(test)]`).
fn sources() -> Vec<Source> {
    let src = root().join("src");
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap();
    let mut binary: BTreeSet<String> = BTreeSet::from(["main".to_owned()]);
    for l in main.lines() {
        if let Some(m) = l.trim().strip_prefix("mod ") {
            binary.insert(m.trim_end_matches(';').to_owned());
        }
    }
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "generated" {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut test_only = BTreeSet::new();
    let mut out = Vec::new();
    for p in &files {
        let rel = p.strip_prefix(&src).unwrap();
        let text = std::fs::read_to_string(p).unwrap();
        let module = module_of(rel);
        let mut lines = text.lines();
        while let Some(l) = lines.next() {
            if l.trim() == "#[cfg(test)]" {
                if let Some(m) = lines.next().and_then(|n| {
                    let n = n.trim();
                    n.strip_prefix("mod ")
                        .or(n.strip_prefix("pub(crate) mod "))
                        .filter(|m| m.ends_with(';'))
                        .map(|m| m.trim_end_matches(';').to_owned())
                }) {
                    let parent = if module == "lib" {
                        String::new()
                    } else {
                        module.clone()
                    };
                    test_only.insert(if parent.is_empty() {
                        m
                    } else {
                        format!("{parent}::{m}")
                    });
                }
            }
        }
        out.push(Source {
            module,
            text: code_of(&text),
        });
    }
    out.retain(|s| {
        let top = s.module.split("::").next().unwrap();
        !binary.contains(top) && s.module != "lib" && !test_only.contains(&s.module)
    });
    out
}

/// Every module path `text` names from `crate::`, including the items of
/// `use crate::{a, b::{c, d}}` groups.
fn crate_paths(text: &str) -> Vec<String> {
    prefixed_paths(text, "crate::", "")
}

/// Paths after each `marker` in `text` (not preceded by an identifier
/// character or `:`), each under `prefix`.
fn prefixed_paths(text: &str, marker: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find(marker) {
        let start = i + at;
        i = start + marker.len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        out.extend(paths_in(&text[i..], prefix));
    }
    out
}

/// The paths `s` starts with, under `prefix`: `a::b::{c, d::e}`.
fn paths_in(s: &str, prefix: &str) -> Vec<String> {
    let join = |ident: &str| {
        if prefix.is_empty() {
            ident.to_owned()
        } else {
            format!("{prefix}::{ident}")
        }
    };
    let len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    if len > 0 {
        let path = join(&s[..len]);
        return match s[len..].strip_prefix("::") {
            Some(next) => paths_in(next, &path),
            None => vec![path],
        };
    }
    let Some(group) = s.strip_prefix('{') else {
        return if prefix.is_empty() {
            vec![]
        } else {
            vec![prefix.to_owned()]
        };
    };
    // The group's items, split at its own commas, up to its closing brace.
    let mut depth = 0;
    let mut items = Vec::new();
    let mut from = 0;
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[from..k]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[from..k]);
                from = k + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .flat_map(|item| match item {
            "self" => vec![prefix.to_owned()],
            _ => paths_in(item, prefix),
        })
        .collect()
}

/// The longest module in `modules` that `path` starts with.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Paths a file names relative to itself: `super::x` is its parent's
/// `x`, and a bare `child::x` in a folder's `mod.rs` is its child `x`.
fn relative_paths(module: &str, text: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let mut parent: Vec<&str> = module.split("::").collect();
    parent.pop();
    let mut out = prefixed_paths(text, "super::", &parent.join("::"));
    for child in modules
        .iter()
        .filter_map(|m| m.strip_prefix(module)?.strip_prefix("::"))
        .filter(|c| !c.contains("::"))
    {
        out.extend(prefixed_paths(
            text,
            &format!("{child}::"),
            &format!("{module}::{child}"),
        ));
    }
    out
}

/// The codemap block: rows in order (top floor first), each a module and
/// the modules it may import.
fn codemap() -> Vec<(String, BTreeSet<String>)> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let section = doc.split("## Codemap").nth(1).expect("a Codemap section");
    let block = section.split("```").nth(1).expect("the codemap block");
    block
        .lines()
        .filter(|l| l.contains("->"))
        .map(|l| {
            let (name, rest) = l.split_once("->").unwrap();
            // Arrows end where the description starts (two spaces).
            let arrows = rest.trim_start().split("  ").next().unwrap_or("");
            let targets = arrows
                .split(',')
                .map(|t| {
                    let t = t.split('(').next().unwrap().trim();
                    t.split("::").next().unwrap().to_owned()
                })
                .filter(|t| !t.is_empty())
                .collect();
            (name.trim().to_owned(), targets)
        })
        .collect()
}

#[test]
fn every_import_is_an_arrow_of_the_codemap_pointing_down() {
    let sources = sources();
    let tops: BTreeSet<String> = sources
        .iter()
        .map(|s| s.module.split("::").next().unwrap().to_owned())
        .collect();
    let rows = codemap();
    let floor: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut wrong = Vec::new();
    for top in &tops {
        if !floor.contains_key(top.as_str()) {
            wrong.push(format!("{top}: no row in the codemap"));
        }
    }
    for (name, targets) in &rows {
        for t in targets {
            if tops.contains(t) && floor[t.as_str()] <= floor[name.as_str()] {
                wrong.push(format!("{name} -> {t}: the arrow points up (or sideways)"));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for s in &sources {
        let from = s.module.split("::").next().unwrap();
        for p in crate_paths(&s.text) {
            let to = p.split("::").next().unwrap();
            if to == from || !tops.contains(to) {
                continue;
            }
            let declared = rows
                .iter()
                .find(|(n, _)| n == from)
                .is_some_and(|(_, t)| t.contains(to));
            if !declared && seen.insert((s.module.clone(), to.to_owned())) {
                wrong.push(format!(
                    "{} imports crate::{p}, but the codemap has no arrow {from} -> {to}",
                    s.module
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's codemap and the imports disagree:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_two_source_files_import_each_other_even_through_others() {
    let sources = sources();
    let modules: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &sources {
        let e = edges.entry(s.module.clone()).or_default();
        let named = crate_paths(&s.text)
            .into_iter()
            .chain(relative_paths(&s.module, &s.text, &modules));
        for p in named {
            if let Some(m) = resolve(&p, &modules) {
                if m != s.module {
                    e.insert(m);
                }
            }
        }
    }
    let cycles = strongly_connected(&edges);
    assert!(
        cycles.is_empty(),
        "import circles (each set imports itself through the others): {cycles:?}"
    );
}

/// Tarjan's strongly connected components of more than one node.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let empty = BTreeSet::new();
        let ws: Vec<&'a str> = t
            .edges
            .get(v)
            .unwrap_or(&empty)
            .iter()
            .map(|w| t.edges.get_key_value(w).map_or("", |(k, _)| k.as_str()))
            .filter(|w| !w.is_empty())
            .collect();
        for w in ws {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn the_path_reader_sees_groups_and_nested_groups() {
    let code = "use crate::{a::{b, c::D}, e};\nlet x = crate::f::g(1);";
    let mut got = crate_paths(code);
    got.sort();
    assert_eq!(got, ["a::b", "a::c::D", "e", "f::g"]);
    assert_eq!(
        code_of("x // crate::y\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\nw"),
        "x \nw\n"
    );
}
