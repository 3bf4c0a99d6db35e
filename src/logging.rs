//! Where log lines go and how they look.
//!
//! In: the environment (`FER_EDGE_LOG`, `JOURNAL_STREAM`, `NO_COLOR`) and
//! whether stderr is a terminal. Out: the process's `tracing` subscriber,
//! writing to stderr:
//! - under systemd (stderr is the journal: `JOURNAL_STREAM` names it), one
//!   line per event with the syslog priority as a `<N>` prefix, which
//!   journald turns into the entry's priority (`journalctl -p warning`
//!   filters on it), and no timestamp of our own (journald stamps each
//!   entry);
//! - elsewhere the usual timestamped lines, coloured only on a terminal and
//!   never when `NO_COLOR` is set (<https://no-color.org>).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How the environment asks for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEnv {
    /// `FER_EDGE_LOG`: the filter (default [`default_filter`]).
    pub filter: Option<String>,
    /// stderr is a terminal (someone is watching: say more by default).
    pub terminal: bool,
    /// stderr is connected to the journal (`JOURNAL_STREAM` set by systemd).
    pub journal: bool,
    /// Colours allowed: stderr is a terminal and `NO_COLOR` is unset or empty.
    pub ansi: bool,
}

impl LogEnv {
    /// Reads the process environment.
    pub fn from_process() -> LogEnv {
        use std::io::IsTerminal;
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        LogEnv {
            filter: var("FER_EDGE_LOG"),
            terminal: std::io::stderr().is_terminal(),
            journal: var("JOURNAL_STREAM").is_some(),
            ansi: std::io::stderr().is_terminal() && var("NO_COLOR").is_none(),
        }
    }
}

/// Installs the subscriber for the whole process.
pub fn init(env: &LogEnv) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter(
            env.filter
                .clone()
                .or_else(|| Some(default_filter(env.terminal && !env.journal).into())),
        ));
    if env.journal {
        builder.with_ansi(false).event_format(Journal).init();
    } else {
        builder.with_ansi(env.ansi).init();
    }
}

/// The filter without `FER_EDGE_LOG`: on a terminal fer-edge's own `info`
/// lines too (where the daemon publishes, when a replay ends, which engine
/// runs each model: a handful at start and end, none per frame); under
/// systemd or into a pipe warnings and errors only.
pub fn default_filter(terminal: bool) -> &'static str {
    if terminal {
        "warn,fer_edge=info"
    } else {
        "warn"
    }
}

/// `FER_EDGE_LOG` (default [`default_filter`]). rumqttd's own log stays off unless it
/// is named: it reports every normal disconnect as an ERROR, and the
/// embedded broker's gate logs what a user needs (refused clients) itself.
pub fn filter(env: Option<String>) -> EnvFilter {
    let mut spec = env
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "warn".into());
    if !spec.contains("rumqttd") {
        spec.push_str(",rumqttd=off");
    }
    EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("warning: FER_EDGE_LOG={spec:?} is not a log filter ({e}); using \"warn\"");
        EnvFilter::new("warn,rumqttd=off")
    })
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<N>target: message key=value`: journald's stream format.
struct Journal;

impl<S, N> FormatEvent<S, N> for Journal
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "<{}>{}: ", priority(meta.level()), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }

    #[test]
    fn a_terminal_shows_fer_edges_info_lines_by_default_and_a_service_only_warnings() {
        assert_eq!(default_filter(false), "warn");
        let t = filter(Some(default_filter(true).into())).to_string();
        assert!(
            t.contains("fer_edge=info") && t.contains("rumqttd=off"),
            "{t}"
        );
    }

    #[test]
    fn the_filter_keeps_rumqttd_quiet_unless_named() {
        assert!(filter(None).to_string().contains("rumqttd=off"));
        assert!(!filter(Some("info,rumqttd=debug".into()))
            .to_string()
            .contains("rumqttd=off"));
    }
}
