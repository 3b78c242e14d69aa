//! The one date format Twilio's REST API writes (`Wed, 02 Dec 2026 03:40:05 +0000`), read
//! into a `SystemTime` without a date library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `Wed, 02 Dec 2026 03:40:05 +0000` (the weekday optional, any numeric offset).
pub(crate) fn parse(text: &str) -> Option<SystemTime> {
    let rest = text.split_once(", ").map_or(text, |(_, r)| r);
    let mut parts = rest.split_whitespace();
    let day: i64 = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as i64 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(str::parse::<i64>);
    let (h, mi, se) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let offset = parts.next().unwrap_or("+0000");
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits = offset.trim_start_matches(['+', '-']);
    let (oh, om): (i64, i64) = (
        digits.get(..2)?.parse().ok()?,
        digits.get(2..4)?.parse().ok()?,
    );
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se
        - sign * (oh * 3600 + om * 60);
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The same format for `time` (in UTC), as the fake Twilio of the tests writes it.
#[allow(dead_code)]
pub(crate) fn format(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    format!(
        "{weekday}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_twilio_dates_and_writes_them_back() {
        let t = parse("Wed, 02 Dec 2026 03:40:05 +0000").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_182_805
        );
        assert_eq!(format(t), "Wed, 02 Dec 2026 03:40:05 +0000");
        assert_eq!(parse("02 Dec 2026 05:40:05 +0200"), Some(t));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 +0000"), Some(UNIX_EPOCH));
        for bad in [
            "",
            "Wed, 32 Dec 2026 03:40:05 +0000",
            "Wed, 02 Dek 2026 03:40:05 +0000",
            "yesterday",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let now = SystemTime::now();
        let back = parse(&format(now)).unwrap();
        assert!(now.duration_since(back).unwrap() < Duration::from_secs(1));
    }
}
