//! UTC calendar arithmetic for the history: day numbers, the `YYYY-MM-DD`
//! file names, RFC 3339 output and the time forms the reports accept. No
//! time zone database: history days and report times are UTC.

use crate::engine::Millis;

/// Milliseconds in a day.
pub const DAY_MS: Millis = 86_400_000;

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The UTC day number of a Unix time in milliseconds.
pub fn day_of(ms: Millis) -> i64 {
    (ms / DAY_MS) as i64
}

/// Midnight UTC starting day `day`, in Unix milliseconds (0 before 1970).
pub fn day_start(day: i64) -> Millis {
    u64::try_from(day).unwrap_or(0) * DAY_MS
}

/// `YYYY-MM-DD`.
pub fn day_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into a day number.
pub fn parse_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(i64::from(y), m) || y < 1970 {
        return None;
    }
    Some(days_from_civil(i64::from(y), m, d))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// RFC 3339 in UTC with seconds (`2025-03-01T08:30:00Z`; milliseconds are
/// written only when not zero).
pub fn rfc3339(ms: Millis) -> String {
    let day = day_of(ms);
    let rest = ms % DAY_MS;
    let (h, mi, s, frac) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    if frac == 0 {
        format!("{}T{h:02}:{mi:02}:{s:02}Z", day_name(day))
    } else {
        format!("{}T{h:02}:{mi:02}:{s:02}.{frac:03}Z", day_name(day))
    }
}

/// A point in time as the reports accept it: Unix seconds (`1740817800`),
/// a UTC date (`2025-03-01`, its midnight) or a UTC date and time
/// (`2025-03-01T08:30`, `2025-03-01T08:30:15`, with or without a final `Z`).
pub fn parse_time(s: &str) -> Option<Millis> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<u64>().ok()?.checked_mul(1000);
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let day = parse_day(date)?;
    let mut ms = day_start(day);
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let mut secs = 0u64;
        for (i, (p, max)) in parts.iter().zip([23u64, 59, 59]).enumerate() {
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let v: u64 = p.parse().ok()?;
            if v > max {
                return None;
            }
            secs += v * [3600, 60, 1][i];
        }
        ms += secs * 1000;
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-1000, 0, 59, 60, 11_016, 11_017, 19_782, 30_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(day_name(days_from_civil(2024, 2, 29)), "2024-02-29");
    }

    #[test]
    fn parses_the_accepted_forms_and_refuses_the_rest() {
        let d = day_start(days_from_civil(2025, 3, 1));
        assert_eq!(parse_time("2025-03-01"), Some(d));
        assert_eq!(parse_time("2025-03-01T08:30"), Some(d + 30_600_000));
        assert_eq!(parse_time("2025-03-01T08:30:15Z"), Some(d + 30_615_000));
        assert_eq!(parse_time("1740817800"), Some(1_740_817_800_000));
        for bad in [
            "",
            "2025-02-30",
            "2025-13-01",
            "2025-3-1",
            "2025-03-01T24:00",
            "2025-03-01T08",
            "2025-03-01T08:30:15:00",
            "yesterday",
            "1969-12-31",
            "-5",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        let d = day_start(days_from_civil(2025, 3, 1));
        assert_eq!(rfc3339(d + 30_615_000), "2025-03-01T08:30:15Z");
        assert_eq!(rfc3339(d + 1), "2025-03-01T00:00:00.001Z");
    }
}
