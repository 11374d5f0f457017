//! `launch logs`: the stored lines of a service's newest mission (or of one
//! mission), and with `-f` everything that follows, across new missions too.
//! A stream that breaks (the replica went away) is opened again after the
//! last line printed, for as long as [`RESUME_FOR`] allows.

use std::time::Duration;

use launch_proto::{ServiceRef, StreamLogsRequest};

use super::client;
use super::{CliError, Global, Output, exit, output};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    pub service: String,
    #[arg(long = "env", default_value = "prod")]
    pub environment: String,
    /// Keep printing new lines
    #[arg(short, long)]
    pub follow: bool,
    /// Start after this sequence number
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// A specific mission instead of the newest one
    #[arg(long)]
    pub mission: Option<String>,
}

pub async fn run(global: &Global, args: LogsArgs) -> Result<u8, CliError> {
    let mut client = client::connect(global).await?;
    let request = StreamLogsRequest {
        target: Some(ServiceRef {
            service: args.service.clone(),
            environment: args.environment.clone(),
        }),
        mission_id: args.mission.clone().unwrap_or_default(),
        since_seq: args.since,
        follow: args.follow,
    };
    follow(&mut client, &global.addr, global.output, request).await
}

/// How long a broken stream is retried before `logs` gives up (exit 3).
const RESUME_FOR: Duration = Duration::from_secs(30);

/// Prints a StreamLogs stream until it ends (or forever with follow).
pub async fn follow(
    client: &mut client::Client,
    addr: &str,
    output: Output,
    mut request: StreamLogsRequest,
) -> Result<u8, CliError> {
    let mut mission = String::new();
    let mut broken_since: Option<tokio::time::Instant> = None;
    'stream: loop {
        let mut events = match client.stream_logs(request.clone()).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                resume_or_fail(&status, addr, &mut broken_since).await?;
                continue 'stream;
            }
        };
        loop {
            let event = match events.message().await {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(exit::OK),
                Err(status) => {
                    resume_or_fail(&status, addr, &mut broken_since).await?;
                    if output == Output::Text {
                        eprintln!(
                            "lost the control plane ({}); reconnecting after line {}",
                            status.message(),
                            request.since_seq
                        );
                    }
                    continue 'stream;
                }
            };
            broken_since = None;
            // Resume where this event leaves off.
            if !event.mission_id.is_empty() && event.mission_id != request.mission_id {
                request.mission_id = event.mission_id.clone();
                request.since_seq = 0;
            }
            if let Some(line) = &event.line {
                request.since_seq = request.since_seq.max(line.seq);
            }
            if let Some(gap) = &event.gap {
                request.since_seq = request.since_seq.max(gap.to_seq);
            }
            show(output, &mut mission, event);
        }
    }
}

/// Waits before reopening a stream that broke with a transient `status`,
/// or fails once it has been broken for [`RESUME_FOR`].
async fn resume_or_fail(
    status: &tonic::Status,
    addr: &str,
    broken_since: &mut Option<tokio::time::Instant>,
) -> Result<(), CliError> {
    let since = *broken_since.get_or_insert_with(tokio::time::Instant::now);
    if !super::deploy::transient(status) || since.elapsed() >= RESUME_FOR {
        return Err(CliError::from_status(status, addr));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// Prints one event; `mission` is the mission of the lines printed last.
fn show(output: Output, mission: &mut String, event: launch_proto::LogEvent) {
    if let Some(gap) = &event.gap {
        // The same words `deploy --wait` uses: nothing is skipped silently.
        match output {
            Output::Text => {
                eprintln!("(log lines {} to {} are missing)", gap.from_seq, gap.to_seq)
            }
            Output::Json => println!(
                "{}",
                serde_json::json!({
                    "mission_id": event.mission_id,
                    "gap": { "from_seq": gap.from_seq, "to_seq": gap.to_seq },
                })
            ),
        }
        return;
    }
    let Some(line) = event.line else { return };
    if output == Output::Text && event.mission_id != *mission {
        if !mission.is_empty() {
            eprintln!("--- mission {} ---", event.mission_id);
        }
        *mission = event.mission_id.clone();
    }
    match output {
        Output::Text => println!("{}", output::line_text(&line)),
        Output::Json => println!("{}", output::line_json(&event.mission_id, &line)),
    }
}
