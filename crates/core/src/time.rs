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

/// `2026-11-27 08:24:43.123Z`, the form of `/r/test` and `ping.jsp`.
pub fn server_date(now: Now) -> String {
    let (y, m, d, h, mi, s, ms) = parts(now);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

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
