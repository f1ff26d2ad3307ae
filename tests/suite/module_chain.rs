//! `src/lib.rs` declares the exporter's modules in the order of their imports: each module uses
//! only modules declared above it, so the list is the real chain of the code (and there is no
//! import cycle between top-level modules). This reads every `crate::<module>` path of each
//! module's files, tests left out, and checks it against that order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The top-level modules in the order `src/lib.rs` declares them (re-exported ones included).
fn declared_order(lib: &str) -> Vec<String> {
    let mut order = Vec::new();
    for line in lib.lines() {
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|rest| rest.strip_suffix(';'))
        {
            order.push(name.to_string());
        } else if let Some(list) = line
            .strip_prefix("pub use workspacesweb_accounting::{")
            .and_then(|rest| rest.strip_suffix("};"))
        {
            order.extend(list.split(", ").map(str::to_string));
        }
    }
    order
}

/// Every `.rs` file of a module: `src/<name>.rs`, or everything under `src/<name>/`.
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The top-level modules a file's code names with `crate::<module>`, its test module left out.
fn uses(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code = code
        .split("#[cfg(all(test, feature = \"demo\"))]")
        .next()
        .unwrap_or(code);
    code.match_indices("crate::")
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn every_module_uses_only_modules_declared_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let order = declared_order(&lib);
    assert!(order.len() > 15, "read the declarations: {order:?}");
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .chain([("VERSION", 0)]) // the build's version, re-exported from `build_info`
        .collect();
    let mut backwards = Vec::new();
    for (i, module) in order.iter().enumerate() {
        for file in files_of(&src, module) {
            let text = std::fs::read_to_string(&file).expect("source file");
            for used in uses(&text) {
                match rank.get(used.as_str()) {
                    Some(&r) if r <= i => {}
                    Some(_) => backwards.push(format!("{} uses {used}", file.display())),
                    None => backwards.push(format!("{} uses undeclared {used}", file.display())),
                }
            }
        }
    }
    backwards.dedup();
    assert!(
        backwards.is_empty(),
        "modules used above their declaration in src/lib.rs:\n{}",
        backwards.join("\n")
    );
}
