//! Docs that cannot drift: every command block (```` ```sh ````, `shell`,
//! `bash`, `console`) in `README.md`, `docs/*.md`, `provider/docs/**.md`
//! and `modules/*/README.md` carries a marker on the line before it, and the
//! harness here acts on it:
//!
//! - `<!-- run -->`: the block runs with `bash -euo pipefail` in a scratch
//!   directory (one per file, so a guide's steps build on each other), with
//!   the built `launch` binaries first on PATH and HOME inside the scratch
//!   directory; `<!-- run: server -->` also starts a `launch server` and sets
//!   `LAUNCH_ADDR` and `LAUNCH_TOKEN`. A block marked `<!-- output -->`
//!   right after it lists lines the run must print, in that order (`$HOME`
//!   standing for the scratch home).
//! - `<!-- synopsis -->`: every `launch …`/`launch-agent …` line names a real
//!   subcommand (its `--help` succeeds) and only flags its `--help` lists.
//! - `<!-- not run: REASON -->`: not run, and the reason says why.
//!
//! An unmarked block fails the test, and so does any block that fails; the
//! positive controls below plant drifting blocks and check that they fail.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use launch_e2e::Server;
use launch_e2e::binaries::{self, bin_dir, workspace_root};
use launch_e2e::server::SCRUBBED_ENV;

const COMMAND_LANGUAGES: [&str; 4] = ["sh", "shell", "bash", "console"];

#[derive(Clone, Debug, PartialEq)]
enum Marker {
    Run { server: bool },
    Synopsis,
    NotRun(String),
    Output,
    None,
}

#[derive(Debug)]
struct Block {
    line: usize,
    language: String,
    marker: Marker,
    body: String,
    /// The `<!-- output -->` block that follows, if any.
    output: Option<String>,
}

fn marker(line: &str) -> Marker {
    let Some(inner) = line
        .trim()
        .strip_prefix("<!--")
        .and_then(|l| l.strip_suffix("-->"))
    else {
        return Marker::None;
    };
    let inner = inner.trim();
    match inner {
        "run" => Marker::Run { server: false },
        "run: server" => Marker::Run { server: true },
        "synopsis" => Marker::Synopsis,
        "output" => Marker::Output,
        _ => match inner.strip_prefix("not run:") {
            Some(reason) => Marker::NotRun(reason.trim().to_owned()),
            None => Marker::None,
        },
    }
}

/// Every fenced block of a Markdown text with the marker before it.
fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut previous = String::new();
    let mut open: Option<(usize, String, Marker, Vec<&str>, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let indent = line.len() - trimmed.len();
                    open = Some((
                        index + 1,
                        info.trim().to_owned(),
                        marker(&previous),
                        Vec::new(),
                        indent,
                    ));
                } else if !line.trim().is_empty() {
                    previous = line.to_owned();
                }
            }
            Some((start, language, marker, body, indent)) => {
                if trimmed.starts_with("```") {
                    let body = body.join("\n");
                    if *marker == Marker::Output
                        && let Some(last) = out.last_mut()
                    {
                        last.output = Some(body.clone());
                    }
                    out.push(Block {
                        line: *start,
                        language: language.clone(),
                        marker: marker.clone(),
                        body,
                        output: None,
                    });
                    open = None;
                    previous.clear();
                } else {
                    body.push(line.get(*indent..).unwrap_or(line.trim_start()));
                }
            }
        }
    }
    out
}

/// Runs the blocks of one document; the problems found, each naming
/// `name:line`.
struct Runner {
    scratch: tempfile::TempDir,
    server: Option<Server>,
}

impl Runner {
    fn new() -> Runner {
        let scratch = tempfile::Builder::new()
            .prefix("launch-e2e-docs-")
            .tempdir()
            .unwrap();
        fs::create_dir_all(scratch.path().join("home")).unwrap();
        Runner {
            scratch,
            server: None,
        }
    }

    fn command(&mut self, program: impl AsRef<std::ffi::OsStr>, server: bool) -> Command {
        let mut command = Command::new(program);
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("TF_") || key.starts_with("GITHUB_") {
                command.env_remove(&key);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .current_dir(self.scratch.path())
            .env("PATH", format!("{}:{path}", bin_dir().display()))
            .env("HOME", self.scratch.path().join("home"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("LAUNCH_REPO", workspace_root());
        if server {
            let server = self.server.get_or_insert_with(Server::start);
            command
                .env("LAUNCH_ADDR", server.url())
                .env("LAUNCH_TOKEN", &server.admin_token);
        }
        command
    }

    fn check(&mut self, name: &str, block: &Block) -> Result<(), String> {
        let at = format!("{name}:{}", block.line);
        match &block.marker {
            Marker::None => Err(format!(
                "{at}: a ```{} block with no marker: put `<!-- run -->`, `<!-- synopsis -->` or `<!-- not run: REASON -->` on the line before it",
                block.language
            )),
            Marker::Output => Ok(()),
            Marker::NotRun(reason) if reason.is_empty() => {
                Err(format!("{at}: `<!-- not run: -->` needs a reason"))
            }
            Marker::NotRun(_) => Ok(()),
            Marker::Synopsis => self.synopsis(&at, &block.body),
            Marker::Run { server } => self.run(&at, block, *server),
        }
    }

    fn run(&mut self, at: &str, block: &Block, server: bool) -> Result<(), String> {
        let out = self
            .command("bash", server)
            .args(["-euo", "pipefail", "-c", &block.body])
            .output()
            .map_err(|e| format!("{at}: cannot run bash: {e}"))?;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(format!(
                "{at}: the block failed ({}):\n{}\n--- printed ---\n{printed}",
                out.status, block.body
            ));
        }
        if let Some(expected) = &block.output {
            let home = self.scratch.path().join("home").display().to_string();
            let mut lines = printed.lines().map(str::trim);
            for want in expected.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let want = want.replace("$HOME", &home);
                if !lines.any(|line| line == want) {
                    return Err(format!(
                        "{at}: the documented output line {want:?} is not printed (in this order):\n{}\n--- printed ---\n{printed}",
                        block.body
                    ));
                }
            }
        }
        Ok(())
    }

    /// Each `launch …` line: the subcommand exists and knows every flag shown.
    fn synopsis(&mut self, at: &str, body: &str) -> Result<(), String> {
        let joined = body.replace("\\\n", " ");
        let mut checked = 0;
        for line in joined.lines() {
            let line = line.split(" #").next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let program = match words.next() {
                Some("launch") => binaries::launch(),
                Some("launch-agent") => binaries::launch_agent(),
                _ => continue,
            };
            let path: Vec<&str> = words
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .take_while(|w| !w.starts_with('-'))
                .collect();
            let out = self
                .command(&program, false)
                .args(&path)
                .arg("--help")
                .output()
                .map_err(|e| format!("{at}: cannot run {}: {e}", program.display()))?;
            let help = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                return Err(format!(
                    "{at}: `{} {} --help` failed: is {line:?} still a command?\n{}",
                    program.display(),
                    path.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            for flag in flags(line) {
                let known = help
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .any(|word| word == flag);
                if !known {
                    return Err(format!(
                        "{at}: {line:?} shows {flag}, which `{} --help` does not list",
                        path.join(" ")
                    ));
                }
            }
            checked += 1;
        }
        if checked == 0 {
            return Err(format!(
                "{at}: a synopsis block with no `launch` or `launch-agent` line"
            ));
        }
        Ok(())
    }
}

/// The `--flags` a synopsis line shows.
fn flags(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("--") {
        let tail = &rest[start..];
        let end = tail[2..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .map(|e| e + 2)
            .unwrap_or(tail.len());
        if end > 2 {
            out.push(tail[..end].to_owned());
        }
        rest = &tail[end.max(2)..];
    }
    out
}

/// Checks every command block of one document.
fn check_document(name: &str, text: &str) -> Vec<String> {
    let mut runner = Runner::new();
    blocks(text)
        .iter()
        .filter(|b| COMMAND_LANGUAGES.contains(&b.language.as_str()) || b.marker != Marker::None)
        .filter_map(|block| runner.check(name, block).err())
        .collect()
}

fn markdown_files(dir: &Path, recurse: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && recurse {
            markdown_files(&path, true, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// `README.md`, `docs/*.md`, `provider/docs/**.md`, `modules/*/README.md`.
fn documents() -> BTreeMap<String, String> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), false, &mut files);
    markdown_files(&root.join("provider/docs"), true, &mut files);
    if let Ok(modules) = fs::read_dir(root.join("modules")) {
        for module in modules.flatten() {
            let readme = module.path().join("README.md");
            if readme.is_file() {
                files.push(readme);
            }
        }
    }
    files
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn every_command_block_in_the_docs_runs_or_says_why_not() {
    binaries::binary("terraform-provider-launch");
    let documents = documents();
    assert!(documents.len() >= 5, "{:?}", documents.keys());
    let problems: Vec<String> = documents
        .iter()
        .flat_map(|(name, text)| check_document(name, text))
        .collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}

#[test]
fn an_unmarked_command_block_fails_the_docs_test() {
    let planted = "# Doc\n\nSome text.\n\n```sh\nlaunch --version\n```\n";
    let problems = check_document("planted.md", planted);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("planted.md:5: a ```sh block with no marker"));
    // Positive control: the same block, marked, passes.
    let marked = planted.replace("```sh", "<!-- run -->\n```sh");
    assert_eq!(check_document("marked.md", &marked), Vec::<String>::new());
}

#[test]
fn a_documented_output_that_drifted_fails_the_docs_test() {
    // A temp copy of the README with one drifting block planted in it.
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let block = |shown: &str| {
        format!(
            "{readme}\n<!-- run -->\n```sh\nlaunch --version\n```\n\n<!-- output -->\n```text\nlaunch {shown}\n```\n"
        )
    };
    let problems = check_document("README.md", &block("9.9.9"));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("\"launch 9.9.9\" is not printed")),
        "{problems:?}"
    );
    let problems = check_document("README.md", &block(version));
    assert!(
        !problems.iter().any(|p| p.contains("is not printed")),
        "{problems:?}"
    );
}

#[test]
fn a_synopsis_showing_a_flag_that_does_not_exist_fails_the_docs_test() {
    let synopsis = |flag: &str| {
        format!(
            "<!-- synopsis -->\n```sh\nlaunch deploy DIR [{flag}] \\\n              [--wait]\n```\n"
        )
    };
    let problems = check_document("planted.md", &synopsis("--no-such-flag"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("shows --no-such-flag"), "{problems:?}");
    assert_eq!(
        check_document("planted.md", &synopsis("--service S")),
        Vec::<String>::new()
    );
    let gone = "<!-- synopsis -->\n```sh\nlaunch frobnicate --now\n```\n";
    let problems = check_document("planted.md", gone);
    assert!(problems[0].contains("still a command"), "{problems:?}");
}
