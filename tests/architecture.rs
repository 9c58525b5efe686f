//! Rules ARCHITECTURE.md states about the source tree, checked on the files themselves: every
//! file under `src/` opens with its `//!` line, no module imports (directly or through others)
//! a module that imports it, no file's code (tests aside) runs past 500 lines, and JSON-RPC
//! error codes are numbers only in the MCP constants module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, e.g. `["front", "legacy"]` for `src/front/legacy.rs`; `[]` is the crate root.
type Module = Vec<String>;

fn sources() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            (module, path)
        })
        .collect()
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Expand one `use` tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p))
        .map(|p| if p == "self" { prefix.trim_end_matches("::").to_string() } else { format!("{prefix}{p}") })
        .collect()
}

/// Every `crate::`, `super::` and `self::` path a file's code names, from `use` items and inline.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in code.split(';') {
        let item = item.trim_start();
        let item = item.strip_prefix("pub(crate) ").or_else(|| item.strip_prefix("pub ")).unwrap_or(item);
        if let Some(tree) = item.strip_prefix("use ") {
            out.extend(expand(&tree.split_whitespace().collect::<String>()));
        }
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start).map(|i| i + from) {
            from = i + start.len();
            if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':') {
                continue;
            }
            let end = code[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| e + i);
            // `super::{a, b}` is a group: its members come from the `use` expansion above.
            if !code[i..end].ends_with("::") {
                out.push(code[i..end].to_string());
            }
        }
    }
    out
}

/// The module a path in `from` names: the deepest existing module along it.
fn target(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, rest): (Module, &[&str]) = match *segs.first()? {
        "crate" => (Vec::new(), &segs[1..]),
        "self" => (from.clone(), &segs[1..]),
        "super" => {
            let mut base = from.clone();
            let mut i = 0;
            while segs.get(i) == Some(&"super") {
                base.pop();
                i += 1;
            }
            (base, &segs[i..])
        }
        _ => return None,
    };
    base.extend(rest.iter().map(|s| s.to_string()));
    (0..=base.len()).rev().map(|n| base[..n].to_vec()).find(|m| modules.contains(m)).filter(|m| m != from)
}

#[test]
fn every_source_file_opens_with_its_doc_line() {
    let missing: Vec<String> = sources()
        .values()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` first line: {missing:#?}");
}

#[test]
fn no_source_file_runs_past_500_lines_of_code() {
    let long: Vec<String> = sources()
        .values()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let lines = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or(&text).lines().count();
            (lines > 500).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these files: {long:#?}");
}

#[test]
fn no_module_imports_a_module_that_imports_it() {
    let sources = sources();
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let edges: BTreeMap<Module, BTreeSet<Module>> = sources
        .iter()
        .map(|(m, path)| {
            let code = code(&std::fs::read_to_string(path).unwrap());
            (m.clone(), paths(&code).iter().filter_map(|p| target(m, p, &modules)).filter(|t| !t.is_empty()).collect())
        })
        .collect();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            return Some(stack[i..].to_vec());
        }
        if !done.insert(m.clone()) {
            return None;
        }
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
    assert!(edges.len() > 40, "the scan found the modules");
}

#[test]
fn error_codes_are_numbers_only_in_the_mcp_constants() {
    let mut found = Vec::new();
    for path in sources().values().filter(|p| !p.ends_with("wire/mcp.rs")) {
        let code = code(&std::fs::read_to_string(path).unwrap());
        for (i, _) in code.match_indices("-32") {
            let digits = code[i + 1..].chars().take_while(char::is_ascii_digit).count();
            if digits == 5 {
                found.push(format!("{}: {}", path.display(), &code[i..i + 6]));
            }
        }
    }
    assert!(found.is_empty(), "write these as `wire::mcp::code` constants: {found:#?}");
}

#[test]
fn the_scanner_sees_grouped_and_inline_imports() {
    assert_eq!(expand("super::{a, b::{c, self}}"), ["super::a", "super::b::c", "super::b"]);
    let found = paths("use super::x::{Y, z};\nfn f() { crate::wire::mcp::code::X; }");
    assert!(found.contains(&"super::x::Y".to_string()) && found.contains(&"crate::wire::mcp::code::X".to_string()));
}
