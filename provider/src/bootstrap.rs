//! The host bootstrap (the one template that EC2 user-data and the SSH path
//! both render) lives in `launch_core::bootstrap`, beside the labels it
//! carries; the provider only renders it.

pub use launch_core::bootstrap::Bootstrap;
