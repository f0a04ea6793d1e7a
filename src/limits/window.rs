//! Fixed, UTC-aligned windows (the minute, the day, the calendar month), the names of their
//! counter items, and the clock that says which window a request falls in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime};

/// Ordered by length: a longer window's refusal is the one to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    Minute,
    Day,
    Month,
}

/// One period's window around an instant: `[start, end)` in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub period: Period,
    pub start: i64,
    pub end: i64,
    /// The start as people write it: `2026-11-30T13:18Z`, `2026-11-30`, `2026-11`.
    label: Label,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label {
    date: Date,
    hour: u8,
    minute: u8,
}

/// Counter items outlive their window by this much, then DynamoDB's TTL removes them (TTL
/// deletion is lazy, so an expired item is never read as current: item names hold the window).
const KEEP_AFTER_END: i64 = 3_600;

impl Period {
    pub fn window_at(self, now: SystemTime) -> Window {
        let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
        let instant =
            OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let date = instant.date();
        let (start, end, label) = match self {
            Self::Minute => {
                let start = seconds - seconds.rem_euclid(60);
                let (hour, minute, _) = instant.time().as_hms();
                (start, start + 60, Label { date, hour, minute })
            }
            Self::Day => {
                let start = seconds - seconds.rem_euclid(86_400);
                (start, start + 86_400, Label::day(date))
            }
            Self::Month => {
                let first = date.replace_day(1).unwrap_or(date);
                let next = next_month(first);
                (midnight(first), midnight(next), Label::day(first))
            }
        };
        Window {
            period: self,
            start,
            end,
            label,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Day => "day",
            Self::Month => "month",
        }
    }
}

impl Label {
    fn day(date: Date) -> Self {
        Self {
            date,
            hour: 0,
            minute: 0,
        }
    }
}

impl Window {
    /// The counter item for `counter` in this window: `key#<id>#minute#2026-11-30T13:18Z`.
    /// Counter ids and tenant names cannot hold `#` (the key map refuses them), so names of
    /// different counters never meet.
    pub fn item(&self, scope: &str, counter: &str) -> String {
        let Label { date, hour, minute } = self.label;
        let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
        let period = self.period.name();
        match self.period {
            Period::Minute => format!(
                "{scope}#{counter}#{period}#{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}Z"
            ),
            Period::Day => format!("{scope}#{counter}#{period}#{year:04}-{month:02}-{day:02}"),
            Period::Month => format!("{scope}#{counter}#{period}#{year:04}-{month:02}"),
        }
    }

    /// When the item may be deleted (the table's TTL attribute), in Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.end + KEEP_AFTER_END
    }

    /// How long from `now` until the window ends.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        let end = UNIX_EPOCH + Duration::from_secs(u64::try_from(self.end).unwrap_or(0));
        end.duration_since(now).unwrap_or_default()
    }
}

fn next_month(first: Date) -> Date {
    let (year, month) = match first.month() {
        Month::December => (first.year() + 1, Month::January),
        month => (first.year(), month.next()),
    };
    Date::from_calendar_date(year, month, 1).unwrap_or(first)
}

fn midnight(date: Date) -> i64 {
    date.midnight().assume_utc().unix_timestamp()
}

/// Wall-clock time that moves with tokio's clock: read once from the system, then advanced by
/// tokio's `Instant`, so tests can cross a window on tokio's paused clock without sleeping.
/// (Over an execution environment's lifetime the two clocks drift by far less than a second.)
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall: SystemTime,
    at: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            wall,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.wall + self.at.elapsed()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn windows_are_utc_aligned() {
        // 2026-11-30T13:18:39Z
        let now = at(1_796_044_719);
        let minute = Period::Minute.window_at(now);
        assert_eq!((minute.start, minute.end), (1_796_044_680, 1_796_044_740));
        assert_eq!(minute.item("key", "ci"), "key#ci#minute#2026-11-30T13:18Z");
        assert_eq!(minute.remaining(now), Duration::from_secs(21));
        let day = Period::Day.window_at(now);
        assert_eq!((day.start, day.end), (1_795_996_800, 1_796_083_200));
        assert_eq!(day.item("tenant", "team-a"), "tenant#team-a#day#2026-11-30");
        let month = Period::Month.window_at(now);
        // 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z
        assert_eq!((month.start, month.end), (1_793_491_200, 1_796_083_200));
        assert_eq!(month.item("key", "ci"), "key#ci#month#2026-11");
        assert_eq!(month.expires_at(), month.end + KEEP_AFTER_END);
    }

    #[test]
    fn december_rolls_into_the_next_year() {
        // 2026-12-31T23:59:59Z
        let now = at(1_798_761_599);
        let month = Period::Month.window_at(now);
        assert_eq!(month.item("key", "ci"), "key#ci#month#2026-12");
        assert_eq!(month.end, 1_798_761_600);
        let minute = Period::Minute.window_at(now);
        assert_eq!(minute.item("key", "ci"), "key#ci#minute#2026-12-31T23:59Z");
        assert_eq!(minute.remaining(now), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_follows_tokio_time() {
        let clock = Clock::starting_at(at(1_000));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(clock.now(), at(1_061));
    }
}
