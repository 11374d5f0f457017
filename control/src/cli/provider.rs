//! `launch provider install` and `launch provider package`: the Terraform
//! provider without a registry. `install` lays out a filesystem mirror
//! (Terraform's packed layout) that `terraform init` reads with no network,
//! by default in `~/.terraform.d/plugins`, a directory Terraform searches
//! without any CLI configuration. `package` writes registry-ready release
//! artifacts (zip, `SHA256SUMS`, a manifest) for `scripts/release-provider`.
//! Both zip the `terraform-provider-launch` built beside this `launch` (or
//! `--binary`), through `provider_package`, as the server's mirror does.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{CliError, Global, Output, exit};
use crate::provider_package::{self, BINARY, HOSTNAME, NAMESPACE, Package, TYPE};

#[derive(Debug, clap::Subcommand)]
pub enum ProviderCommand {
    /// Put the provider into a filesystem mirror `terraform init` installs from
    Install(InstallArgs),
    /// Write release artifacts: the zip, SHA256SUMS and a manifest
    Package(PackageArgs),
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The mirror directory [default: ~/.terraform.d/plugins, which terraform
    /// searches without any configuration]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The provider binary [default: terraform-provider-launch beside this launch]
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    /// Where to write the artifacts
    #[arg(long, default_value = "dist")]
    pub out: PathBuf,
    /// The provider binary [default: terraform-provider-launch beside this launch]
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

pub async fn run(global: &Global, command: ProviderCommand) -> Result<u8, CliError> {
    match command {
        ProviderCommand::Install(args) => install(global, args),
        ProviderCommand::Package(args) => package(global, args),
    }
}

fn binary(given: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match given {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => Err(CliError::usage(format!(
            "--binary {} does not exist: build it with `cargo build --release -p terraform-provider-launch`",
            path.display()
        ))),
        None => provider_package::binary_beside_exe().ok_or_else(|| {
            CliError::usage(format!(
                "no {BINARY} beside this launch: build it with `cargo build --release -p terraform-provider-launch`, or pass --binary PATH"
            ))
        }),
    }
}

fn read_package(path: &Path) -> Result<Package, CliError> {
    Package::from_path(path)
        .map_err(|e| CliError::failed(format!("cannot read {}: {e}", path.display())))
}

fn default_dir() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".terraform.d/plugins"))
        .ok_or_else(|| CliError::usage("HOME is not set: pass --dir DIR"))
}

fn install(global: &Global, args: InstallArgs) -> Result<u8, CliError> {
    let binary = binary(args.binary)?;
    let dir = match args.dir {
        Some(dir) => dir,
        None => default_dir()?,
    };
    let package = read_package(&binary)?;
    let path = provider_package::install_packed(&package, &dir).map_err(|e| {
        CliError::failed(format!(
            "cannot write the mirror under {}: {e}",
            dir.display()
        ))
    })?;
    match global.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "path": path.display().to_string(),
                "dir": dir.display().to_string(),
                "provider": format!("{HOSTNAME}/{NAMESPACE}/{TYPE}"),
                "version": package.version,
                "platform": package.platform,
                "h1": package.h1,
                "zh": package.zh,
            })
        ),
        Output::Text => {
            println!(
                "installed {HOSTNAME}/{NAMESPACE}/{TYPE} {} ({}) into {}",
                package.version,
                package.platform,
                dir.display()
            );
            println!("hash {}", package.h1);
        }
    }
    Ok(exit::OK)
}

fn package(global: &Global, args: PackageArgs) -> Result<u8, CliError> {
    let binary = binary(args.binary)?;
    let package = read_package(&binary)?;
    let out = &args.out;
    let write = |name: &str, bytes: &[u8]| {
        provider_package::write_public(&out.join(name), bytes).map_err(|e| {
            CliError::failed(format!("cannot write {}: {e}", out.join(name).display()))
        })
    };
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", out.display())))?;
    let zip_name = package.file_name();
    write(&zip_name, &package.zip)?;
    // The registry protocol's manifest: the plugin protocol versions served.
    let manifest_name = format!("{BINARY}_{}_manifest.json", package.version);
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "version": 1,
        "metadata": { "protocol_versions": ["6.0"] }
    }))
    .expect("a JSON literal serializes");
    write(&manifest_name, &manifest)?;
    let sums: String = [
        (&zip_name, &package.zip[..]),
        (&manifest_name, &manifest[..]),
    ]
    .iter()
    .map(|(name, bytes)| format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))))
    .collect();
    let sums_name = format!("{BINARY}_{}_SHA256SUMS", package.version);
    write(&sums_name, sums.as_bytes())?;
    match global.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "zip": zip_name,
                "manifest": manifest_name,
                "sha256sums": sums_name,
                "h1": package.h1,
                "zh": package.zh,
            })
        ),
        Output::Text => {
            for name in [&zip_name, &manifest_name, &sums_name] {
                println!("{}", out.join(name).display());
            }
        }
    }
    Ok(exit::OK)
}
