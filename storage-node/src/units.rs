//! Human-friendly sizes and durations in config files and flags: `500GiB`, `1.5TB`, `64MiB/s`,
//! `30s`, `10m`, `24h`.

use std::time::Duration;

/// A value that is not a size or a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what} (examples: {examples})")]
pub struct UnitError {
    value: String,
    what: &'static str,
    examples: &'static str,
}

fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    Some((number, s[end..].trim()))
}

/// Parses a byte size: a number with an optional unit (`B`, `KB`, `MB`, `GB`, `TB` in powers of
/// 1000; `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024; case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        value: s.to_string(),
        what: "byte size",
        examples: "500GiB, 1.5TB, 1048576",
    };
    let (number, unit) = split_number(s).ok_or_else(err)?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let bytes = (number * scale).round();
    if bytes >= u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// Parses a duration: a number with a unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        value: s.to_string(),
        what: "duration",
        examples: "500ms, 30s, 10m, 24h, 7d",
    };
    let (number, unit) = split_number(s).ok_or_else(err)?;
    let secs = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

/// Formats a byte count with a binary unit, e.g. `1.50 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500GiB"), Ok(500 << 30));
        assert_eq!(parse_size("1.5TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size(" 64 mib "), Ok(64 << 20));
        for bad in [
            "",
            "GiB",
            "-1GiB",
            "1 parsec",
            "1e999",
            "99999999999999999999TiB",
            "1.2.3",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(1536 << 20), "1.50 GiB");
        assert_eq!(format_size(12), "12 B");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "10", "5 weeks", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
