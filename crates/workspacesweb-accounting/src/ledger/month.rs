//! UTC calendar months from epoch milliseconds, without a date crate.
//!
//! Uses Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms (proleptic Gregorian
//! calendar). Every input is valid: results saturate at the ends of the `i64` range.

use crate::session::UnixMillis;

/// Milliseconds in one day.
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of the given civil date (month 1..=12, day 1..=31).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil (year, month 1..=12) of a day number (days since 1970-01-01).
fn civil_from_days(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// The UTC calendar month containing `at_ms`, as `[start, end)` in epoch milliseconds (saturating).
pub fn month_bounds(at_ms: UnixMillis) -> (UnixMillis, UnixMillis) {
    let days = at_ms.div_euclid(DAY_MS);
    let (year, month) = civil_from_days(days);
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let start = days_from_civil(year, month, 1).saturating_mul(DAY_MS);
    let end = days_from_civil(next_year, next_month, 1).saturating_mul(DAY_MS);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_months() {
        // 2026-02-15T12:00:00Z
        assert_eq!(
            month_bounds(1_771_156_800_000),
            (1_769_904_000_000, 1_772_323_200_000)
        );
        // 1970-01-01T00:00:00Z is the start of its month; one ms earlier is December 1969.
        assert_eq!(month_bounds(0), (0, 31 * DAY_MS));
        assert_eq!(month_bounds(-1), (-31 * DAY_MS, 0));
        // Leap year: 2024-02 has 29 days.
        let (s, e) = month_bounds(1_707_000_000_000); // 2024-02-03
        assert_eq!((e - s) / DAY_MS, 29);
        // 2100 is not a leap year.
        let feb_2100 = days_from_civil(2100, 2, 10) * DAY_MS;
        let (s, e) = month_bounds(feb_2100);
        assert_eq!((e - s) / DAY_MS, 28);
    }

    #[test]
    fn extremes_do_not_panic() {
        for at in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            let (s, e) = month_bounds(at);
            assert!(s <= at && at <= e);
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let first = days_from_civil(1900, 1, 1);
        let last = days_from_civil(2300, 1, 1);
        let mut expected = (1900, 1);
        for d in first..last {
            let (y, m) = civil_from_days(d);
            if (y, m) != expected {
                expected = if expected.1 == 12 {
                    (expected.0 + 1, 1)
                } else {
                    (expected.0, expected.1 + 1)
                };
                assert_eq!((y, m), expected);
                assert_eq!(days_from_civil(y, m, 1), d);
            }
            let (s, e) = month_bounds(d * DAY_MS + 1);
            assert!(s <= d * DAY_MS && d * DAY_MS < e);
        }
    }
}
