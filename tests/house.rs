//! The house rules (README, Layout), read from the source: imports run one way down the
//! layers (binary → app → model and preprocess → cam → ops → gpu → error) with no two
//! modules importing each other, no file in src/ over 600 lines, no function over 120
//! lines, and no `too_many_arguments` allowance.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 120;

/// Every `.rs` file under `src/`, with its module path (`app::write::html`; `bin::…` for the
/// binary's files) and its text.
fn modules() -> Vec<(PathBuf, String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().with_extension("");
            let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into()).collect();
            let module = match parts.first().map(String::as_str) {
                Some("main") | Some("build") | Some("commands") => {
                    format!("bin::{}", parts.join("::"))
                }
                _ => {
                    let mut parts = parts;
                    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                        parts.pop();
                    }
                    parts.join("::")
                }
            };
            let text = std::fs::read_to_string(&p).unwrap();
            (p, module, text)
        })
        .collect()
}

/// The layer of a module: higher layers may use lower ones only.
fn layer(module: &str) -> Option<u32> {
    let top = module.split("::").next().unwrap_or("");
    Some(match top {
        "bin" => 6,
        "app" => 5,
        "model" | "preprocess" => 4,
        "cam" => 3,
        "ops" => 2,
        "gpu" => 1,
        "error" => 0,
        _ => return None,
    })
}

/// The text without `#[cfg(test)] mod … { … }` blocks (tests may reach anywhere).
fn without_tests(text: &str) -> String {
    let mut s = text.to_string();
    while let Some(i) = s.find("#[cfg(test)]") {
        let Some(open) = s[i..].find('{').map(|o| i + o) else {
            break;
        };
        let mut depth = 0;
        let mut end = s.len();
        for (k, c) in s[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        s.replace_range(i..end, "");
    }
    s
}

/// The longest known module that `path` (`a::b::C`) starts with.
fn resolve(path: &[&str], known: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|c| known.contains(c))
}

/// The paths a file names: `crate::…` (`combicam_gpu::…` in the binary) and `super::…`,
/// with `{a, b::c}` groups expanded one level.
fn named_paths(module: &str, is_dir_module: bool, text: &str) -> Vec<Vec<String>> {
    let here: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let parent: Vec<&str> = if is_dir_module {
        here.clone()
    } else {
        here[..here.len().saturating_sub(1)].to_vec()
    };
    let roots: &[(&str, Vec<&str>)] = &[
        ("crate::", vec![]),
        ("combicam_gpu::", vec![]),
        ("super::", parent),
    ];
    let mut out = Vec::new();
    for (prefix, base) in roots {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{'))
                .unwrap_or(rest.len());
            let head = rest[..end].trim_end_matches(':');
            let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            if let Some(g) = head.find('{') {
                path.extend(
                    head[..g]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                );
                let close = rest.find('}').unwrap_or(rest.len());
                for item in rest[g + 1..close].split(',') {
                    let mut p = path.clone();
                    p.extend(
                        item.trim()
                            .split("::")
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty() && s != "self" && s != "{"),
                    );
                    out.push(p);
                }
                out.push(path);
            } else {
                path.extend(head.split("::").filter(|s| !s.is_empty()).map(String::from));
                out.push(path);
            }
        }
    }
    out
}

/// module → the modules it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.iter().map(|m| m.1.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, module, text) in &mods {
        let name = path.file_name().unwrap().to_string_lossy();
        let dir_module = name == "mod.rs" || name == "lib.rs" || name == "main.rs";
        for p in named_paths(module, dir_module, &without_tests(text)) {
            let p: Vec<&str> = p.iter().map(String::as_str).collect();
            if let Some(target) = resolve(&p, &known)
                && !target.is_empty()
                && &target != module
                && !target.starts_with("bin")
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

#[test]
fn imports_run_down_the_layers_without_circles() {
    let edges = imports();
    let mut back = Vec::new();
    let mut circles = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            let (lf, lt) = (layer(from), layer(to));
            assert!(
                lf.is_some(),
                "module {from} has no layer: add it to tests/house.rs"
            );
            assert!(
                lt.is_some(),
                "module {to} has no layer: add it to tests/house.rs"
            );
            if lt > lf {
                back.push(format!("{from} (layer {lf:?}) imports {to} (layer {lt:?})"));
            }
            if from < to && edges.get(to).is_some_and(|t| t.contains(from)) {
                circles.push(format!("{from} <-> {to}"));
            }
        }
    }
    let arrows: usize = edges.values().map(BTreeSet::len).sum();
    println!(
        "{} modules, {arrows} imports, {} back up a layer, {} circles",
        edges.len(),
        back.len(),
        circles.len()
    );
    assert!(
        back.is_empty(),
        "imports back up a layer:\n{}",
        back.join("\n")
    );
    assert!(
        circles.is_empty(),
        "modules importing each other:\n{}",
        circles.join("\n")
    );
}

/// (name, first line, lines) of every `fn` with a body.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .unwrap_or(t);
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut started) = (0i32, false);
        for (j, l2) in lines.iter().enumerate().skip(i) {
            // braces in strings and comments are rare in signatures and bodies here; strip
            // the obvious ones
            let code = l2.split("//").next().unwrap_or("");
            let mut in_str = false;
            let mut prev = ' ';
            for c in code.chars() {
                match c {
                    '"' if prev != '\\' && prev != '\'' => in_str = !in_str,
                    '{' if !in_str && prev != '\'' => {
                        depth += 1;
                        started = true
                    }
                    '}' if !in_str && prev != '\'' => depth -= 1,
                    _ => {}
                }
                prev = c;
            }
            if !started && code.trim_end().ends_with(';') {
                break;
            }
            if started && depth == 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

#[test]
fn files_and_functions_are_short_and_arguments_are_named() {
    let mut long_files = Vec::new();
    let mut long_fns = Vec::new();
    let mut allows = Vec::new();
    let mut unit_tests = Vec::new();
    let (mut most_file, mut most_fn) = (0, 0);
    for (path, _, text) in modules() {
        let n = text.lines().count();
        most_file = most_file.max(n);
        if n > MAX_FILE_LINES {
            long_files.push(format!("{} ({n} lines)", path.display()));
        }
        for (name, line, len) in functions(&text) {
            most_fn = most_fn.max(len);
            if len > MAX_FN_LINES {
                long_fns.push(format!("{}:{line} fn {name} ({len} lines)", path.display()));
            }
        }
        if text.contains(&format!("clippy::{}", "too_many_arguments")) {
            allows.push(path.display().to_string());
        }
        if text.contains(&format!("#[cfg({})]", "test")) {
            unit_tests.push(path.display().to_string());
        }
    }
    println!("longest file {most_file} lines, longest function {most_fn} lines");
    assert!(
        long_files.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long_files:?}"
    );
    assert!(
        long_fns.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long_fns:?}"
    );
    assert!(
        allows.is_empty(),
        "too_many_arguments allowed in {allows:?}: name the arguments (a struct or tuples)"
    );
    // Cargo.toml builds no unit-test target for the library or the binary (`test = false`):
    // a `#[cfg(test)]` module in src/ would never run
    assert!(
        unit_tests.is_empty(),
        "#[cfg(test)] in {unit_tests:?}: unit tests there never run; move them to tests/"
    );
}

#[test]
fn the_checker_sees_a_back_arrow_and_a_circle() {
    // the parser itself: a lower layer naming a higher one, and a pair naming each other
    let p = named_paths(
        "ops::conv",
        false,
        "use crate::model::config::ModelCfg; use super::{pad, gemm::GemmArgs};",
    );
    let joined: Vec<String> = p.iter().map(|v| v.join("::")).collect();
    assert!(
        joined.contains(&"model::config::ModelCfg".to_string()),
        "{joined:?}"
    );
    assert!(joined.contains(&"ops::pad".to_string()), "{joined:?}");
    assert!(
        joined.contains(&"ops::gemm::GemmArgs".to_string()),
        "{joined:?}"
    );
    assert!(layer("ops::conv") < layer("model::config"));
    let f = functions("fn a() {\n    let s = \"{\";\n}\nfn b(x: u32);\npub fn c() {\n}\n");
    assert_eq!(
        f,
        vec![("a".to_string(), 1, 3), ("c".to_string(), 5, 2)],
        "function spans"
    );
}
