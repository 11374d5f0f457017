//! The bundle: a service directory as a gzip-compressed tar, the one thing that
//! travels from `launch deploy` through the control plane to an agent.
//!
//! Packing follows symbolic links that stay inside the directory and stores
//! their content, so a bundle never needs links. Unpacking is the security
//! boundary and trusts nothing: it refuses absolute paths, `..`, links of any
//! kind, devices and FIFOs, duplicate entries, archives over the entry or byte
//! limits (a decompression bomb stops at the limit, not at the end), and writes
//! into a fresh staging directory that is renamed into place only when every
//! entry was fine. On any error the staging directory is removed, so a refused
//! bundle leaves nothing behind.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::Error;

/// Compose file names, in the order `docker compose` itself looks for them.
pub const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The per-service config file at the root of a bundle.
pub const SERVICE_CONFIG_FILE: &str = "launch.toml";

/// The dotenv file compose reads for interpolation, beside the compose file.
pub const DOTENV_FILE: &str = ".env";

/// Names never packed: VCS data and local secrets (`.env` is written by the agent).
const NEVER_PACKED: [&str; 2] = [".git", ".env"];

/// Bounds that apply to every bundle; all are checked while reading.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest compressed bundle accepted (what travels over the wire).
    pub max_compressed_bytes: u64,
    /// Largest sum of file sizes once unpacked.
    pub max_unpacked_bytes: u64,
    /// Most entries (files and directories).
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed_bytes: 256 * 1024 * 1024,
            max_unpacked_bytes: 1024 * 1024 * 1024,
            max_entries: 100_000,
        }
    }
}

impl Limits {
    /// The limits for a compressed size of `max_bundle_bytes` (the one flag,
    /// `--max-bundle-bytes`): the unpacked size may be 4 times that, at
    /// least the default 1 GiB, so raising the flag raises both.
    pub fn for_max_bundle_bytes(max_bundle_bytes: u64) -> Limits {
        let default = Limits::default();
        Limits {
            max_compressed_bytes: max_bundle_bytes,
            max_unpacked_bytes: max_bundle_bytes
                .saturating_mul(4)
                .max(default.max_unpacked_bytes),
            max_entries: default.max_entries,
        }
    }

    /// These limits with `other`'s entry count.
    pub fn max_entries_of(self, other: &Limits) -> Limits {
        Limits {
            max_entries: other.max_entries,
            ..self
        }
    }
}

/// What a bundle holds, as far as Launch cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub unpacked_bytes: u64,
    /// The compose file at the bundle's root, if any.
    pub compose_file: Option<String>,
    /// The text of `launch.toml` at the bundle's root, if any.
    pub service_config: Option<String>,
    /// The text of each compose file at the bundle's root, by name.
    pub compose_texts: std::collections::BTreeMap<String, String>,
    /// The text of a `.env` at the bundle's root (`launch deploy --include-env`).
    pub dotenv: Option<String>,
}

impl Summary {
    /// The compose file the agent will run (name, text): the first of
    /// [`COMPOSE_FILES`] present, in compose's own order.
    pub fn compose(&self) -> Option<(&str, &str)> {
        COMPOSE_FILES.iter().find_map(|name| {
            self.compose_texts
                .get(*name)
                .map(|text| (*name, text.as_str()))
        })
    }
}

/// Files the packer reads its ignore patterns from (gitignore syntax), at
/// the directory's root; both apply.
pub const IGNORE_FILES: [&str; 2] = [".launchignore", ".dockerignore"];

/// How to pack a directory.
#[derive(Clone, Debug, Default)]
pub struct PackOptions {
    /// Pack the root `.env` too (left out by default: it often holds secrets).
    pub include_env: bool,
}

/// Packs `dir` into a tar.gz written to `out`, deterministically (sorted
/// entries, zero mtimes and owners), so the same tree gives the same sha256.
pub fn pack_dir(dir: &Path, out: impl Write) -> Result<Summary, Error> {
    pack_dir_with(dir, out, &PackOptions::default())
}

/// [`pack_dir`] with options; paths matched by [`IGNORE_FILES`] are left out.
pub fn pack_dir_with(dir: &Path, out: impl Write, options: &PackOptions) -> Result<Summary, Error> {
    let root = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let ignore = ignore_rules(&root)?;
    let encoder = GzEncoder::new(out, Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut summary = Summary::default();
    let mut walk = Walk {
        root: &root,
        ignore: &ignore,
        include_env: options.include_env,
        visiting: HashSet::new(),
    };
    walk.pack_tree(&root, Path::new(""), &mut builder, &mut summary)?;
    let encoder = builder.into_inner().map_err(|e| Error::io(dir, e))?;
    encoder.finish().map_err(|e| Error::io(dir, e))?;
    Ok(summary)
}

/// Reads the ignore files at `root` into one matcher.
fn ignore_rules(root: &Path) -> Result<ignore::gitignore::Gitignore, Error> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    for name in IGNORE_FILES {
        let path = root.join(name);
        if path.is_file()
            && let Some(err) = builder.add(&path)
        {
            return Err(Error::Config {
                path,
                message: format!("{err}: fix the pattern (gitignore syntax)"),
            });
        }
    }
    builder.build().map_err(|e| Error::Config {
        path: root.join(IGNORE_FILES[0]),
        message: e.to_string(),
    })
}

/// The state of one packing walk.
struct Walk<'a> {
    root: &'a Path,
    ignore: &'a ignore::gitignore::Gitignore,
    include_env: bool,
    visiting: HashSet<PathBuf>,
}

impl Walk<'_> {
    fn pack_tree<W: Write>(
        &mut self,
        dir: &Path,
        rel: &Path,
        builder: &mut tar::Builder<W>,
        summary: &mut Summary,
    ) -> Result<(), Error> {
        let root = self.root;
        let real_dir = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        if !self.visiting.insert(real_dir.clone()) {
            return Err(Error::UnsafeBundle(format!(
                "{} is a symbolic link loop: remove the link",
                rel.display()
            )));
        }
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(dir, e))?;
        names.sort();
        for name in names {
            let root_env = rel.as_os_str().is_empty() && name == DOTENV_FILE && self.include_env;
            if NEVER_PACKED.iter().any(|n| name == *n) && !root_env {
                continue;
            }
            let path = dir.join(&name);
            let rel_path = rel.join(&name);
            let is_dir = path.is_dir();
            // What a deploy cannot do without stays, whatever the patterns say
            // (docker also always sends the Dockerfile and .dockerignore).
            let needed = rel.as_os_str().is_empty()
                && name.to_str().is_some_and(|n| {
                    COMPOSE_FILES.contains(&n)
                        || [SERVICE_CONFIG_FILE, "Dockerfile", ".dockerignore"].contains(&n)
                });
            if !needed
                && self
                    .ignore
                    .matched_path_or_any_parents(root.join(&rel_path), is_dir)
                    .is_ignore()
            {
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            let (real, meta) = if meta.file_type().is_symlink() {
                let real = fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
                if !real.starts_with(root) {
                    return Err(Error::UnsafeBundle(format!(
                        "{} is a symbolic link to {}, outside the service directory: copy the file in instead",
                        rel_path.display(),
                        real.display()
                    )));
                }
                let meta = fs::metadata(&real).map_err(|e| Error::io(&real, e))?;
                (real, meta)
            } else {
                (path.clone(), meta)
            };
            if meta.is_dir() {
                append_dir(builder, &rel_path)?;
                summary.files += 1;
                self.pack_tree(&real, &rel_path, builder, summary)?;
            } else if meta.is_file() {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                header.set_mode(file_mode(&meta));
                header.set_mtime(0);
                let file = fs::File::open(&real).map_err(|e| Error::io(&real, e))?;
                builder
                    .append_data(&mut header, &rel_path, file)
                    .map_err(|e| Error::io(&real, e))?;
                summary.files += 1;
                summary.unpacked_bytes += meta.len();
                note_root_file(summary, &rel_path, &real)?;
            } else {
                return Err(Error::UnsafeBundle(format!(
                    "{} is neither a file nor a directory (a socket, FIFO or device): remove it from the service directory",
                    rel_path.display()
                )));
            }
        }
        self.visiting.remove(&real_dir);
        Ok(())
    }
}

fn append_dir<W: Write>(builder: &mut tar::Builder<W>, rel: &Path) -> Result<(), Error> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(0);
    builder
        .append_data(&mut header, rel, io::empty())
        .map_err(|e| Error::io(rel, e))
}

fn note_root_file(summary: &mut Summary, rel: &Path, real: &Path) -> Result<(), Error> {
    let Some(name) = rel.to_str() else {
        return Ok(());
    };
    if summary.compose_file.is_none() && COMPOSE_FILES.contains(&name) {
        summary.compose_file = Some(name.to_owned());
    }
    if name == SERVICE_CONFIG_FILE {
        let text = fs::read_to_string(real).map_err(|e| Error::io(real, e))?;
        summary.service_config = Some(text);
    }
    Ok(())
}

#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

#[cfg(not(unix))]
fn file_mode(_: &fs::Metadata) -> u32 {
    0o644
}

/// Reads a whole bundle and checks every entry without writing anything.
pub fn inspect(reader: impl Read, limits: &Limits) -> Result<Summary, Error> {
    walk(reader, limits, None)
}

/// Unpacks a bundle into `dest`, which must not exist yet. Entries are written
/// to a staging directory beside it that is renamed to `dest` only when the
/// whole bundle was accepted; on error nothing is left behind.
pub fn unpack(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Summary, Error> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::io(
            dest,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "release directory already exists",
            ),
        ));
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("bundle");
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let result = walk(reader, limits, Some(&staging)).and_then(|summary| {
        fs::rename(&staging, dest)
            .map(|()| summary)
            .map_err(|e| Error::io(dest, e))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Counts the bytes read from the underlying (compressed) stream.
struct Counting<R> {
    inner: R,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(TooLarge));
        }
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bundle over the size limit")
    }
}

impl std::error::Error for TooLarge {}

fn archive_error(err: io::Error, limits: &Limits) -> Error {
    if err.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
        Error::BundleTooLarge {
            limit: limits.max_compressed_bytes,
        }
    } else {
        Error::Archive(err)
    }
}

fn walk(reader: impl Read, limits: &Limits, dest: Option<&Path>) -> Result<Summary, Error> {
    let counting = Counting {
        inner: reader,
        count: 0,
        limit: limits.max_compressed_bytes,
    };
    let mut archive = tar::Archive::new(GzDecoder::new(counting));
    let mut summary = Summary::default();
    let mut seen = HashSet::new();
    let entries = archive.entries().map_err(|e| archive_error(e, limits))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| archive_error(e, limits))?;
        summary.files += 1;
        if summary.files > limits.max_entries {
            return Err(Error::UnsafeBundle(format!(
                "it has more than {} entries: remove generated files from the service directory",
                limits.max_entries
            )));
        }
        let kind = entry.header().entry_type();
        // `git archive` starts with a pax global header (the commit id):
        // metadata, not a file.
        if kind == tar::EntryType::XGlobalHeader {
            summary.files -= 1;
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| archive_error(e, limits))?
            .into_owned();
        // `tar -czf b.tgz -C dir .` starts with `./`, the root itself.
        if kind == tar::EntryType::Directory && is_root(&raw) {
            summary.files -= 1;
            continue;
        }
        let rel = confined_path(&raw)?;
        if !seen.insert(rel.clone()) {
            return Err(Error::UnsafeBundle(format!(
                "entry {} appears twice",
                raw.display()
            )));
        }
        match kind {
            tar::EntryType::Directory => {
                if let Some(dest) = dest {
                    let path = dest.join(&rel);
                    fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| archive_error(e, limits))?;
                summary.unpacked_bytes = summary.unpacked_bytes.saturating_add(size);
                if summary.unpacked_bytes > limits.max_unpacked_bytes {
                    return Err(Error::BundleTooLarge {
                        limit: limits.max_unpacked_bytes,
                    });
                }
                let executable = entry.header().mode().unwrap_or(0o644) & 0o111 != 0;
                if let Some(name) = rel.to_str().filter(|n| !n.contains('/'))
                    && summary.compose_file.is_none()
                    && COMPOSE_FILES.contains(&name)
                {
                    summary.compose_file = Some(name.to_owned());
                }
                let is_config = rel == Path::new(SERVICE_CONFIG_FILE);
                let is_compose = rel.to_str().is_some_and(|n| COMPOSE_FILES.contains(&n));
                let is_dotenv = rel == Path::new(DOTENV_FILE);
                let text = match dest {
                    Some(dest) => {
                        let path = dest.join(&rel);
                        write_entry(&mut entry, &path, executable, limits)?;
                        (is_config || is_compose || is_dotenv)
                            .then(|| fs::read_to_string(&path).map_err(|e| Error::io(&path, e)))
                            .transpose()?
                    }
                    None if is_config || is_compose || is_dotenv => {
                        let mut text = String::new();
                        entry
                            .read_to_string(&mut text)
                            .map_err(|e| archive_error(e, limits))?;
                        Some(text)
                    }
                    None => {
                        io::copy(&mut entry, &mut io::sink())
                            .map_err(|e| archive_error(e, limits))?;
                        None
                    }
                };
                if let Some(text) = text {
                    if is_config {
                        summary.service_config = Some(text);
                    } else if is_dotenv {
                        summary.dotenv = Some(text);
                    } else {
                        summary
                            .compose_texts
                            .insert(rel.to_string_lossy().into_owned(), text);
                    }
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(Error::UnsafeBundle(format!(
                    "entry {} is a link; bundles carry files only (`launch deploy` stores the content of links inside the directory)",
                    raw.display()
                )));
            }
            other => {
                return Err(Error::UnsafeBundle(format!(
                    "entry {} is of type {other:?}; only files and directories are allowed",
                    raw.display()
                )));
            }
        }
    }
    Ok(summary)
}

fn write_entry(
    entry: &mut impl Read,
    path: &Path,
    executable: bool,
    limits: &Limits,
) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
        // The bundle never creates links; refusing to follow one is belt and braces.
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    io::copy(entry, &mut file).map_err(|e| archive_error(e, limits))?;
    Ok(())
}

/// Turns an archive path into a relative path with only normal components, or
/// says why it is refused.
fn confined_path(raw: &Path) -> Result<PathBuf, Error> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => {
                let bytes = part.as_encoded_bytes();
                if bytes.contains(&0) {
                    return Err(Error::UnsafeBundle(format!(
                        "entry {:?} has a NUL byte in its name, which no file system accepts",
                        raw
                    )));
                }
                if bytes.len() > MAX_NAME_BYTES {
                    return Err(Error::UnsafeBundle(format!(
                        "entry {:?} has a name of {} bytes; hosts accept at most {MAX_NAME_BYTES} per path component: shorten it",
                        raw,
                        bytes.len()
                    )));
                }
                out.push(part)
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(Error::UnsafeBundle(format!(
                    "entry {} climbs out with '..'",
                    raw.display()
                )));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(Error::UnsafeBundle(format!(
                    "entry {} is an absolute path",
                    raw.display()
                )));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::UnsafeBundle(format!(
            "entry {:?} has an empty path",
            raw
        )));
    }
    Ok(out)
}

/// The longest file name (one path component) Linux file systems accept.
const MAX_NAME_BYTES: usize = 255;

/// True for `.`, `./` and the like: the archive's root directory.
fn is_root(raw: &Path) -> bool {
    raw.components().all(|c| c == Component::CurDir)
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
