//! dlt's coercions into the types that JSON has no literal for: `decimal` and `wei` (exact
//! decimal text, which each destination turns into its fixed-point type), `binary` and `time`
//! (`dlt.common.data_types.type_helpers`, `dlt.common.time.ensure_pendulum_time`).

use base64::Engine;

/// A decimal number written as a string (`" -12.50 "`, `1e3`, `0x1f`: dlt's `Decimal(text)`
/// and hex integers), as plain decimal text with no exponent (`-12.50`, `1000`, `31`). `None`
/// for text that is no finite number (dlt puts those in a variant column).
pub fn decimal_text(s: &str) -> Option<String> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x") {
        return u128::from_str_radix(hex, 16).ok().map(|n| n.to_string());
    }
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // digits and the position of the point among them, then the exponent moves the point
    let digits = format!("{int}{frac}");
    let point = i64::from(int.len() as u32) + i64::from(exp);
    if !(-4000..=4000).contains(&point) {
        return None;
    }
    let (whole, fraction) = if point <= 0 {
        ("0".to_string(), format!("{}{digits}", "0".repeat((-point) as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut out = String::with_capacity(whole.len() + fraction.len() + 2);
    if neg && (whole != "0" || fraction.bytes().any(|b| b != b'0')) {
        out.push('-');
    }
    out.push_str(whole);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(&fraction);
    }
    Some(out)
}

/// A float as exact decimal text: the shortest digits that read back as the same float
/// (Python's `str(float)`, which dlt passes to `Decimal`), without an exponent.
pub fn float_decimal_text(f: f64) -> Option<String> {
    f.is_finite().then(|| decimal_text(&format!("{f:e}")).expect("a float's own digits"))
}

/// Text as bytes, as dlt reads it: `0x` and hex digits, or strict base64.
pub fn binary_from_text(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("0x") {
        // Python's bytes.fromhex: pairs of hex digits, spaces between pairs allowed
        let digits: Vec<u8> = hex.bytes().filter(|b| *b != b' ').collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect();
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// An integer as bytes, as dlt turns a `bigint` into `binary`: little-endian, as few bytes as
/// its bits need (none for 0); a negative number has no such bytes.
pub fn binary_from_int(n: u64) -> Vec<u8> {
    let len = (64 - n.leading_zeros()).div_ceil(8) as usize;
    n.to_le_bytes()[..len].to_vec()
}

/// An ISO 8601 time of day (`12:34`, `12:34:56`, `12:34:56.123456`, with `Z` or an offset such
/// as `+02:00`), as microseconds since midnight in UTC: dlt converts an offset time to UTC and
/// keeps the time of day. Digits beyond the microsecond are dropped. A date-time is not a
/// time (dlt refuses it too).
pub fn time_of_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let two = |at: usize| -> Option<i64> {
        let d = b.get(at..at + 2)?;
        d.iter().all(u8::is_ascii_digit).then(|| i64::from((d[0] - b'0') * 10 + (d[1] - b'0')))
    };
    let (h, m) = (two(0)?, two(3)?);
    if b.get(2) != Some(&b':') || h > 23 || m > 59 {
        return None;
    }
    let mut at = 5;
    let mut secs = 0;
    let mut micros = 0;
    if b.get(at) == Some(&b':') {
        secs = two(at + 1)?;
        if secs > 59 {
            return None;
        }
        at += 3;
        if matches!(b.get(at), Some(b'.' | b',')) {
            let start = at + 1;
            let mut end = start;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if end == start {
                return None;
            }
            let frac = &s[start..end.min(start + 6)];
            micros = frac.parse::<i64>().ok()? * 10_i64.pow(6 - frac.len() as u32);
            at = end;
        }
    }
    let offset = match &s[at..] {
        "" | "Z" | "z" => 0,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = zone[1..].replace(':', "");
            if z.len() != 2 && z.len() != 4 || !z.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let oh: i64 = z[..2].parse().ok()?;
            let om: i64 = if z.len() == 4 { z[2..].parse().ok()? } else { 0 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let day = 86_400 * 1_000_000;
    Some(((h * 3600 + m * 60 + secs - offset) * 1_000_000 + micros).rem_euclid(day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_plain_and_exact() {
        let cases = [
            ("12.345", Some("12.345")),
            (" -0012.50 ", Some("-12.50")),
            ("+1e3", Some("1000")),
            ("1.5E-3", Some("0.0015")),
            (".5", Some("0.5")),
            ("5.", Some("5")),
            ("-0.0", Some("0.0")),
            ("0x1f", Some("31")),
            ("123456789012345678901234567890", Some("123456789012345678901234567890")),
            ("abc", None),
            ("", None),
            ("1.2.3", None),
            ("NaN", None),
            ("Infinity", None),
            ("1e99999", None),
        ];
        for (s, want) in cases {
            assert_eq!(decimal_text(s).as_deref(), want, "{s:?}");
        }
        assert_eq!(float_decimal_text(12.345).as_deref(), Some("12.345"));
        assert_eq!(float_decimal_text(0.1).as_deref(), Some("0.1"));
        assert_eq!(float_decimal_text(1e30).as_deref(), Some("1000000000000000000000000000000"));
        assert_eq!(float_decimal_text(-2.5e-7).as_deref(), Some("-0.00000025"));
    }

    #[test]
    fn binary_reads_hex_and_strict_base64() {
        assert_eq!(binary_from_text("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(binary_from_text("0x68656c6c6f").as_deref(), Some(&b"hello"[..]));
        assert_eq!(binary_from_text("0x68 65").as_deref(), Some(&b"he"[..]));
        assert_eq!(binary_from_text("hello"), None);
        assert_eq!(binary_from_text("0x6"), None);
        assert_eq!(binary_from_int(0), Vec::<u8>::new());
        assert_eq!(binary_from_int(258), vec![2, 1]);
    }

    #[test]
    fn times_of_day_in_utc() {
        let us = |h: i64, m: i64, s: i64| (h * 3600 + m * 60 + s) * 1_000_000;
        assert_eq!(time_of_day("12:34:56"), Some(us(12, 34, 56)));
        assert_eq!(time_of_day("12:34"), Some(us(12, 34, 0)));
        assert_eq!(time_of_day("12:34:56.123456"), Some(us(12, 34, 56) + 123_456));
        assert_eq!(time_of_day("12:34:56.1234567"), Some(us(12, 34, 56) + 123_456));
        assert_eq!(time_of_day("12:34:56.5"), Some(us(12, 34, 56) + 500_000));
        assert_eq!(time_of_day("12:34:56Z"), Some(us(12, 34, 56)));
        assert_eq!(time_of_day("12:34:56+02:00"), Some(us(10, 34, 56)));
        assert_eq!(time_of_day("01:00:00+02:00"), Some(us(23, 0, 0)));
        assert_eq!(time_of_day("23:30:00-0100"), Some(us(0, 30, 0)));
        for bad in ["25:00:00", "12:60", "abc", "2024-01-01T12:34:56Z", "12:34:56 x", "1:2:3"] {
            assert_eq!(time_of_day(bad), None, "{bad}");
        }
    }
}
