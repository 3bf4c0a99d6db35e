//! This start of fer-edge: an id that tells runs apart, and the track ids
//! it may hand out.
//!
//! In: the wall clock and the OS's randomness, once per process. Out:
//! [`RunId`], which every JSON payload names (`run`) and from which the
//! track core numbers its tracks.
//!
//! Why: a daemon that crashes and is restarted by systemd must not call a
//! new person by an old person's id. Subscribers (the Python client, ROS4HRI
//! readers, which expect an id never to be reused) would otherwise merge
//! two people. Track ids start at the run's start time in milliseconds
//! since the Unix epoch and count up: a later run starts above every id an
//! earlier one could have used, unless it confirmed more than one track per
//! millisecond of its life (it cannot: a track takes frames) or the clock
//! went backwards between the runs. That last case (a board with no
//! real-time clock booting at an old date before NTP) is why `run` exists
//! too: a random id per start, so a subscriber can tell runs apart whatever
//! the clock says.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2021-01-01T00:00:00Z in milliseconds: a clock before it has not been set.
const SANE_CLOCK_MS: u64 = 1_609_459_200_000;
/// Track ids stay below 2^53 so JSON readers that hold numbers as doubles
/// (JavaScript, Home Assistant templates) read them exactly.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// One start of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId {
    /// 16 hex digits, random per start.
    pub id: String,
    /// The first track id this run hands out.
    pub first_track_id: u64,
}

impl RunId {
    /// The run of this process (made on first use).
    pub fn current() -> &'static RunId {
        static RUN: OnceLock<RunId> = OnceLock::new();
        RUN.get_or_init(|| {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            RunId::new(random_u64(), now_ms)
        })
    }

    /// The run whose random draw is `random` and whose clock read `now_ms`
    /// (pure: the tests' way in).
    pub fn new(random: u64, now_ms: u64) -> RunId {
        let first_track_id = if (SANE_CLOCK_MS..MAX_SAFE / 2).contains(&now_ms) {
            now_ms
        } else {
            // No usable clock: a random start in the upper half of the safe
            // range, above any clock-based start until the year 144,000.
            MAX_SAFE / 2 + random % (MAX_SAFE / 4)
        };
        RunId {
            id: format!("{random:016x}"),
            first_track_id,
        }
    }
}

/// 64 random bits from the OS: std's `RandomState` is keyed from the OS's
/// random source (getrandom) for each new state.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_numbers_tracks_from_the_start_time_in_milliseconds() {
        let r = RunId::new(0xabc, 1_764_928_800_123);
        assert_eq!(r.first_track_id, 1_764_928_800_123);
        assert_eq!(r.id, "0000000000000abc");
    }

    #[test]
    fn a_later_start_numbers_above_every_id_an_earlier_run_used() {
        // A run of 10 s that confirmed 5,000 tracks (far more than frames
        // allow), then a restart 2 s later.
        let a = RunId::new(1, 1_764_928_800_000);
        let b = RunId::new(2, 1_764_928_800_000 + 12_000);
        assert!(a.first_track_id + 5_000 < b.first_track_id);
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn an_unset_clock_falls_back_to_a_random_start_within_safe_integers() {
        for random in [0, 7, u64::MAX, 1 << 63] {
            let r = RunId::new(random, 0);
            assert!(r.first_track_id >= MAX_SAFE / 2);
            assert!(r.first_track_id + 1_000_000_000 < MAX_SAFE);
        }
        assert_ne!(
            RunId::new(1, 0).first_track_id,
            RunId::new(2, 0).first_track_id
        );
    }

    #[test]
    fn two_draws_from_the_os_differ() {
        assert_ne!(random_u64(), random_u64());
    }

    #[test]
    fn the_process_keeps_one_run() {
        assert_eq!(RunId::current(), RunId::current());
        assert_eq!(RunId::current().id.len(), 16);
    }
}
