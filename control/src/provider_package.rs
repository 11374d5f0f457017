//! The Terraform provider as Terraform installs it without a registry: the
//! `terraform-provider-launch` binary zipped as
//! `terraform-provider-launch_<version>_<os>_<arch>.zip`, with the two hashes
//! Terraform records in `.terraform.lock.hcl` (`h1:`, over the package's
//! contents, and `zh:`, over the zip file). The server's provider mirror
//! (`server::provider_mirror`), `launch provider install` and
//! `scripts/release-provider` (through `launch provider package`) all build
//! the package here, so the three agree byte for byte.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The provider's source address is `launch/launch`, which Terraform reads as
/// `registry.terraform.io/launch/launch`.
pub const HOSTNAME: &str = "registry.terraform.io";
pub const NAMESPACE: &str = "launch";
pub const TYPE: &str = "launch";
/// The executable's name inside a directory (what `cargo build` writes).
pub const BINARY: &str = "terraform-provider-launch";

/// The version every binary of this workspace carries, the provider's too.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Terraform's name for the platform this binary runs on, e.g. `linux_amd64`.
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// `terraform-provider-launch` beside the running executable, where `cargo
/// build` puts it next to `launch`.
pub fn binary_beside_exe() -> Option<PathBuf> {
    let candidate = std::env::current_exe().ok()?.parent()?.join(BINARY);
    candidate.is_file().then_some(candidate)
}

/// One provider package: the zip and what Terraform will say about it.
#[derive(Clone)]
pub struct Package {
    pub version: String,
    pub platform: String,
    pub zip: Vec<u8>,
    /// `h1:<base64>`: Terraform's hash of the package contents.
    pub h1: String,
    /// `zh:<hex>`: sha256 of the zip file.
    pub zh: String,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("version", &self.version)
            .field("platform", &self.platform)
            .field("zip_bytes", &self.zip.len())
            .field("h1", &self.h1)
            .field("zh", &self.zh)
            .finish()
    }
}

impl Package {
    /// Zips `binary` as `terraform-provider-launch_v<version>` (the name
    /// providers carry inside their packages), executable.
    pub fn from_binary(binary: &[u8], version: &str, platform: &str) -> Package {
        let entry = format!("{BINARY}_v{version}");
        let zip = zip_one_file(&entry, binary, 0o755);
        Package {
            version: version.to_owned(),
            platform: platform.to_owned(),
            h1: h1(&[(entry.as_str(), binary)]),
            zh: format!("zh:{}", hex::encode(Sha256::digest(&zip))),
            zip,
        }
    }

    /// Reads and zips the binary at `path`, as this build's version and platform.
    pub fn from_path(path: &Path) -> std::io::Result<Package> {
        let binary = std::fs::read(path)?;
        Ok(Package::from_binary(&binary, version(), &platform()))
    }

    /// `terraform-provider-launch_<version>_<platform>.zip`, the name
    /// registries and Terraform's packed mirror layout use.
    pub fn file_name(&self) -> String {
        format!("{BINARY}_{}_{}.zip", self.version, self.platform)
    }

    /// The network mirror's `<version>.json`: the archive (relative to the
    /// document) and both hashes.
    pub fn version_document(&self) -> serde_json::Value {
        serde_json::json!({
            "archives": {
                self.platform.clone(): {
                    "url": self.file_name(),
                    "hashes": [self.h1, self.zh],
                }
            }
        })
    }

    /// The network mirror's `index.json`: the versions it has.
    pub fn index_document(&self) -> serde_json::Value {
        serde_json::json!({ "versions": { self.version.clone(): {} } })
    }
}

/// Terraform's `h1:` hash of a package's files (its "dirhash"): sha256 over
/// the sorted lines `"<sha256 hex of the file>  <path>\n"`, base64.
pub fn h1(files: &[(&str, &[u8])]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(name, body)| format!("{}  {name}\n", hex::encode(Sha256::digest(body))))
        .collect();
    lines.sort();
    let summary = Sha256::digest(lines.concat().as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary)
    )
}

/// A zip archive with one stored (uncompressed) file, deterministic (fixed
/// 1980-01-01 timestamp) and carrying the Unix mode so Terraform unpacks an
/// executable. Stored, not deflated: packaging stays a copy plus a CRC even
/// in a debug build of the server, where deflating ~60 MB takes minutes.
fn zip_one_file(name: &str, body: &[u8], mode: u32) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(body);
    let crc = crc.sum();
    let compressed = body;
    let (time, date) = (0u16, (1 << 5) | 1u16);
    let name = name.as_bytes();
    let mut zip = Vec::with_capacity(compressed.len() + 2 * name.len() + 128);
    let u16le = |zip: &mut Vec<u8>, v: u16| zip.extend_from_slice(&v.to_le_bytes());
    let u32le = |zip: &mut Vec<u8>, v: u32| zip.extend_from_slice(&v.to_le_bytes());
    // Local file header.
    u32le(&mut zip, 0x0403_4b50);
    u16le(&mut zip, 10); // version needed: 1.0 (stored)
    u16le(&mut zip, 0); // flags
    u16le(&mut zip, 0); // method: stored
    u16le(&mut zip, time);
    u16le(&mut zip, date);
    u32le(&mut zip, crc);
    u32le(&mut zip, compressed.len() as u32);
    u32le(&mut zip, body.len() as u32);
    u16le(&mut zip, name.len() as u16);
    u16le(&mut zip, 0); // extra length
    zip.extend_from_slice(name);
    zip.extend_from_slice(compressed);
    // Central directory.
    let directory_offset = zip.len() as u32;
    u32le(&mut zip, 0x0201_4b50);
    u16le(&mut zip, (3 << 8) | 20); // made by: Unix, 2.0
    u16le(&mut zip, 10);
    u16le(&mut zip, 0);
    u16le(&mut zip, 0);
    u16le(&mut zip, time);
    u16le(&mut zip, date);
    u32le(&mut zip, crc);
    u32le(&mut zip, compressed.len() as u32);
    u32le(&mut zip, body.len() as u32);
    u16le(&mut zip, name.len() as u16);
    u16le(&mut zip, 0); // extra length
    u16le(&mut zip, 0); // comment length
    u16le(&mut zip, 0); // disk number
    u16le(&mut zip, 0); // internal attributes
    u32le(&mut zip, (0o100_000 | mode) << 16); // external: regular file + mode
    u32le(&mut zip, 0); // local header offset
    zip.extend_from_slice(name);
    let directory_size = zip.len() as u32 - directory_offset;
    // End of central directory.
    u32le(&mut zip, 0x0605_4b50);
    u16le(&mut zip, 0);
    u16le(&mut zip, 0);
    u16le(&mut zip, 1);
    u16le(&mut zip, 1);
    u32le(&mut zip, directory_size);
    u32le(&mut zip, directory_offset);
    u16le(&mut zip, 0);
    zip
}

/// Writes Terraform's packed filesystem-mirror layout under `dir`:
/// `<dir>/registry.terraform.io/launch/launch/<file_name>`, atomically.
/// Returns the zip's path.
pub fn install_packed(package: &Package, dir: &Path) -> std::io::Result<PathBuf> {
    let provider_dir = dir.join(HOSTNAME).join(NAMESPACE).join(TYPE);
    std::fs::create_dir_all(&provider_dir)?;
    let path = provider_dir.join(package.file_name());
    write_public(&path, &package.zip)?;
    Ok(path)
}

/// Writes a world-readable file (0644) through a temp file and a rename, so
/// a reader never sees half of it.
pub fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h1_hashes_sorted_sha256_lines() {
        // sha256("hello\n") and sha256("") are well known; the summary is
        // over their lines sorted by hash, so the order given does not matter.
        let a = h1(&[("b.txt", b"hello\n"), ("a.txt", b"")]);
        let b = h1(&[("a.txt", b""), ("b.txt", b"hello\n")]);
        assert_eq!(a, b);
        let lines = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  b.txt\n\
                     e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a.txt\n";
        let expected =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(lines.as_bytes()));
        assert_eq!(a, format!("h1:{expected}"));
    }

    #[test]
    fn the_zip_unpacks_to_the_executable_binary() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let package = Package::from_binary(&body, "1.2.3", "linux_amd64");
        assert_eq!(
            package.file_name(),
            "terraform-provider-launch_1.2.3_linux_amd64.zip"
        );
        let zip_path = dir.path().join(package.file_name());
        std::fs::write(&zip_path, &package.zip).unwrap();
        let status = std::process::Command::new("unzip")
            .arg("-q")
            .arg(&zip_path)
            .arg("-d")
            .arg(dir.path().join("out"))
            .status()
            .expect("run unzip (scripts/setup installs it)");
        assert!(status.success());
        let unpacked = dir.path().join("out/terraform-provider-launch_v1.2.3");
        assert_eq!(std::fs::read(&unpacked).unwrap(), body);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&unpacked).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "executable: {mode:o}");
        assert_eq!(
            package.zh,
            format!("zh:{}", hex::encode(Sha256::digest(&package.zip)))
        );
        assert_eq!(
            package.h1,
            h1(&[("terraform-provider-launch_v1.2.3", &body)])
        );
    }
}
