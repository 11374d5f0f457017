//! Property tests: the fuzzing targets of launch-core, run by proptest on
//! every `cargo test` with a bounded number of cases (cargo-fuzz needs a
//! nightly toolchain our machines do not have). Each property is one promise
//! the rest of Launch relies on: hostile bundles never write outside their
//! release directory, names and labels parse to what DNS and compose accept,
//! no secret survives redaction, and the bootstrap script quotes any value
//! so the shell gets it back byte for byte. A failing case proptest finds is
//! shrunk and saved under `proptest-regressions/`, so it is re-run forever.

use std::io::Write;
use std::path::Path;

use launch_core::bootstrap::Bootstrap;
use launch_core::bundle::{Limits, unpack};
use launch_core::labels::Labels;
use launch_core::names::{EnvironmentName, ServiceName};
use launch_core::redact::Redactor;
use launch_core::service_config::ServiceConfig;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
}

fn hostile_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("".to_owned()),
        Just("etc".to_owned()),
        "[a-z]{1,3}",
    ];
    (any::<bool>(), prop::collection::vec(part, 1..5)).prop_map(|(absolute, parts)| {
        format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
    })
}

fn entry() -> impl Strategy<Value = (String, Kind)> {
    let kind = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
        Just(Kind::Dir),
        hostile_path().prop_map(Kind::Symlink),
        hostile_path().prop_map(Kind::Hardlink),
    ];
    (hostile_path(), kind)
}

/// A tar.gz written header by header, so names the `tar` crate's builder
/// would refuse (`..`, absolute) reach the unpacker as an attacker sends them.
fn raw_bundle(entries: &[(String, Kind)]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, kind) in entries {
        let mut header = tar::Header::new_old();
        let bytes = name.as_bytes();
        let len = bytes.len().min(99);
        header.as_old_mut().name[..len].copy_from_slice(&bytes[..len]);
        header.set_mode(0o644);
        let body: &[u8] = match kind {
            Kind::File(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                data
            }
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                &[]
            }
            Kind::Symlink(target) | Kind::Hardlink(target) => {
                header.set_entry_type(if matches!(kind, Kind::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                let t = target.as_bytes();
                let n = t.len().min(99);
                header.as_old_mut().linkname[..n].copy_from_slice(&t[..n]);
                header.set_size(0);
                &[]
            }
        };
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(body);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Names near the DNS-label rules: most from the label alphabet (valid and
/// not), some with a stray character, some anything at all.
fn name_candidates() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9-]{0,64}",
        2 => "[a-z0-9-]{0,66}",
        1 => "[a-zA-Z0-9_. -]{0,66}",
        1 => "\\PC{0,70}",
    ]
}

/// Positive control for the name property: the generator makes plenty of
/// valid labels and plenty of invalid names, so both sides are exercised.
#[test]
fn name_candidates_hold_both_valid_and_invalid_names() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = name_candidates();
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..1000 {
        let name = strategy.new_tree(&mut runner).unwrap().current();
        if is_dns_label(&name) {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid >= 200 && invalid >= 200,
        "{valid} valid, {invalid} invalid"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_bundles_never_write_outside_the_release_dir(entries in prop::collection::vec(entry(), 1..8)) {
        let sandbox = tempfile::tempdir().unwrap();
        let dest = sandbox.path().join("release");
        let result = unpack(raw_bundle(&entries).as_slice(), &dest, &Limits::default());
        let outside: Vec<String> = tree(sandbox.path())
            .into_iter()
            .filter(|p| p != "release" && !p.starts_with("release/"))
            .collect();
        prop_assert!(outside.is_empty(), "written outside the release dir: {outside:?} ({result:?})");
        if result.is_ok() {
            for path in tree(&dest) {
                let meta = std::fs::symlink_metadata(dest.join(&path)).unwrap();
                prop_assert!(!meta.file_type().is_symlink(), "a link was unpacked: {path}");
            }
        } else {
            prop_assert!(!dest.exists(), "a refused bundle left {:?}", tree(&dest));
        }
    }

    #[test]
    fn random_bytes_are_refused_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), gzip in any::<bool>()) {
        let sandbox = tempfile::tempdir().unwrap();
        let bytes_were_zeros = bytes.iter().all(|b| *b == 0);
        let data = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            gz.finish().unwrap()
        } else {
            bytes
        };
        let dest = sandbox.path().join("release");
        let result = unpack(data.as_slice(), &dest, &Limits::default());
        let outside: Vec<String> = tree(sandbox.path()).into_iter().filter(|p| !p.starts_with("release")).collect();
        prop_assert!(outside.is_empty(), "{outside:?}");
        // Only gzip around nothing or zeros is a (empty) tar archive; any
        // other bytes are refused, and a refusal leaves nothing behind.
        let empty_archive = gzip && bytes_were_zeros;
        match result {
            Ok(summary) => {
                prop_assert!(empty_archive, "random bytes were accepted as a bundle: {summary:?}");
                prop_assert!(tree(&dest).is_empty(), "{:?}", tree(&dest));
            }
            Err(_) => prop_assert!(!dest.exists(), "a refused bundle left {:?}", tree(&dest)),
        }
    }

    #[test]
    fn a_name_is_accepted_exactly_when_it_is_a_dns_label(name in name_candidates()) {
        let valid = is_dns_label(&name);
        for (what, accepted) in [
            ("service", ServiceName::parse(&name).map(|n| n.as_str().to_owned())),
            ("environment", EnvironmentName::parse(&name).map(|n| n.as_str().to_owned())),
        ] {
            match accepted {
                Ok(parsed) => {
                    prop_assert!(valid, "{what} name {name:?} is not a DNS label but was accepted");
                    prop_assert_eq!(&parsed, &name, "accepted names are kept as given");
                }
                Err(err) => prop_assert!(!valid, "{what} name {name:?} is a DNS label but was refused: {err}"),
            }
        }
    }

    #[test]
    fn labels_round_trip_through_their_text(text in "(service-name|environment|x)=[a-z0-9-]{0,8}(,(service-name|environment|y)=[a-z0-9-]{0,8}){0,3}") {
        if let Ok(labels) = Labels::parse(&text) {
            let again = Labels::parse(&labels.to_string()).expect("a printed label set parses");
            prop_assert_eq!(again.to_string(), labels.to_string());
        }
    }

    #[test]
    fn no_secret_survives_redaction(
        secrets in prop::collection::vec("[a-z0-9]{1,12}", 1..4),
        noise in prop::collection::vec("[a-z0-9 =:]{0,10}", 0..6),
    ) {
        let mut text = String::new();
        for (i, n) in noise.iter().enumerate() {
            text.push_str(n);
            text.push_str(&secrets[i % secrets.len()]);
        }
        let redactor = Redactor::new(secrets.iter().map(String::as_str));
        let out = redactor.redact(&text);
        for secret in &secrets {
            prop_assert!(!out.contains(secret.as_str()), "{secret:?} survives in {out:?} (from {text:?})");
        }
    }

    #[test]
    fn service_config_parsing_never_panics(text in "\\PC{0,200}") {
        let _ = ServiceConfig::parse(&text, Path::new("launch.toml"));
    }
}

proptest! {
    // Each case runs a shell: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_bootstrap_script_hands_any_token_to_the_shell_unchanged(token in "[^\\x00\\n]{1,40}") {
        let labels = Labels::parse("service-name=hello,environment=prod").unwrap();
        let script = Bootstrap { control_url: "http://c:7400", join_token: &token, labels: &labels }.script();
        let line = script.lines().find(|l| l.starts_with("LAUNCH_JOIN_TOKEN=")).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{line}\nprintf %s \"$LAUNCH_JOIN_TOKEN\""))
            .output()
            .unwrap();
        prop_assert!(out.status.success(), "{line}");
        prop_assert_eq!(String::from_utf8_lossy(&out.stdout).into_owned(), token);
    }
}
