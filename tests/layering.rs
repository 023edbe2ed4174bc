//! The layering rule, checked on the source: a module may import its own
//! layer and the layers below it, never one above. The layers, bottom up:
//! `infra` < `store` < `auth` < `presence` < `transport` < `server`, with
//! `cli` on top. Unit tests (`#[cfg(test)]` and `tests.rs`) may reach
//! anywhere. Strict order also means no import cycle between top-level
//! modules.

use std::path::{Path, PathBuf};

const LAYERS: [&str; 7] = [
    "infra",
    "store",
    "auth",
    "presence",
    "transport",
    "server",
    "cli",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| *layer == module)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's non-test code names as `crate::<name>`.
/// The scan stops at the unit-test module (`#[cfg(test)]` then `mod`) and
/// skips a test-only `use`; a `#[cfg(test)]` on any other item mid-file
/// does not end it, so the code after such an item is still checked.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut test_attribute = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if test_attribute {
            let module = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
            if module && !trimmed.ends_with(';') {
                break;
            }
            if module || trimmed.starts_with("use ") {
                // `mod tests;` or a test-only import: skip this line only.
                test_attribute = false;
                continue;
            }
        }
        if !trimmed.is_empty() {
            // Further attributes of the same item keep it test-only.
            test_attribute = trimmed.starts_with("#[cfg(test)]")
                || (test_attribute && trimmed.starts_with("#["));
        }
        // Comments and doc links name paths without importing them.
        let mut rest = line.split("//").next().unwrap_or_default();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((n + 1, name));
        }
    }
    found
}

#[test]
fn no_layer_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs"))
            .unwrap_or_default();
        if relative.ends_with("tests.rs") || matches!(top, "lib" | "main" | "web") {
            continue;
        }
        let own = rank(top).unwrap_or_else(|| panic!("{top} is in no layer; add it to LAYERS"));
        let text = std::fs::read_to_string(file).expect("read");
        for (line, target) in imports(&text) {
            checked += 1;
            let Some(target_rank) = rank(&target) else {
                violations.push(format!(
                    "{}:{line}: crate::{target} is in no layer",
                    relative.display()
                ));
                continue;
            };
            if target_rank > own {
                violations.push(format!(
                    "{}:{line}: {top} imports crate::{target}, a higher layer",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} imports found; is the scan broken?"
    );
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scan_sees_an_upward_import() {
    let text = "use crate::infra::error::DomainError;\nfn f() { crate::transport::x(); }\n#[cfg(test)]\nuse crate::server::y;";
    let found: Vec<String> = imports(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["infra", "transport"]);
}

#[test]
fn a_test_only_item_mid_file_does_not_hide_the_code_after_it() {
    let text = "impl A {\n    #[cfg(test)]\n    pub fn len(&self) -> usize { 0 }\n    fn f() { crate::server::x(); }\n}\n#[cfg(test)]\nmod tests;";
    let found: Vec<String> = imports(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["server"]);
}
