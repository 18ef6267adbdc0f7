//! `[objectives]`: the RPO, the RTO and how often a drill must prove them.

use std::time::Duration;

use serde::Deserialize;

use super::opt_duration;

pub const DEFAULT_DRILL_EVERY: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    #[serde(default, deserialize_with = "opt_duration")]
    pub rpo: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub rto: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub drill_every: Option<Duration>,
}

impl Objectives {
    pub fn drill_every(&self) -> Duration {
        self.drill_every.unwrap_or(DEFAULT_DRILL_EVERY)
    }
}
