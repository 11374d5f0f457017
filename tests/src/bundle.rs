//! Hand-made bundles for the bad-input scenarios: tar.gz archives with raw
//! header names (`../evil`, `/tmp/evil`, symbolic links) that the `tar`
//! crate's own builder would refuse to write, and oversized archives. Built
//! the same way as `core/src/bundle/tests.rs` does.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::RngCore;

/// One raw entry: name bytes, type, link target bytes, body.
pub struct RawEntry<'a> {
    pub name: &'a [u8],
    pub kind: tar::EntryType,
    pub link: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> RawEntry<'a> {
    pub fn file(name: &'a [u8], body: &'a [u8]) -> Self {
        RawEntry {
            name,
            kind: tar::EntryType::Regular,
            link: b"",
            body,
        }
    }

    pub fn symlink(name: &'a [u8], target: &'a [u8]) -> Self {
        RawEntry {
            name,
            kind: tar::EntryType::Symlink,
            link: target,
            body: b"",
        }
    }
}

/// A minimal valid compose file, so a refusal is about the hostile entry.
pub const COMPOSE: &[u8] = b"services:\n  web:\n    image: scratch\n";

/// Builds a tar.gz from raw entries, bypassing the tar crate's path checks.
pub fn raw_tar_gz(entries: &[RawEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for entry in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..entry.name.len()].copy_from_slice(entry.name);
        header.as_old_mut().linkname[..entry.link.len()].copy_from_slice(entry.link);
        header.set_entry_type(entry.kind);
        header.set_size(entry.body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append(&header, entry.body)
            .expect("append a raw entry");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the tar.gz")
}

/// A valid bundle (compose file + `size` random, incompressible bytes) whose
/// compressed size is a little over `size`.
pub fn oversized(size: usize) -> Vec<u8> {
    let mut noise = vec![0u8; size];
    rand::rng().fill_bytes(&mut noise);
    raw_tar_gz(&[
        RawEntry::file(b"compose.yaml", COMPOSE),
        RawEntry::file(b"noise.bin", &noise),
    ])
}

/// Writes `bytes` to `<dir>/<name>` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create bundle file");
    file.write_all(bytes).expect("write bundle file");
    path
}
