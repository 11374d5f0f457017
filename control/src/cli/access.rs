//! Who may join and what services may read: `token create` mints a
//! single-use join token for a new host (or, with `--scope`, an API token:
//! see `tokens`), `secrets set|list|rm` manage a
//! service's secrets. Secret values go in through stdin only (never argv, so
//! they stay out of shell history and `ps`) and never come back out.

use std::io::Read;
use std::time::Duration;

use launch_proto::{
    CreateJoinTokenRequest, DeleteSecretRequest, ListSecretsRequest, ServiceRef, SetSecretRequest,
};
use serde_json::json;

use super::client;
use super::output::table;
use super::{CliError, Global, Output, exit, parse_duration};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Without --scope: a single-use join token for a new host of --service.
    /// With --scope: an API token (admin, deploy or read) for CI or people
    Create {
        /// admin: everything; deploy: deploy, roll back and read its
        /// services; read: only read them
        #[arg(long, value_enum)]
        scope: Option<super::tokens::ScopeArg>,
        /// The service (join token), or the services an API token covers
        /// ('*' matches anything, e.g. 'web-*')
        #[arg(long)]
        service: Option<String>,
        /// The environment [join token default: prod; API token default: '*']
        #[arg(long = "env")]
        environment: Option<String>,
        /// How long the token stays valid, e.g. 1h or 30d [join token
        /// default: 1h; API token default: no expiry]
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// A name for `launch token list`, e.g. ci-hello (API tokens)
        #[arg(long)]
        name: Option<String>,
    },
    /// List API tokens (never the tokens themselves)
    List,
    /// Revoke an API token by id; its open streams end at once
    Revoke { token_id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Set KEY from standard input (e.g. `printf %s "$VALUE" | launch secrets set web API_KEY`)
    Set {
        service: String,
        key: String,
        #[arg(long = "env", default_value = "prod")]
        environment: String,
    },
    /// List the keys (never the values)
    List {
        service: String,
        #[arg(long = "env", default_value = "prod")]
        environment: String,
    },
    /// Remove KEY
    Rm {
        service: String,
        key: String,
        #[arg(long = "env", default_value = "prod")]
        environment: String,
    },
}

fn target(service: &str, environment: &str) -> Option<ServiceRef> {
    Some(ServiceRef {
        service: service.to_owned(),
        environment: environment.to_owned(),
    })
}

pub async fn token(global: &Global, command: TokenCommand) -> Result<u8, CliError> {
    let (service, environment, ttl) = match command {
        TokenCommand::Create {
            scope: None,
            service,
            environment,
            ttl,
            name,
        } => {
            if name.is_some() {
                return Err(CliError::usage(
                    "--name labels API tokens: add --scope admin|deploy|read, or drop --name for a join token",
                ));
            }
            let service = service.ok_or_else(|| {
                CliError::usage(
                    "a join token needs --service (the service the new host runs); for an API token add --scope admin|deploy|read",
                )
            })?;
            (
                service,
                environment.unwrap_or_else(|| "prod".to_owned()),
                ttl.unwrap_or(Duration::from_secs(3600)),
            )
        }
        TokenCommand::Create {
            scope: Some(scope),
            service,
            environment,
            ttl,
            name,
        } => {
            let request = super::tokens::create_request(scope, service, environment, ttl, name)?;
            return super::tokens::create(global, request).await;
        }
        TokenCommand::List => return super::tokens::list(global).await,
        TokenCommand::Revoke { token_id } => return super::tokens::revoke(global, &token_id).await,
    };
    let mut client = client::connect(global).await?;
    let token = client
        .create_join_token(CreateJoinTokenRequest {
            target: target(&service, &environment),
            ttl_secs: ttl.as_secs().max(1),
        })
        .await
        .map_err(|s| CliError::from_status(&s, &global.addr))?
        .into_inner();
    match global.output {
        Output::Json => println!(
            "{}",
            json!({
                "join_token_id": token.join_token_id,
                "join_token": token.join_token,
                "expires_unix_ms": token.expires_unix_ms,
            })
        ),
        Output::Text => println!("{}", token.join_token),
    }
    Ok(exit::OK)
}

/// The secret value from stdin with one trailing newline removed.
pub fn value_from(mut input: impl Read) -> Result<String, CliError> {
    let mut value = String::new();
    input
        .read_to_string(&mut value)
        .map_err(|e| CliError::usage(format!("cannot read the secret value from stdin: {e}")))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(CliError::usage(
            "no value on stdin: pipe it in, e.g. `printf %s \"$VALUE\" | launch secrets set SERVICE KEY`",
        ));
    }
    Ok(value)
}

pub async fn secrets(global: &Global, command: SecretsCommand) -> Result<u8, CliError> {
    match command {
        SecretsCommand::Set {
            service,
            key,
            environment,
        } => {
            let value = tokio::task::block_in_place(|| value_from(std::io::stdin().lock()))?;
            let mut client = client::connect(global).await?;
            client
                .set_secret(SetSecretRequest {
                    target: target(&service, &environment),
                    key: key.clone(),
                    value,
                })
                .await
                .map_err(|s| CliError::from_status(&s, &global.addr))?;
            if global.output == Output::Text {
                eprintln!(
                    "set {key} for {service}/{environment}; it reaches the service at its next deploy"
                );
            }
        }
        SecretsCommand::List {
            service,
            environment,
        } => {
            let mut client = client::connect(global).await?;
            let secrets = client
                .list_secrets(ListSecretsRequest {
                    target: target(&service, &environment),
                })
                .await
                .map_err(|s| CliError::from_status(&s, &global.addr))?
                .into_inner()
                .secrets;
            match global.output {
                Output::Json => println!(
                    "{}",
                    json!({ "secrets": secrets.iter().map(|s| json!({"key": s.key, "updated_unix_ms": s.updated_unix_ms})).collect::<Vec<_>>() })
                ),
                Output::Text => table(
                    &["KEY"],
                    &secrets
                        .iter()
                        .map(|s| vec![s.key.clone()])
                        .collect::<Vec<_>>(),
                ),
            }
        }
        SecretsCommand::Rm {
            service,
            key,
            environment,
        } => {
            let mut client = client::connect(global).await?;
            client
                .delete_secret(DeleteSecretRequest {
                    target: target(&service, &environment),
                    key: key.clone(),
                })
                .await
                .map_err(|s| CliError::from_status(&s, &global.addr))?;
            if global.output == Output::Text {
                eprintln!("removed {key} from {service}/{environment}");
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_lose_one_trailing_newline_only() {
        assert_eq!(value_from(&b"hunter2\n"[..]).unwrap(), "hunter2");
        assert_eq!(value_from(&b"hunter2\r\n"[..]).unwrap(), "hunter2");
        assert_eq!(value_from(&b"a\nb\n\n"[..]).unwrap(), "a\nb\n");
        assert_eq!(value_from(&b"no-newline"[..]).unwrap(), "no-newline");
    }

    #[test]
    fn an_empty_secret_is_bad_input() {
        let err = value_from(&b"\n"[..]).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("no value on stdin"), "{}", err.message);
    }
}
