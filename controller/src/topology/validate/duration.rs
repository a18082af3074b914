//! Durations as topology files write them: whole seconds (`5`), or a whole
//! number with a unit, `ms`, `s`, `m` or `h` (`500ms`, `5s`, `4m`, `1h`).

use super::Checker;
use crate::topology::raw::RawDuration;
use serde_saphyr::Spanned;
use std::time::Duration;

/// What a malformed duration is answered with.
const WANT: &str = "want a duration like 500ms, 5s, 4m, 1h or whole seconds";

/// Parses a duration's text; `None` if malformed or too long to hold.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
}

/// A duration value of the file, checked; `None` (after an error) if it is
/// malformed.
pub(super) fn duration(
    c: &mut Checker<'_>,
    raw: &Spanned<RawDuration>,
    path: &str,
) -> Option<Duration> {
    let (text, parsed) = match &raw.value {
        RawDuration::Seconds(n) => (
            n.to_string(),
            u64::try_from(*n).ok().map(Duration::from_secs),
        ),
        RawDuration::Text(t) => (t.clone(), parse_duration(t)),
    };
    if parsed.is_none() {
        c.error(raw, path, format!("{text:?}: {WANT}"));
    }
    parsed
}

/// A duration written back the way files write it (`5s`, `500ms`, `4m`),
/// for messages.
pub(super) fn show(d: Duration) -> String {
    let millis = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{d:?}")
    } else if millis != 0 && millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else if millis != 0 && millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("500ms", ms(500)),
            ("5s", ms(5_000)),
            ("4m", ms(240_000)),
            ("1h", ms(3_600_000)),
            ("7", ms(7_000)),
            (" 2 m ", ms(120_000)),
            ("0s", ms(0)),
        ] {
            assert_eq!(parse_duration(text), Some(want), "{text:?}");
        }
        for text in [
            "",
            "s",
            "-1s",
            "1.5s",
            "5x",
            "5 sec",
            "1d",
            "18446744073709551615h",
        ] {
            assert_eq!(parse_duration(text), None, "{text:?}");
        }
    }

    #[test]
    fn shown_as_written() {
        for text in ["500ms", "5s", "4m", "1h", "90s", "1500ms", "0s"] {
            assert_eq!(show(parse_duration(text).unwrap()), text);
        }
        assert_eq!(show(Duration::from_micros(1500)), "1.5ms");
    }
}
