//! The address the provider registered for a service's host
//! (`EnsureService.host_address`): what the agent puts in the URL of a
//! service the front door does not route, since the agent's own hostname
//! (`ip-10-0-1-5` on EC2) resolves only inside its network.

use super::{Result, Store};

impl Store {
    /// Records the host's address (`""`: none).
    pub async fn set_host_address(
        &self,
        service: &str,
        environment: &str,
        address: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE services SET host_address = $1 WHERE service = $2 AND environment = $3")
            .bind(address)
            .bind(service)
            .bind(environment)
            .execute(&self.writer)
            .await
            .map(drop)
    }

    /// The host's address, `""` when none was registered.
    pub async fn host_address(&self, service: &str, environment: &str) -> Result<String> {
        sqlx::query_scalar(
            "SELECT host_address FROM services WHERE service = $1 AND environment = $2",
        )
        .bind(service)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map(Option::unwrap_or_default)
    }
}
