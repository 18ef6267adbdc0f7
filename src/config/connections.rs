//! `[connections]`: how many connections `dr` may hold open to one PostgreSQL server.

use serde::Deserialize;

/// `[connections]`: PostgreSQL connections as a shared, bounded resource.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections `dr` holds open to one server (host:port) at once, over all its
    /// targets, pg_dump's included (default 10). `dr` goes lower when the server has
    /// little room: at most half of the slots free when it starts.
    pub max_per_server: Option<usize>,
}

impl ConnectionsConfig {
    pub const DEFAULT_MAX_PER_SERVER: usize = 10;
    pub const MAX_MAX_PER_SERVER: usize = 1000;

    pub fn max_per_server(&self) -> usize {
        self.max_per_server
            .unwrap_or(Self::DEFAULT_MAX_PER_SERVER)
            .max(1)
    }
}
