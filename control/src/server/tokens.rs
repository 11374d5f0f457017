//! Bearer tokens: how they are minted, how they are shown and the only form
//! the store keeps (a sha256 hex hash). Every token is 32 random bytes behind
//! a prefix naming its kind (`lt_admin_`, `lt_join_`, `lt_agent_`, `lt_api_`),
//! so a leaked token says what it unlocks and a grep finds it.

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

pub const ADMIN_PREFIX: &str = "lt_admin_";
pub const JOIN_PREFIX: &str = "lt_join_";
pub const AGENT_PREFIX: &str = "lt_agent_";
pub const API_PREFIX: &str = "lt_api_";

/// A fresh token: `prefix` followed by 32 random bytes in hex.
pub fn mint(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The only form of a token the store keeps.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token of `authorization: Bearer <token>`, if the call carries one.
pub fn bearer(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get(launch_proto::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// A new prefixed lower-case ULID id, e.g. `m-01j…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}
