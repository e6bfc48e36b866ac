//! Number formats shared by the dashboard and the headless progress line.

/// Formats a rate in at most 7 characters: one decimal below 1000, none below a million,
/// then millions with an `M`.
pub(crate) fn rate(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v < 1000.0 => format!("{v:.1}"),
        Some(v) if v < 1e6 => format!("{v:.0}"),
        Some(v) => format!("{:.1}M", v / 1e6),
    }
}

/// Formats a share in `0..=1` as a percentage with one decimal, without the `%` sign
/// (at most 5 characters).
pub(crate) fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{:.1}", v * 100.0))
}

/// Formats nanoseconds as `H:MM:SS`, or `Dd HH:MM:SS` past a day.
pub(crate) fn duration(ns: u64) -> String {
    let total = ns / 1_000_000_000;
    let (days, hours) = (total / 86_400, total / 3600 % 24);
    let (minutes, seconds) = (total / 60 % 60, total % 60);
    if days > 0 {
        format!("{days}d {hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours}:{minutes:02}:{seconds:02}")
    }
}

/// Formats a loss or learning rate with four significant digits.
pub(crate) fn value(v: f64) -> String {
    if v == 0.0 {
        "0.000".to_owned()
    } else if v.abs() < 1e-3 || v.abs() >= 1e5 {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_fit_seven_characters() {
        assert_eq!(rate(None), "-");
        assert_eq!(rate(Some(5.0)), "5.0");
        assert_eq!(rate(Some(999.94)), "999.9");
        assert_eq!(rate(Some(5120.0)), "5120");
        assert_eq!(rate(Some(999_999.0)), "999999");
        assert_eq!(rate(Some(2_500_000.0)), "2.5M");
    }

    #[test]
    fn percents_have_one_decimal() {
        assert_eq!(percent(Some(0.95)), "95.0");
        assert_eq!(percent(Some(1.0)), "100.0");
        assert_eq!(percent(Some(0.0005)), "0.1");
        assert_eq!(percent(None), "-");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0:00:00");
        assert_eq!(duration(988_000_000_000), "0:16:28");
        assert_eq!(duration((3 * 86_400 + 59) * 1_000_000_000), "3d 00:00:59");
        assert_eq!(duration((86_400 + 3661) * 1_000_000_000), "1d 01:01:01");
    }

    #[test]
    fn values_keep_four_digits() {
        assert_eq!(value(0.0299), "0.02990");
        assert_eq!(value(2.0), "2.000");
        assert_eq!(value(12.5), "12.50");
        assert_eq!(value(0.0), "0.000");
        assert_eq!(value(0.0001), "1.000e-4");
        assert_eq!(value(f64::NAN), "NaN");
    }
}
