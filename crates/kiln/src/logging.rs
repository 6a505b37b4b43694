//! The log: tracing to stderr (the journal, under systemd), filtered by an EnvFilter directive.
//!
//! The filter sits behind a `reload` layer whose handle is kept here, so that a running server
//! can change what it logs (`reload`) without restarting, e.g. on SIGHUP after the config file
//! changed.

use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// The filter of a directive, or why it is not one (clap's value parser of `--log-level`).
pub fn parse_filter(directive: &str) -> Result<String, String> {
    EnvFilter::builder()
        .parse(directive)
        .map(|_| directive.to_string())
        .map_err(|e| format!("not a log filter directive: {e}"))
}

/// Installs the global subscriber with `directive` (`None`: RUST_LOG, else `info`, as the
/// commands other than serve and worker always did).
pub fn init(directive: Option<&str>) -> anyhow::Result<()> {
    let filter = match directive {
        Some(directive) => EnvFilter::builder()
            .parse(directive)
            .map_err(|e| anyhow::anyhow!("--log-level '{directive}': {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let (layer, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    // Only main calls init, once; a second call would have failed in `init` above.
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the filter of the running process; a directive that does not parse leaves the old
/// one in place.
pub fn reload(directive: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .parse(directive)
        .map_err(|e| anyhow::anyhow!("log filter '{directive}': {e}"))?;
    let handle = FILTER
        .get()
        .ok_or_else(|| anyhow::anyhow!("the log is not set up"))?;
    handle
        .reload(filter)
        .map_err(|e| anyhow::anyhow!("reloading the log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test that installs the global subscriber.
    #[test]
    fn the_filter_is_replaced_in_a_running_process() {
        init(Some("warn")).expect("init");
        assert!(!tracing::enabled!(tracing::Level::INFO));
        reload("info").expect("reload");
        assert!(tracing::enabled!(tracing::Level::INFO));
        // A bad directive is refused and the filter in place stays.
        assert!(reload("info,=bad=").is_err());
        assert!(tracing::enabled!(tracing::Level::INFO));
        assert!(parse_filter("warn,kiln_worker=debug").is_ok());
        assert!(parse_filter("=bad=").is_err());
    }
}
