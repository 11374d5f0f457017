//! `launch deploy` and `launch rollback`, and waiting on the mission they
//! queue. A deploy packs the directory into a bundle (a temp file, so memory
//! stays flat whatever its size), streams it in 1 MiB chunks, and with
//! `--wait` follows the mission's events until a final state, reconnecting
//! from the last sequence number seen if the stream breaks, so a control plane
//! restart neither loses nor repeats a line.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use launch_core::bundle::{self, COMPOSE_FILES, SERVICE_CONFIG_FILE};
use launch_core::compose::features::HostCompose;
use launch_core::names::{EnvironmentName, ServiceName};
use launch_core::service_config::ServiceConfig;
use launch_proto::{
    DeployHeader, DeployRequest, GetServiceRequest, ListSecretsRequest, MissionState,
    RollbackRequest, ServiceRef, WatchMissionRequest, deploy_request, mission_event,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::check;
use super::client::{self, Client};
use super::{CliError, Global, Output, exit, output, parse_duration};

const CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The service directory (holding compose.yaml and optionally launch.toml)
    pub dir: PathBuf,
    /// Service name [default: `name` in launch.toml, else the directory name]
    #[arg(long)]
    pub service: Option<String>,
    /// Environment
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// A git ref or commit recorded with the release
    #[arg(long = "ref", env = "GITHUB_SHA")]
    pub git_ref: Option<String>,
    /// Send the value of this environment variable as the secret of the same name (repeatable)
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// Wait until the release is healthy (exit 0) or failed/rolled back (exit 1)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Upload this prebuilt tar.gz instead of packing DIR
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Upload DIR/.env too (it is left out by default: it often holds secrets)
    #[arg(long)]
    pub include_env: bool,
    /// The GitHub repository (owner/name) the release comes from; with a
    /// token the control plane posts commit statuses and deployments there
    #[arg(long, env = "GITHUB_REPOSITORY", value_name = "OWNER/NAME")]
    pub repo: Option<String>,
    /// The pull request the release belongs to (needs --repo); the control
    /// plane keeps one comment on it up to date
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub pr: Option<u64>,
    /// Deploy an ephemeral preview under this name (e.g. pr-123) beside the
    /// environment, on its host, at `<name>.<host>` for each of its host
    /// names; --secret-env values then override the environment's secrets
    /// for this preview only
    #[arg(long, value_name = "NAME")]
    pub preview: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    pub service: String,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// The release to go back to [default: the one before the current]
    #[arg(long = "to", value_name = "RELEASE")]
    pub to_release: Option<String>,
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `--repo`/`--pr` checked before anything is packed or uploaded.
fn release_source(repo: Option<&str>, pr: Option<u64>) -> Result<(String, u64), CliError> {
    match (repo.filter(|r| !r.is_empty()), pr) {
        (None, Some(_)) => Err(CliError::usage(
            "--pr needs --repo owner/name (GitHub Actions sets GITHUB_REPOSITORY)",
        )),
        (None, None) => Ok((String::new(), 0)),
        (Some(repo), pr) => {
            launch_core::repo::validate_repo(repo)
                .map_err(|e| CliError::usage(format!("--repo: {e}")))?;
            Ok((repo.to_owned(), pr.unwrap_or(0)))
        }
    }
}

/// The service name for DIR: `--service`, else launch.toml's `name`, else the directory name.
pub fn service_name(dir: &Path, flag: Option<&str>) -> Result<ServiceName, CliError> {
    if let Some(name) = flag {
        return ServiceName::parse(name).map_err(|e| CliError::usage(format!("--service: {e}")));
    }
    if let Some(config) = read_service_config(dir)?
        && let Some(name) = config.name
    {
        return Ok(name);
    }
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    ServiceName::parse(&base).map_err(|e| {
        CliError::usage(format!(
            "the directory name cannot be the service name ({e}): pass --service NAME or set `name` in {SERVICE_CONFIG_FILE}"
        ))
    })
}

fn read_service_config(dir: &Path) -> Result<Option<ServiceConfig>, CliError> {
    let path = dir.join(SERVICE_CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => ServiceConfig::parse(&text, &path)
            .map(Some)
            .map_err(|e| CliError::usage(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::usage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// The secrets named by `--secret-env`, read from this process's environment.
pub fn secrets_from_env(
    names: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, CliError> {
    let mut secrets = HashMap::new();
    for name in names {
        let value = lookup(name).ok_or_else(|| {
            CliError::usage(format!(
                "--secret-env {name}: the environment variable {name} is not set; export it (in GitHub Actions: env: {name}: ${{{{ secrets.{name} }}}})"
            ))
        })?;
        secrets.insert(name.clone(), value);
    }
    Ok(secrets)
}

/// A bundle ready to upload: a temp file (or the user's file) and its sha256.
struct Bundle {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
    sha256: String,
    size: u64,
}

fn prepare_bundle(args: &DeployArgs) -> Result<Bundle, CliError> {
    if let Some(path) = &args.bundle {
        let (sha256, size) = hash_file(path)?;
        return Ok(Bundle {
            path: path.clone(),
            _temp: None,
            sha256,
            size,
        });
    }
    if !args.dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory: give the service directory that holds compose.yaml",
            args.dir.display()
        )));
    }
    if !COMPOSE_FILES.iter().any(|f| args.dir.join(f).is_file()) {
        return Err(CliError::usage(format!(
            "no compose file in {}: add compose.yaml (or one of {}) describing the service",
            args.dir.display(),
            COMPOSE_FILES[1..].join(", ")
        )));
    }
    check_http_service(&args.dir)?;
    let temp = tempfile::Builder::new()
        .prefix("launch-bundle-")
        .suffix(".tar.gz")
        .tempfile()
        .map_err(|e| CliError::failed(format!("cannot create a temporary bundle file: {e}")))?;
    let options = bundle::PackOptions {
        include_env: args.include_env,
    };
    bundle::pack_dir_with(&args.dir, temp.as_file(), &options)
        .map_err(|e| CliError::usage(e.to_string()))?;
    let temp = temp.into_temp_path();
    let (sha256, size) = hash_file(&temp)?;
    Ok(Bundle {
        path: temp.to_path_buf(),
        _temp: Some(temp),
        sha256,
        size,
    })
}

/// `[http] service` must name a service of the compose file (exit 2 before
/// anything is uploaded).
fn check_http_service(dir: &Path) -> Result<(), CliError> {
    let Some(config) = read_service_config(dir)? else {
        return Ok(());
    };
    let Some(service) = config.http.and_then(|http| http.service) else {
        return Ok(());
    };
    let Some(file) = COMPOSE_FILES.iter().find(|f| dir.join(f).is_file()) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    match launch_core::service_config::compose_services(&text) {
        Some(services) if !services.contains(&service) => Err(CliError::usage(format!(
            "{SERVICE_CONFIG_FILE}: http.service = {service:?} is not a service of {file} (it has {}): name the service that receives the traffic",
            services.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn hash_file(path: &Path) -> Result<(String, u64), CliError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| CliError::usage(format!("cannot read bundle {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK_BYTES];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| CliError::usage(format!("cannot read bundle {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

pub async fn deploy(global: &Global, args: DeployArgs) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let outcome = deploy_with(&mut client, &global.addr, global.output, &args).await?;
    Ok(outcome.exit_code())
}

/// What a deploy (or rollback) ended as.
pub struct Outcome {
    pub mission_id: String,
    /// The release the mission was about.
    pub release_id: String,
    /// The release running once the mission ended (after a rollback: the previous one).
    pub running_release_id: String,
    /// `None` without --wait.
    pub state: Option<MissionState>,
    pub url: String,
    pub message: String,
    /// The sequence number of the last log line printed (0: none), so a
    /// follower (`launch dev`) resumes after it instead of replaying.
    pub last_seq: u64,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self.state {
            None | Some(MissionState::Healthy) => exit::OK,
            Some(_) => exit::FAILED,
        }
    }
}

/// Uploads and queues a deploy; with `args.wait`, follows it to the end.
pub async fn deploy_with(
    client: &mut Client,
    addr: &str,
    output: Output,
    args: &DeployArgs,
) -> Result<Outcome, CliError> {
    let service = match &args.bundle {
        Some(_) => ServiceName::parse(args.service.as_deref().unwrap_or_default())
            .map_err(|e| CliError::usage(format!("--service is required with --bundle: {e}")))?,
        None => service_name(&args.dir, args.service.as_deref())?,
    };
    let environment = EnvironmentName::parse(&args.environment)
        .map_err(|e| CliError::usage(format!("--env: {e}")))?;
    let secrets = secrets_from_env(&args.secret_env, |name| std::env::var(name).ok())?;
    let (repo, pr) = release_source(args.repo.as_deref(), args.pr)?;
    if let Some(preview) = &args.preview {
        launch_core::names::PreviewName::parse(preview)
            .map_err(|e| CliError::usage(format!("--preview: {e}")))?;
    }
    if args.bundle.is_none() {
        check_before_upload(client, args, &service, &environment, &secrets, output).await?;
    }
    let bundle = tokio::task::block_in_place(|| prepare_bundle(args))?;
    if output == Output::Text {
        eprintln!(
            "uploading {} ({} bytes, sha256 {}…) for {service}/{environment}",
            args.bundle.as_deref().unwrap_or(&args.dir).display(),
            bundle.size,
            &bundle.sha256[..12]
        );
    }
    let header = DeployHeader {
        target: Some(ServiceRef {
            service: service.to_string(),
            environment: environment.to_string(),
        }),
        git_ref: args.git_ref.clone().unwrap_or_default(),
        secrets,
        bundle_sha256: bundle.sha256.clone(),
        repo,
        pr,
        preview: args.preview.clone().unwrap_or_default(),
    };
    let path = bundle.path.clone();
    let requests = async_stream::stream! {
        yield DeployRequest { msg: Some(deploy_request::Msg::Header(header)) };
        let Ok(mut file) = tokio::fs::File::open(&path).await else { return };
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => yield DeployRequest { msg: Some(deploy_request::Msg::Chunk(buf[..n].to_vec())) },
            }
        }
    };
    let response = client
        .deploy(requests)
        .await
        .map_err(|s| CliError::from_status(&s, addr))?
        .into_inner();
    drop(bundle);
    if !args.wait {
        let outcome = Outcome {
            mission_id: response.mission_id,
            release_id: response.release_id,
            running_release_id: String::new(),
            state: None,
            url: String::new(),
            message: String::new(),
            last_seq: 0,
        };
        report(&outcome, output);
        return Ok(outcome);
    }
    if output == Output::Text {
        eprintln!(
            "queued mission {} for release {}",
            response.mission_id, response.release_id
        );
    }
    wait(
        client,
        addr,
        output,
        &response.mission_id,
        &response.release_id,
        args.timeout,
    )
    .await
}

/// The compose check of DIR (see `check`), with the names of the secrets
/// given now and those already stored (when this token may list them).
async fn check_before_upload(
    client: &mut Client,
    args: &DeployArgs,
    service: &ServiceName,
    environment: &EnvironmentName,
    secrets: &HashMap<String, String>,
    output: Output,
) -> Result<(), CliError> {
    if !args.dir.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory: give the service directory that holds compose.yaml",
            args.dir.display()
        )));
    }
    let config = read_service_config(&args.dir)?.unwrap_or_default();
    let mut names: BTreeSet<String> = secrets.keys().cloned().collect();
    let stored = client
        .list_secrets(ListSecretsRequest {
            target: Some(ServiceRef {
                service: service.to_string(),
                environment: environment.to_string(),
            }),
        })
        .await;
    if let Ok(stored) = stored {
        names.extend(stored.into_inner().secrets.into_iter().map(|s| s.key));
    }
    let host = host_compose(client, service, environment).await;
    let warnings = check::compose_dir(&args.dir, &config, &names, args.include_env, host)?;
    if output == Output::Text {
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(())
}

/// The compose the service's host runs, as its agent reported it; `None`
/// when unknown (no agent yet, an older control plane, a token that may not
/// read the service): the control plane checks again after the upload.
async fn host_compose(
    client: &mut Client,
    service: &ServiceName,
    environment: &EnvironmentName,
) -> Option<HostCompose> {
    let info = client
        .get_service(GetServiceRequest {
            target: Some(ServiceRef {
                service: service.to_string(),
                environment: environment.to_string(),
            }),
        })
        .await
        .ok()?
        .into_inner();
    HostCompose::parse(&info.host_compose)
}

pub async fn rollback(global: &Global, args: RollbackArgs) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let mission = client
        .rollback(RollbackRequest {
            target: Some(ServiceRef {
                service: args.service.clone(),
                environment: args.environment.clone(),
            }),
            to_release_id: args.to_release.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    let outcome = if args.wait {
        if global.output == Output::Text {
            eprintln!(
                "queued rollback mission {} to release {}",
                mission.mission_id, mission.release_id
            );
        }
        wait(
            &mut client,
            &global.addr,
            global.output,
            &mission.mission_id,
            &mission.release_id,
            args.timeout,
        )
        .await?
    } else {
        let outcome = Outcome {
            mission_id: mission.mission_id,
            release_id: mission.release_id,
            running_release_id: String::new(),
            state: None,
            url: String::new(),
            message: String::new(),
            last_seq: 0,
        };
        report(&outcome, global.output);
        outcome
    };
    Ok(outcome.exit_code())
}

/// True for statuses after which watching again may work (server restarting,
/// or a replica gone while another of `--addr` answers).
pub(super) fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
    )
}

/// Follows a mission's events until it reaches a final state or `timeout` passes.
pub async fn wait(
    client: &mut Client,
    addr: &str,
    output: Output,
    mission_id: &str,
    release_id: &str,
    timeout: Duration,
) -> Result<Outcome, CliError> {
    let deadline = Instant::now() + timeout;
    let spinner = (output == Output::Text && std::io::stderr().is_terminal()).then(|| {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"),
        );
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner.set_message("queued");
        spinner
    });
    let say = |text: String| match &spinner {
        Some(spinner) => spinner.suspend(|| println!("{text}")),
        None => println!("{text}"),
    };
    let mut since_seq = 0u64;
    let mut last_state = None;
    let mut last_error = String::new();
    let outcome = 'watch: loop {
        if Instant::now() >= deadline {
            break 'watch None;
        }
        let request = WatchMissionRequest {
            mission_id: mission_id.to_owned(),
            since_seq,
        };
        let mut events =
            match tokio::time::timeout_at(deadline, client.watch_mission(request)).await {
                Err(_) => break 'watch None,
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(status)) if transient(&status) => {
                    last_error = status.message().to_owned();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Ok(Err(status)) => return Err(CliError::from_status(&status, addr)),
            };
        loop {
            let event = match tokio::time::timeout_at(deadline, events.message()).await {
                Err(_) => break 'watch None,
                Ok(Ok(Some(event))) => event,
                Ok(Ok(None)) => continue 'watch,
                Ok(Err(status)) if transient(&status) => {
                    last_error = status.message().to_owned();
                    if output == Output::Text {
                        eprintln!(
                            "lost the control plane ({last_error}); reconnecting from line {since_seq}"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue 'watch;
                }
                Ok(Err(status)) => return Err(CliError::from_status(&status, addr)),
            };
            match event.event {
                Some(mission_event::Event::Line(line)) => {
                    if line.seq <= since_seq {
                        continue;
                    }
                    since_seq = line.seq;
                    match output {
                        Output::Text => say(output::line_text(&line)),
                        Output::Json => eprintln!("{}", output::line_text(&line)),
                    }
                }
                Some(mission_event::Event::Gap(gap)) => {
                    since_seq = since_seq.max(gap.to_seq);
                    eprintln!("(log lines {} to {} are missing)", gap.from_seq, gap.to_seq);
                }
                Some(mission_event::Event::Update(update)) => {
                    let state = MissionState::try_from(update.state).unwrap_or_default();
                    if last_state != Some(state) {
                        last_state = Some(state);
                        if let Some(spinner) = &spinner {
                            spinner.set_message(state.label());
                        } else if output == Output::Text {
                            eprintln!("mission {mission_id}: {}", state.label());
                        }
                    }
                    if state.is_final() {
                        break 'watch Some((state, update));
                    }
                }
                None => {}
            }
        }
    };
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let Some((state, update)) = outcome else {
        let mut message = format!(
            "mission {mission_id} did not finish within {}: follow it with `launch logs` or wait longer with --timeout",
            humantime::format_duration(timeout)
        );
        if !last_error.is_empty() {
            message.push_str(&format!(" (last error: {last_error})"));
        }
        return Err(CliError::failed(message));
    };
    let outcome = Outcome {
        mission_id: mission_id.to_owned(),
        release_id: release_id.to_owned(),
        running_release_id: update.release_id,
        state: Some(state),
        url: update.url,
        message: update.message,
        last_seq: since_seq,
    };
    report(&outcome, output);
    Ok(outcome)
}

fn report(outcome: &Outcome, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "mission_id": outcome.mission_id,
                "release_id": outcome.release_id,
                "running_release_id": outcome.running_release_id,
                "state": outcome.state.map(MissionState::label).unwrap_or("queued"),
                "url": outcome.url,
                "message": outcome.message,
            })
        ),
        Output::Text => match outcome.state {
            None => println!(
                "queued mission {} for release {}",
                outcome.mission_id, outcome.release_id
            ),
            Some(MissionState::Healthy) => {
                let target = if outcome.url.is_empty() {
                    outcome.release_id.as_str()
                } else {
                    outcome.url.as_str()
                };
                println!("healthy: {target}");
            }
            Some(state) => {
                eprintln!("{}: {}", state.label(), outcome.message);
                println!(
                    "{}: release {} (running: {})",
                    state.label(),
                    outcome.release_id,
                    output::or_dash(&outcome.running_release_id)
                );
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_comes_from_the_flag_then_launch_toml_then_the_directory() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("my-svc");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(service_name(&dir, None).unwrap().as_str(), "my-svc");
        std::fs::write(dir.join("launch.toml"), "name = \"from-toml\"\n").unwrap();
        assert_eq!(service_name(&dir, None).unwrap().as_str(), "from-toml");
        assert_eq!(service_name(&dir, Some("flag")).unwrap().as_str(), "flag");
        let err = service_name(&dir, Some("Bad")).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
    }

    #[test]
    fn a_directory_name_that_is_not_a_dns_label_asks_for_service() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("My_Service");
        std::fs::create_dir(&dir).unwrap();
        let err = service_name(&dir, None).unwrap_err();
        assert!(
            err.message.contains("pass --service NAME"),
            "{}",
            err.message
        );
    }

    #[test]
    fn secret_env_reads_named_variables_and_refuses_missing_ones() {
        let env = |name: &str| (name == "API_TOKEN").then(|| "v".to_owned());
        let secrets = secrets_from_env(&["API_TOKEN".into()], env).unwrap();
        assert_eq!(secrets["API_TOKEN"], "v");
        let err = secrets_from_env(&["MISSING".into()], env).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(
            err.message.contains("MISSING is not set"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_directory_without_compose_file_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let args = DeployArgs {
            dir: dir.path().to_owned(),
            service: Some("x".into()),
            environment: "prod".into(),
            git_ref: None,
            secret_env: vec![],
            wait: false,
            timeout: Duration::from_secs(1),
            bundle: None,
            include_env: false,
            repo: None,
            pr: None,
            preview: None,
        };
        let err = prepare_bundle(&args).err().unwrap();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("no compose file"), "{}", err.message);
    }
}
