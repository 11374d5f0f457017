//! The Launch control plane and its CLI, in one crate because they ship as one
//! binary (`launch`). `server` owns the store, the gRPC services agents and
//! clients talk to, and the HTTP endpoints; `cli` owns every client command and
//! `launch dev`. They share nothing but the `launch-proto` contract, so the CLI
//! talks to an embedded server exactly as it talks to a remote one.

pub mod cli;
pub mod provider_package;
pub mod server;
