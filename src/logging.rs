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
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    if env.journal {
        let s = builder.with_ansi(false).event_format(Journal).finish();
        let _ = s.with(DdsGate).try_init();
    } else {
        let s = builder.with_ansi(env.ansi).finish();
        let _ = s.with(DdsGate).try_init();
    }
}

/// RustDDS logs a warning for every malformed datagram it receives, and
/// anyone who can reach its UDP ports can send them: 266,800 datagrams
/// once made 152,785 lines. Its warnings and errors pass one per
/// [`DDS_LOG_PERIOD_S`]; the others are counted ([`dds_lines_suppressed`])
/// and the count is logged when the ROS 2 output stops. (Nothing is logged
/// from inside the gate: an event emitted while another is being
/// dispatched would re-enter the subscriber.)
struct DdsGate;

/// At most one RustDDS warning line per this many seconds.
pub const DDS_LOG_PERIOD_S: u64 = 10;
static DDS_THROTTLE: Throttle = Throttle::new(DDS_LOG_PERIOD_S);
static DDS_SUPPRESSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// RustDDS warning and error lines not logged so far.
pub fn dds_lines_suppressed() -> u64 {
    DDS_SUPPRESSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// True for an event that may be written: everything but RustDDS's
/// warnings and errors past one per period.
fn dds_gate(target: &str, level: &Level, throttle: &Throttle, now_s: u64) -> bool {
    if !target.starts_with("rustdds") || *level > Level::WARN {
        return true;
    }
    match throttle.hit_at(now_s) {
        Some(_) => true,
        None => {
            DDS_SUPPRESSED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for DdsGate {
    // Called once per event, just before it is written (`enabled` may be
    // asked more than once per log record).
    fn event_enabled(
        &self,
        event: &Event<'_>,
        _cx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        // RustDDS logs through the `log` crate; tracing-log turns each
        // record into an event whose own target is "log".
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        dds_gate(
            meta.target(),
            meta.level(),
            &DDS_THROTTLE,
            Throttle::clock(),
        )
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

/// A fault that can repeat thousands of times a second (a full queue, a
/// flood of malformed datagrams) logs its first occurrence, then at most
/// one line per period with how many happened since: the log stays
/// readable and the journal is not flooded, and nothing goes uncounted.
pub struct Throttle {
    period_s: u64,
    /// Seconds (on [`Throttle::clock`]) of the last line, and hits since.
    state: std::sync::Mutex<(Option<u64>, u64)>,
}

impl Throttle {
    pub const fn new(period_s: u64) -> Throttle {
        Throttle {
            period_s,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// One more occurrence at `now_s`: `Some(n)` when a line is due, `n`
    /// counting this one and those not logged since the last line.
    pub fn hit_at(&self, now_s: u64) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 += 1;
        let due = st.0.is_none_or(|t| now_s >= t + self.period_s);
        if !due {
            return None;
        }
        let n = st.1;
        *st = (Some(now_s), 0);
        Some(n)
    }

    /// [`Self::hit_at`] now.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Self::clock())
    }

    /// Whole seconds since the process first asked.
    fn clock() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs()
    }
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
    fn a_throttle_logs_the_first_hit_then_one_line_per_period_with_the_count() {
        let t = Throttle::new(10);
        assert_eq!(t.hit_at(0), Some(1));
        for s in 0..10 {
            for _ in 0..1000 {
                assert_eq!(t.hit_at(s), None);
            }
        }
        assert_eq!(t.hit_at(10), Some(10_001));
        assert_eq!(t.hit_at(10), None);
        assert_eq!(t.hit_at(25), Some(2));
    }

    #[test]
    fn rustdds_warnings_pass_one_per_period_and_everything_else_always() {
        let t = Throttle::new(DDS_LOG_PERIOD_S);
        let before = dds_lines_suppressed();
        let passed = (0..10_000)
            .filter(|i| dds_gate("rustdds::network::udp_listener", &Level::WARN, &t, i / 1000))
            .count();
        assert_eq!(passed, 1, "10,000 warnings within 10 s: one line");
        assert!(dds_lines_suppressed() >= before + 9_999);
        assert!(dds_gate("rustdds::x", &Level::WARN, &t, 10));
        assert!(
            dds_gate("rustdds::x", &Level::INFO, &t, 10),
            "not a warning"
        );
        assert!(dds_gate("fer_edge::ros2", &Level::WARN, &t, 10), "ours");
    }

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
