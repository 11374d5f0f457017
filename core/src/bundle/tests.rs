//! Bundle round trips and the hostile archives unpacking must refuse.

use super::*;

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, body) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }
    dir
}

fn pack(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    pack_dir(dir, &mut out).unwrap();
    out
}

/// One raw archive entry: name, type, link target, body.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// Builds a tar.gz with raw header names, bypassing the tar crate's own path checks.
fn hostile(entries: &[RawEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, kind, link, body) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(*kind);
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *body).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn refused(bundle: &[u8]) -> String {
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("release");
    let err = unpack(bundle, &dest, &Limits::default())
        .unwrap_err()
        .to_string();
    let left: Vec<_> = fs::read_dir(parent.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused bundle left {left:?} behind");
    assert!(
        inspect(bundle, &Limits::default()).is_err(),
        "inspect accepted what unpack refused"
    );
    err
}

#[test]
fn round_trip_keeps_files_modes_and_finds_compose_and_config() {
    let dir = tree(&[
        ("compose.yaml", "services: {}\n"),
        ("launch.toml", "port = 8080\n"),
        ("www/index.html", "hi"),
        (".env", "SECRET=do-not-pack"),
        (".git/HEAD", "ref"),
    ]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bundle = pack(dir.path());
    let summary = inspect(&bundle[..], &Limits::default()).unwrap();
    assert_eq!(summary.compose_file.as_deref(), Some("compose.yaml"));
    assert_eq!(summary.service_config.as_deref(), Some("port = 8080\n"));

    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("r1");
    let unpacked = unpack(&bundle[..], &dest, &Limits::default()).unwrap();
    assert_eq!(unpacked, summary);
    assert_eq!(
        fs::read_to_string(dest.join("www/index.html")).unwrap(),
        "hi"
    );
    assert!(!dest.join(".env").exists(), ".env must never be packed");
    assert!(!dest.join(".git").exists(), ".git must never be packed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dest.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "executable bit lost: {mode:o}");
    }
}

#[test]
fn packing_is_deterministic() {
    let dir = tree(&[("compose.yaml", "a"), ("b/c.txt", "c")]);
    assert_eq!(sha256_hex(&pack(dir.path())), sha256_hex(&pack(dir.path())));
}

#[cfg(unix)]
#[test]
fn packing_stores_inside_links_as_files_and_refuses_outside_links() {
    let outside = tree(&[("secret.txt", "outside")]);
    let dir = tree(&[("compose.yaml", "a"), ("real.txt", "inside")]);
    std::os::unix::fs::symlink("real.txt", dir.path().join("alias.txt")).unwrap();
    let bundle = pack(dir.path());
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("r");
    unpack(&bundle[..], &dest, &Limits::default()).unwrap();
    let alias = fs::symlink_metadata(dest.join("alias.txt")).unwrap();
    assert!(alias.is_file());
    assert_eq!(
        fs::read_to_string(dest.join("alias.txt")).unwrap(),
        "inside"
    );

    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("leak")).unwrap();
    let err = pack_dir(dir.path(), Vec::new()).unwrap_err().to_string();
    assert!(err.contains("outside the service directory"), "{err}");
}

#[test]
fn unpack_refuses_parent_dir_entries() {
    let err = refused(&hostile(&[(
        b"../evil",
        tar::EntryType::Regular,
        b"",
        b"x",
    )]));
    assert!(err.contains("climbs out with '..'"), "{err}");
    let err = refused(&hostile(&[(
        b"a/../../evil",
        tar::EntryType::Regular,
        b"",
        b"x",
    )]));
    assert!(err.contains("'..'"), "{err}");
}

#[test]
fn unpack_refuses_absolute_entries() {
    let err = refused(&hostile(&[(
        b"/tmp/evil",
        tar::EntryType::Regular,
        b"",
        b"x",
    )]));
    assert!(err.contains("absolute path"), "{err}");
}

#[test]
fn unpack_refuses_symlinks_hardlinks_and_devices() {
    let err = refused(&hostile(&[(
        b"link",
        tar::EntryType::Symlink,
        b"/etc",
        b"",
    )]));
    assert!(err.contains("is a link"), "{err}");
    let err = refused(&hostile(&[
        (b"compose.yaml", tar::EntryType::Regular, b"", b"x"),
        (b"hard", tar::EntryType::Link, b"../../etc/passwd", b""),
    ]));
    assert!(err.contains("is a link"), "{err}");
    let err = refused(&hostile(&[(b"dev", tar::EntryType::Char, b"", b"")]));
    assert!(err.contains("only files and directories"), "{err}");
    let err = refused(&hostile(&[(b"fifo", tar::EntryType::Fifo, b"", b"")]));
    assert!(err.contains("only files and directories"), "{err}");
}

#[test]
fn unpack_refuses_duplicate_entries() {
    let err = refused(&hostile(&[
        (b"a", tar::EntryType::Regular, b"", b"1"),
        (b"./a", tar::EntryType::Regular, b"", b"2"),
    ]));
    assert!(err.contains("appears twice"), "{err}");
}

#[test]
fn unpack_stops_a_decompression_bomb_at_the_limit() {
    // 64 MiB of zeros compresses to ~64 KiB; the limit is 1 MiB unpacked.
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let bomb = hostile(&[(b"zeros", tar::EntryType::Regular, b"", &zeros)]);
    assert!(bomb.len() < 1024 * 1024);
    let limits = Limits {
        max_unpacked_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let parent = tempfile::tempdir().unwrap();
    let err = unpack(&bomb[..], &parent.path().join("r"), &limits).unwrap_err();
    assert!(
        matches!(err, Error::BundleTooLarge { limit } if limit == 1024 * 1024),
        "{err}"
    );
    assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
}

#[test]
fn unpack_refuses_an_oversized_compressed_stream() {
    let dir = tree(&[("compose.yaml", &"x".repeat(4096))]);
    let bundle = pack(dir.path());
    let limits = Limits {
        max_compressed_bytes: 16,
        ..Limits::default()
    };
    let err = inspect(&bundle[..], &limits).unwrap_err();
    assert!(matches!(err, Error::BundleTooLarge { limit: 16 }), "{err}");
}

#[test]
fn unpack_refuses_garbage_and_an_existing_destination() {
    let err = refused(b"not a tarball at all");
    assert!(err.contains("not a valid tar.gz"), "{err}");

    let dir = tree(&[("compose.yaml", "a")]);
    let bundle = pack(dir.path());
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("r");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), "mine").unwrap();
    unpack(&bundle[..], &dest, &Limits::default()).unwrap_err();
    assert_eq!(fs::read_to_string(dest.join("keep")).unwrap(), "mine");
}

/// Runs a command in `dir`, panicking with its stderr when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bundles_made_by_tar_and_git_archive_are_accepted() {
    let dir = tree(&[("compose.yaml", "services: {}\n"), ("web/index.html", "hi")]);
    let out = tempfile::tempdir().unwrap();
    let tarball = out.path().join("b.tgz");
    // `./` first, then `./compose.yaml`, …
    run(
        dir.path(),
        "tar",
        &[
            "-czf",
            tarball.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
            ".",
        ],
    );
    let summary = inspect(&fs::read(&tarball).unwrap()[..], &Limits::default()).unwrap();
    assert_eq!(summary.compose_file.as_deref(), Some("compose.yaml"));
    // A pax global header (the commit id) comes first.
    run(dir.path(), "git", &["init", "-q"]);
    run(dir.path(), "git", &["add", "."]);
    run(
        dir.path(),
        "git",
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ],
    );
    let archive = out.path().join("g.tgz");
    run(
        dir.path(),
        "git",
        &[
            "archive",
            "--format=tar.gz",
            "-o",
            archive.to_str().unwrap(),
            "HEAD",
        ],
    );
    let parent = tempfile::tempdir().unwrap();
    let summary = unpack(
        &fs::read(&archive).unwrap()[..],
        &parent.path().join("r"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(summary.compose_texts["compose.yaml"], "services: {}\n");
    assert_eq!(
        fs::read_to_string(parent.path().join("r/web/index.html")).unwrap(),
        "hi"
    );
}

#[test]
fn names_no_host_can_write_are_refused() {
    let long = vec![b'a'; 300];
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(1);
    header.set_entry_type(tar::EntryType::Regular);
    // GNU long names carry the 300 bytes.
    builder
        .append_data(&mut header, std::str::from_utf8(&long).unwrap(), &b"x"[..])
        .unwrap();
    let bundle = builder.into_inner().unwrap().finish().unwrap();
    let err = refused(&bundle);
    assert!(
        err.contains("300 bytes") && err.contains("at most 255"),
        "{err}"
    );

    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut pax = tar::Header::new_ustar();
    let record = b"16 path=a\0b.txt\n";
    pax.set_size(record.len() as u64);
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_cksum();
    builder.append(&pax, &record[..]).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("placeholder").unwrap();
    header.set_size(1);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, &b"x"[..]).unwrap();
    let bundle = builder.into_inner().unwrap().finish().unwrap();
    let err = refused(&bundle);
    assert!(err.contains("NUL byte"), "{err}");
}

#[test]
fn ignore_files_and_env_decide_what_is_packed() {
    let dir = tree(&[
        ("compose.yaml", "a"),
        (".env", "TAG=1"),
        (".launchignore", "*.log\nnode_modules/\n!keep.log\n"),
        (".dockerignore", "secret.key\n"),
        ("app.log", "x"),
        ("keep.log", "x"),
        ("node_modules/m/index.js", "x"),
        ("secret.key", "x"),
        ("src/main.rs", "x"),
        ("src/.env", "nested"),
    ]);
    let names = |bundle: Vec<u8>| -> Vec<String> {
        let mut archive = tar::Archive::new(GzDecoder::new(&bundle[..]));
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let packed = names(pack(dir.path()));
    assert_eq!(
        packed,
        [
            ".dockerignore",
            ".launchignore",
            "compose.yaml",
            "keep.log",
            "src",
            "src/main.rs"
        ]
    );
    let mut out = Vec::new();
    pack_dir_with(dir.path(), &mut out, &PackOptions { include_env: true }).unwrap();
    let packed = names(out);
    assert!(packed.contains(&".env".to_owned()), "{packed:?}");
    assert!(!packed.contains(&"src/.env".to_owned()), "{packed:?}");
    let parent = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    pack_dir_with(dir.path(), &mut out, &PackOptions { include_env: true }).unwrap();
    let summary = unpack(&out[..], &parent.path().join("r"), &Limits::default()).unwrap();
    assert_eq!(summary.dotenv.as_deref(), Some("TAG=1"));
}

#[test]
fn an_ignore_file_cannot_drop_the_compose_file() {
    let dir = tree(&[
        ("compose.yaml", "a"),
        (".dockerignore", "*\n!app/\n!app/**\n"),
        ("app/x", "x"),
        ("other", "x"),
    ]);
    let summary = inspect(&pack(dir.path())[..], &Limits::default()).unwrap();
    assert_eq!(summary.compose_file.as_deref(), Some("compose.yaml"));
    assert_eq!(summary.files, 4, "compose.yaml, .dockerignore, app, app/x");
}
