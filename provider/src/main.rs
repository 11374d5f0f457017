//! `terraform-provider-launch`: the Terraform/OpenTofu plugin process. Terraform
//! starts it, reads the handshake line it prints, and talks the plugin
//! protocol (v6) to it over gRPC; `tf-provider` serves that protocol and this
//! crate supplies the provider configuration and the `launch_service` resource.
//!
//! Logs go to stderr, which terraform captures into `TF_LOG` output; they never
//! carry secret values or join tokens (see `service` for what is logged).

mod bootstrap;
mod cloudflare;
mod control;
mod docker;
#[cfg(test)]
mod docs;
mod ec2;
mod http;
mod listing;
mod provider;
mod proxmox;
mod security_group;
mod service;
mod ssh;
mod timeouts;

fn main() -> anyhow::Result<()> {
    // With RUST_BACKTRACE set in terraform's environment every diagnostic would
    // carry a Rust backtrace; diagnostics here are written for people.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };

    // ring is the only crypto linked (the plugin protocol's mTLS, AWS,
    // Cloudflare, Proxmox); installed explicitly so no feature of a
    // dependency can leave rustls without a default.
    let _ = rustls::crypto::ring::default_provider().install_default();

    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LAUNCH_PROVIDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(tf_provider::serve(
            "launch",
            provider::LaunchProvider::default(),
        ))
}
