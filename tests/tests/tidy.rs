//! Repository rules that are cheap to check and easy to forget, run as tests
//! (after rust-analyzer's `tidy.rs`): every Rust file opens with a `//!`
//! paragraph saying what it owns; the provider tests which kind of host a
//! service has only in `service/target` (its modules and the one dispatch).

use std::path::{Path, PathBuf};

use launch_e2e::binaries::workspace_root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            rust_files(&path, out);
        } else if file_type.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_comment() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(
        files.len() > 10,
        "found only {files:?} under {}",
        root.display()
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start_matches('\u{feff}').starts_with("//!")
        })
        .map(|path| {
            path.strip_prefix(&root)
                .unwrap_or(path)
                .display()
                .to_string()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "these files must start with a `//!` doc paragraph saying what the module owns:\n  {}",
        offenders.join("\n  ")
    );
}

/// The kinds of host `launch_service` knows.
const KINDS: [(&str, &str); 3] = [("aws", "Aws"), ("proxmox", "Proxmox"), ("docker", "Docker")];

/// `file:line: text` of every code line under `dir` that tests a kind of
/// host (`target == "aws"`, `is_proxmox(…)`, a `"docker" =>` arm,
/// `Kind::Aws`), skipping comments and the files `allowed` says may.
fn target_tests(dir: &Path, allowed: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut found = Vec::new();
    for path in files.iter().filter(|p| !allowed(p)) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let tests_a_kind = KINDS.iter().any(|(name, variant)| {
                [
                    format!("== \"{name}\""),
                    format!("\"{name}\" =="),
                    format!("!= \"{name}\""),
                    format!("\"{name}\" !="),
                    format!("Some(\"{name}\")"),
                    format!("\"{name}\" =>"),
                    format!("\"{name}\" |"),
                    format!("is_{name}("),
                    format!("Kind::{variant}"),
                ]
                .iter()
                .any(|pattern| code.contains(pattern.as_str()))
            });
            if tests_a_kind {
                let shown = path.strip_prefix(dir).unwrap_or(path).display();
                found.push(format!("{shown}:{}: {code}", number + 1));
            }
        }
    }
    found
}

#[test]
fn only_the_target_modules_test_which_kind_of_host_a_service_has() {
    let src = workspace_root().join("provider/src");
    let target = src.join("service/target");
    let allowed = |path: &Path| path.starts_with(&target) || path == target.with_extension("rs");
    let found = target_tests(&src, allowed);
    assert!(
        found.is_empty(),
        "a kind of host is tested outside provider/src/service/target: move the difference into the Target trait:\n  {}",
        found.join("\n  ")
    );

    // Positive control: the walker finds a planted test, and the dispatch
    // file it is allowed to skip really holds them.
    let planted = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        planted.path().join("planted.rs"),
        "//! planted\nfn f(target: &str) -> bool {\n    // target == \"aws\" in a comment is fine\n    target == \"aws\"\n}\n",
    )
    .expect("write the planted file");
    assert_eq!(
        target_tests(planted.path(), |_| false),
        ["planted.rs:4: target == \"aws\""]
    );
    assert!(
        !target_tests(&src, |_| false).is_empty(),
        "the dispatch in service/target.rs names every kind"
    );
}
