//! Duration-valued properties as Amoro writes them: a number with a unit (`ms`, `s`, `min`, `h`,
//! `d`, and their long forms); a bare number is milliseconds (Flink's `TimeUtils`, which Amoro
//! uses).

use std::time::Duration;

/// Units and their length in milliseconds, longest spelling first where one is a prefix.
const UNITS: [(&[&str], u64); 5] = [
    (&["ms", "milli", "millis", "millisecond", "milliseconds"], 1),
    (&["s", "sec", "secs", "second", "seconds"], 1_000),
    (&["min", "mins", "minute", "minutes", "m"], 60_000),
    (&["h", "hour", "hours"], 3_600_000),
    (&["d", "day", "days"], 86_400_000),
];

/// Parses `720min`, `12 h`, `1d`, `30000`. `None` for anything else (empty, negative, unknown
/// unit, overflow).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let millis = if unit.is_empty() { 1 } else { UNITS.iter().find(|(names, _)| names.contains(&unit.as_str()))?.1 };
    number.checked_mul(millis).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_amoro_writes_them() {
        let ms = |v| Some(Duration::from_millis(v));
        assert_eq!(parse_duration("720min"), ms(43_200_000));
        assert_eq!(parse_duration("12h"), ms(43_200_000));
        assert_eq!(parse_duration("12 h"), ms(43_200_000));
        assert_eq!(parse_duration("1d"), ms(86_400_000));
        assert_eq!(parse_duration("2 days"), ms(172_800_000));
        assert_eq!(parse_duration("30s"), ms(30_000));
        assert_eq!(parse_duration("250ms"), ms(250));
        assert_eq!(parse_duration("30000"), ms(30_000), "a bare number is milliseconds");
        assert_eq!(parse_duration(" 5m "), ms(300_000));
        for bad in ["", "abc", "-1h", "1.5h", "10 fortnights", "h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
