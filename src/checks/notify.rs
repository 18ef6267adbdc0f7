//! `notify.sinks`: each `[[notify]]` sink can be reached. It connects and sends nothing:
//! a request would count as a heartbeat ping or open an incident (`dr notify test` sends a
//! real test event). Not critical: a silent alarm is a warning, not an outage.

use std::sync::Arc;

use anyhow::{anyhow, Result};

use super::{CheckContext, Finding, PlannedCheck};
use crate::config::{NotifySink, SinkKind};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    for (sink, name) in ctx.config.notify.iter().zip(ctx.config.notify_names()) {
        let sink = sink.clone();
        out.push(PlannedCheck {
            name: "notify.sinks",
            target: Some(name.clone()),
            critical: false,
            timeout_per_read: false,
            run: Box::pin(async move { reachable(&sink, &name).await }),
        });
    }
}

async fn reachable(sink: &NotifySink, name: &str) -> Result<Finding> {
    let kind = sink.kind.as_str();
    let url = sink.resolve_url(name)?;
    if sink.kind == SinkKind::Pagerduty {
        sink.resolve_routing_key(name)?;
    }
    let parsed = url::Url::parse(&url).map_err(|_| {
        anyhow!("the {kind} sink's URL is not a valid URL; hint: check its url or url_env variable")
    })?;
    // Scheme, host and port only: the path and query of a sink URL are its secret.
    let (host, port) = match (parsed.host_str(), parsed.port_or_known_default()) {
        (Some(h), Some(p)) => (h.to_string(), p),
        _ => {
            return Ok(Finding::fail(format!(
                "the {kind} sink's URL names no host; hint: check its url or url_env variable"
            )))
        }
    };
    let place = format!("{}://{host}:{port}", parsed.scheme());
    let timeout = sink.timeout();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(Finding::pass(format!(
            "{kind} sink at {place} accepts connections (nothing sent; `dr notify test --sink {name}` sends a test event)"
        ))),
        Ok(Err(e)) => Ok(Finding::fail(format!(
            "{kind} sink at {place}: cannot connect: {e}; hint: failures would go unannounced: check DNS, proxy and firewall from this host"
        ))),
        Err(_) => Ok(Finding::fail(format!(
            "{kind} sink at {place}: no connection within {}; hint: failures would go unannounced: check the network path from this host",
            crate::units::duration(timeout)
        ))),
    }
}
