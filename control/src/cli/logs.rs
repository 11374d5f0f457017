//! `launch logs`: the stored lines of a service's newest mission (or of one
//! mission), and with `-f` everything that follows, across new missions too.

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

/// Prints a StreamLogs stream until it ends (or forever with follow).
pub async fn follow(
    client: &mut client::Client,
    addr: &str,
    output: Output,
    request: StreamLogsRequest,
) -> Result<u8, CliError> {
    let mut events = client
        .stream_logs(request)
        .await
        .map_err(|s| CliError::from_status(&s, addr))?
        .into_inner();
    let mut mission = String::new();
    while let Some(event) = events
        .message()
        .await
        .map_err(|s| CliError::from_status(&s, addr))?
    {
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
            continue;
        }
        let Some(line) = event.line else { continue };
        if output == Output::Text && event.mission_id != mission {
            if !mission.is_empty() {
                eprintln!("--- mission {} ---", event.mission_id);
            }
            mission = event.mission_id.clone();
        }
        match output {
            Output::Text => println!("{}", output::line_text(&line)),
            Output::Json => println!("{}", output::line_json(&event.mission_id, &line)),
        }
    }
    Ok(exit::OK)
}
