//! Dates as the instance's clients read them, computed from epoch milliseconds (no time zone
//! database needed: everything is UTC).

use crate::clock::Now;

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parts(now: Now) -> (i64, u32, u32, i64, i64, i64, i64) {
    let ms = now.millis();
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil(days);
    (
        y,
        m,
        d,
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    )
}

/// `2026-11-27T08:24:43.123Z` (`xsd:dateTime`).
pub fn iso8601(now: Now) -> String {
    let (y, m, d, h, mi, s, ms) = parts(now);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// Days since 1970-01-01 of a civil date (the inverse of `civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads back what [`iso8601`] writes (`2026-11-27T08:24:43.123Z`); `None` for anything else.
pub fn parse_iso8601(text: &str) -> Option<Now> {
    let b = text.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = text.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(d).ok()?);
    Some(Now::from_millis(
        days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + ms,
    ))
}

/// `2026-11-27 08:24:43.123Z`, the form of `/r/test` and `ping.jsp`.
pub fn server_date(now: Now) -> String {
    let (y, m, d, h, mi, s, ms) = parts(now);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_reads_back() {
        for ms in [0, 951_782_400_000, 1_795_764_283_123, 4_102_444_799_999] {
            let t = Now::from_millis(ms);
            assert_eq!(parse_iso8601(&iso8601(t)), Some(t), "{}", iso8601(t));
        }
        for bad in [
            "",
            "2026-11-27",
            "2026-13-01T00:00:00.000Z",
            "2026-11-27T08:24:43Z",
            "2026-11-27T08:24:43.12xZ",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(iso8601(Now::from_millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(Now::from_millis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            server_date(Now::from_millis(1_795_764_283_123)),
            "2026-11-27 07:24:43.123Z"
        );
    }
}
