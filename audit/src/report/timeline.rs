//! Calls over time, counted while the log streams past and bucketed for
//! the chart at the end.
//!
//! Counts are kept per millisecond at first; when a log spans so much time
//! that this would hold too many keys, they are merged into coarser steps
//! (10 ms, 100 ms, 1 s, 10 s, 1 min, 10 min, 1 h, 1 day), so memory stays
//! bounded however large the log. The chart then picks the smallest
//! "round" bucket width (1 ms ... 1 s, 1 min, 1 h, 1 day, 1 week, ...)
//! that is a multiple of the kept step and gives at most the buckets asked
//! for. Buckets are aligned in UTC: days at midnight, weeks on Mondays.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What happened to a call, as the timeline colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Allowed by the manifest.
    Allowed = 0,
    /// Needed a human's approval.
    Asked = 1,
    /// Refused (denied, invalid, over a limit).
    Refused = 2,
}

/// The classes, in the order of [`Bucket::counts`].
pub const CLASSES: [Class; 3] = [Class::Allowed, Class::Asked, Class::Refused];

impl Class {
    /// Label for legends and tables.
    pub fn label(self) -> &'static str {
        match self {
            Class::Allowed => "allowed",
            Class::Asked => "needed approval",
            Class::Refused => "refused",
        }
    }
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Steps the counts are kept at; each divides the next and a day.
const STEPS: [u64; 9] = [1, 10, 100, SECOND, 10 * SECOND, MINUTE, 10 * MINUTE, HOUR, DAY];
/// Most keys kept before the step is made coarser.
const MAX_KEYS: usize = 100_000;
/// Bucket widths a chart may use.
const WIDTHS: [u64; 33] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    15 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    28 * DAY,
    91 * DAY,
    364 * DAY,
];
/// 1970-01-05, the first Monday after the epoch: weeks start there.
const MONDAY: u64 = 4 * DAY;

/// Calls counted by time and class.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    step: usize,
    counts: BTreeMap<u64, [u64; 3]>,
}

/// One bar of the chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Start, in milliseconds since the epoch (UTC).
    pub start_ms: u64,
    /// Calls per class, in the order of [`CLASSES`].
    pub counts: [u64; 3],
}

/// The chart's buckets, oldest first, empty ones included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    /// Width of every bucket in milliseconds.
    pub width_ms: u64,
    /// The buckets.
    pub buckets: Vec<Bucket>,
}

impl Timeline {
    /// Counts one call at `ms` milliseconds since the epoch.
    pub fn add(&mut self, ms: u64, class: Class) {
        let key = ms / STEPS[self.step];
        self.counts.entry(key).or_default()[class as usize] += 1;
        while self.counts.len() > MAX_KEYS && self.step + 1 < STEPS.len() {
            let (old, new) = (STEPS[self.step], STEPS[self.step + 1]);
            let mut merged: BTreeMap<u64, [u64; 3]> = BTreeMap::new();
            for (k, c) in std::mem::take(&mut self.counts) {
                add(merged.entry(k * old / new).or_default(), &c);
            }
            self.counts = merged;
            self.step += 1;
        }
    }

    /// True when no call was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// At most `max` buckets (at least one) covering every call counted.
    pub fn buckets(&self, max: usize) -> Option<Buckets> {
        let step = STEPS[self.step];
        let first = self.counts.keys().next()? * step;
        let last = self.counts.keys().next_back()? * step;
        let max = max.max(1) as u64;
        let index = |ms: u64, w: u64| (ms.saturating_sub(origin(w))) / w;
        let fits = |w: u64| w.is_multiple_of(step) && index(last, w) - index(first, w) < max;
        let width = WIDTHS.iter().copied().find(|&w| fits(w)).unwrap_or_else(|| {
            // Beyond the widths above: whole multiples of the largest.
            let big = WIDTHS[WIDTHS.len() - 1];
            big * ((last - first) / big / max + 1)
        });
        let (lo, hi) = (index(first, width), index(last, width));
        let mut buckets: Vec<Bucket> =
            (lo..=hi).map(|i| Bucket { start_ms: origin(width) + i * width, counts: [0; 3] }).collect();
        for (k, c) in &self.counts {
            add(&mut buckets[(index(k * step, width) - lo) as usize].counts, c);
        }
        Some(Buckets { width_ms: width, buckets })
    }
}

fn add(to: &mut [u64; 3], from: &[u64; 3]) {
    for (t, f) in to.iter_mut().zip(from) {
        *t += f;
    }
}

/// Where buckets of width `w` are counted from: weeks and longer on
/// Mondays, the rest at the epoch.
fn origin(w: u64) -> u64 {
    if w >= 7 * DAY && w.is_multiple_of(7 * DAY) { MONDAY } else { 0 }
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn millis(ts: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(ts).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as u64)
}

/// `2026-11-23T16:17:46.504Z` for `ms`.
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A label for the bucket starting at `ms` of width `w`, as precise as the
/// width needs: `2026-11-23`, `2026-11-23 16:00`, `16:17:46`, `16:17:46.500`.
pub fn label(ms: u64, w: u64) -> String {
    let full = format_ms(ms); // 2026-11-23T16:17:46.504Z
    let (date, time) = (&full[..10], &full[11..23]);
    if w >= DAY {
        date.to_owned()
    } else if w >= MINUTE {
        format!("{date} {}", &time[..5])
    } else if w >= SECOND {
        time[..8].to_owned()
    } else {
        time.to_owned()
    }
}

/// A width in words: `1 ms`, `15 s`, `1 min`, `6 h`, `1 day`, `7 days`.
pub fn width_words(w: u64) -> String {
    let (n, unit, units) = if w.is_multiple_of(DAY) {
        (w / DAY, "day", "days")
    } else if w.is_multiple_of(HOUR) {
        (w / HOUR, "hour", "hours")
    } else if w.is_multiple_of(MINUTE) {
        (w / MINUTE, "minute", "minutes")
    } else if w.is_multiple_of(SECOND) {
        (w / SECOND, "second", "seconds")
    } else {
        (w, "millisecond", "milliseconds")
    };
    format!("{n} {}", if n == 1 { unit } else { units })
}

/// Now, for the report's generation time.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> u64 {
        millis(t).unwrap()
    }

    #[test]
    fn a_short_run_gets_millisecond_buckets() {
        let mut t = Timeline::default();
        t.add(at("2026-11-23T16:17:46.504Z"), Class::Allowed);
        t.add(at("2026-11-23T16:17:46.510Z"), Class::Refused);
        t.add(at("2026-11-23T16:17:46.530Z"), Class::Asked);
        let b = t.buckets(48).unwrap();
        assert_eq!(b.width_ms, 1);
        assert_eq!(b.buckets.len(), 27);
        assert_eq!(b.buckets[0].counts, [1, 0, 0]);
        assert_eq!(b.buckets[6].counts, [0, 0, 1]);
        assert_eq!(b.buckets.iter().map(|b| b.counts.iter().sum::<u64>()).sum::<u64>(), 3);
        assert_eq!(label(b.buckets[0].start_ms, b.width_ms), "16:17:46.504");
    }

    #[test]
    fn months_of_calls_get_weekly_buckets_starting_on_mondays() {
        let mut t = Timeline::default();
        t.add(at("2026-01-01T10:00:00Z"), Class::Allowed);
        t.add(at("2026-06-30T10:00:00Z"), Class::Allowed);
        t.add(at("2026-06-30T11:00:00Z"), Class::Refused);
        let b = t.buckets(48).unwrap();
        assert_eq!(width_words(b.width_ms), "7 days");
        assert_eq!(label(b.buckets[0].start_ms, b.width_ms), "2025-12-29", "a Monday");
        assert_eq!(b.buckets.last().unwrap().counts, [1, 0, 1]);
        assert!(b.buckets.len() <= 48);
    }

    #[test]
    fn many_distinct_times_are_merged_and_still_all_counted() {
        let mut t = Timeline::default();
        let start = at("2026-01-01T00:00:00Z");
        for i in 0..250_000u64 {
            t.add(start + i * 7, Class::Allowed);
        }
        assert!(t.counts.len() <= MAX_KEYS);
        let b = t.buckets(48).unwrap();
        assert!(b.buckets.len() <= 48);
        assert_eq!(b.buckets.iter().map(|b| b.counts[0]).sum::<u64>(), 250_000);
        assert_eq!(b.width_ms % STEPS[t.step], 0);
    }

    #[test]
    fn widths_read_as_words() {
        assert_eq!(width_words(1), "1 millisecond");
        assert_eq!(width_words(15 * SECOND), "15 seconds");
        assert_eq!(width_words(HOUR), "1 hour");
        assert_eq!(label(at("2026-11-23T16:17:46Z"), HOUR), "2026-11-23 16:17");
    }
}
