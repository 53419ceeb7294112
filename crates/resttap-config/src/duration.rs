//! Durations as a configuration writes them: a number of seconds (`1`, `0.5`), a number with a
//! unit (`500ms`, `1s`, `5m`, `1h`, `1d`), or ISO 8601 (`PT1H`, `P1D`, `P1DT12H`, `P2W`).

use std::time::Duration;

use serde::Deserialize;

/// Parses a duration (see the module's documentation). Zero is a duration; negative ones and
/// years or months (whose length varies) are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty; write seconds (`30`), a unit (`500ms`, `5m`, `1h`) or ISO 8601 (`PT1H`)".into());
    }
    if t.starts_with(['P', 'p']) {
        return iso8601(t);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{t}` is not a duration: {HINT}"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millis" | "milliseconds" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        "w" | "week" | "weeks" => 7.0 * 86400.0,
        other => return Err(format!("`{t}` has an unknown unit `{other}`: {HINT}")),
    };
    seconds(value * scale, t)
}

const HINT: &str = "write seconds (`30`), a unit (`500ms`, `5m`, `1h`, `1d`) or ISO 8601 (`PT1H`, `P1D`)";

fn seconds(s: f64, text: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("`{text}` is out of range"))
}

/// `PnWnDTnHnMnS` (ISO 8601 durations without years and months).
fn iso8601(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not an ISO 8601 duration such as `PT1H`, `P1D` or `P1DT30M`");
    let upper = text.to_ascii_uppercase();
    let body = &upper[1..];
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (body, None),
    };
    let mut total = 0.0;
    let mut any = false;
    let parts: [(&str, &[(char, f64)]); 2] =
        [(date, &[('W', 604800.0), ('D', 86400.0)]), (time.unwrap_or(""), &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])];
    for (i, (part, units)) in parts.into_iter().enumerate() {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ',')).ok_or_else(bad)?;
            let (number, tail) = rest.split_at(end);
            let unit = tail.chars().next().ok_or_else(bad)?;
            if i == 0 && matches!(unit, 'Y' | 'M') {
                return Err(format!("`{text}`: years and months have no fixed length; write days (`P30D`)"));
            }
            // units in order, each once
            let at = allowed.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
            let value: f64 = number.replace(',', ".").parse().map_err(|_| bad())?;
            total += value * allowed[at].1;
            allowed = &allowed[at + 1..];
            rest = &tail[1..];
            any = true;
        }
    }
    if !any {
        return Err(bad());
    }
    seconds(total, text)
}

/// Deserializes a duration written as a number of seconds or as text ([`parse_duration`]).
pub fn deserialize_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
        Raw::Seconds(s) => Err(serde::de::Error::custom(format!("{s} is not a duration: {HINT}"))),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// [`deserialize_duration`] for an optional key.
pub fn deserialize_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_units_and_iso() {
        let s = |x: f64| Duration::from_secs_f64(x);
        for (text, want) in [
            ("1", s(1.0)),
            ("0.5", s(0.5)),
            ("500ms", s(0.5)),
            ("1s", s(1.0)),
            ("5m", s(300.0)),
            ("2 h", s(7200.0)),
            ("1d", s(86400.0)),
            ("PT1H", s(3600.0)),
            ("P1D", s(86400.0)),
            ("P1DT12H", s(129600.0)),
            ("PT1M30S", s(90.0)),
            ("PT0.5S", s(0.5)),
            ("P2W", s(1209600.0)),
            ("pt15m", s(900.0)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "soon", "5 parsecs", "P", "PT", "P1M", "P1Y", "PT1H1H", "PT1S1M", "-1s", "P1H", "1e999"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_duration("P1M").unwrap_err().contains("days"));
        assert!(parse_duration("PT5M").is_ok(), "minutes after T");
    }
}
