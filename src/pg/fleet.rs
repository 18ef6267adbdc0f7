//! Discovery of a fleet's databases: which databases of a server `dr` may back up.

use anyhow::{anyhow, Result};

use super::{describe_pg_error, ConnTarget};

/// Every database of the server that takes connections, is not a template, and that
/// this role may connect to; sorted by name.
pub async fn connectable_databases(server: &ConnTarget) -> Result<Vec<String>> {
    let client = server.connect().await?;
    let rows = client
        .query(
            "SELECT datname FROM pg_database
              WHERE datallowconn AND NOT datistemplate
                AND has_database_privilege(datname, 'CONNECT')
              ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot list the databases of {}: {}",
                server.server(),
                describe_pg_error(&e)
            )
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
