//! ISO 8601 date-time detection and parsing, as dlt's `iso_timestamp` detection: a string that
//! is a full date and time (with or without an offset) becomes a `timestamp`; a plain date or
//! anything else stays text.

/// Microseconds since the Unix epoch (UTC) for an ISO 8601 date-time string, or `None`.
///
/// Accepts `YYYY-MM-DDTHH:MM[:SS[.f{1,9}]][Z|±HH[:MM]|±HHMM]`, with `T`, `t` or a space between
/// date and time. Without an offset the time is taken as UTC, as dlt does for naive values.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 16 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let mut v: i64 = 0;
        for &c in b.get(from..from + len)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    let year = num(0, 4)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (month, day, hour, minute) = (num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?);
    let mut i = 16;
    let mut second = 0;
    let mut micros = 0;
    if b.get(i) == Some(&b':') {
        second = num(i + 1, 2)?;
        i += 3;
        if matches!(b.get(i), Some(b'.' | b',')) {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return None;
            }
            let frac = num(start, digits)?;
            micros =
                if digits <= 6 { frac * 10i64.pow(6 - digits as u32) } else { frac / 10i64.pow(digits as u32 - 6) };
        }
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let hh = num(i + 1, 2)?;
            let mm = match b.len() - (i + 3) {
                0 => 0,
                3 if b[i + 3] == b':' => num(i + 4, 2)?,
                2 => num(i + 3, 2)?,
                _ => return None,
            };
            if hh > 23 || mm > 59 {
                return None;
            }
            let o = hh * 3600 + mm * 60;
            if sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1_000_000 + micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// The current time in Unix microseconds.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Formats microseconds since the epoch as RFC 3339 in UTC (`2024-01-02T03:04:05Z`, with a
/// fraction only when there is one).
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let base = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60);
    if frac == 0 { format!("{base}Z") } else { format!("{base}.{frac:06}Z") }
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings_to_the_same_instant() {
        let utc = parse_timestamp("2024-03-05T10:20:30Z").unwrap();
        assert_eq!(utc, 1_709_634_030_000_000);
        assert_eq!(parse_timestamp("2024-03-05T12:20:30+02:00"), Some(utc));
        assert_eq!(parse_timestamp("2024-03-05T05:20:30-0500"), Some(utc));
        assert_eq!(parse_timestamp("2024-03-05 10:20:30"), Some(utc));
        assert_eq!(parse_timestamp("2024-03-05T10:20:30.5Z"), Some(utc + 500_000));
        assert_eq!(parse_timestamp("2024-03-05T10:20:30.123456789+00:00"), Some(utc + 123_456));
        assert_eq!(parse_timestamp("2024-03-05T10:20Z"), Some(utc - 30_000_000));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59Z"), Some(-1_000_000));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["2024-03-05T10:20:30Z", "1969-12-31T23:59:59.500000Z", "2000-02-29T00:00:00Z"] {
            assert_eq!(format_timestamp(parse_timestamp(s).unwrap()), s);
        }
    }

    #[test]
    fn rejects_non_timestamps() {
        for s in [
            "2024-03-05",
            "hello world, not a date",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-03-05T10:20:30Zjunk",
            "2024-03-05T25:00:00Z",
            "2024-03-05T10:20:30+2",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
        assert!(parse_timestamp("2024-02-29T00:00:00Z").is_some());
    }
}
