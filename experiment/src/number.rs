//! How numbers are written back to people: sampled parameter values and stop reasons.

/// Writes `value` the way a user would type it: integers without `.0`, other values in the
/// shortest form that parses back to the same `f64`, exponent notation only when very small
/// or very large.
pub(crate) fn format_number(value: f64) -> String {
    if value == 0.0 {
        // Also turns -0 into 0, which nobody types.
        return "0".to_owned();
    }
    if !value.is_finite() {
        return value.to_string();
    }
    if (1e-4..1e16).contains(&value.abs()) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

/// Writes `value` with `decimals` digits after the point, then drops trailing zeros; used
/// to print `k * q` without the binary noise (`0.30000000000000004` → `0.3`).
pub(crate) fn format_fixed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let trimmed = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text.as_str()
    };
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Returns how many digits follow the point in the shortest form of `value`, or `None`
/// when that form uses an exponent.
pub(crate) fn decimal_places(value: f64) -> Option<usize> {
    let text = format_number(value);
    if text.contains(['e', 'E']) {
        return None;
    }
    Some(
        text.split_once('.')
            .map_or(0, |(_, fraction)| fraction.len()),
    )
}

/// Writes a computed value (a median, a threshold) for a sentence: four decimals at most,
/// so reasons read "0.8767" rather than "0.8766666666666667".
pub(crate) fn format_approx(value: f64) -> String {
    if value != 0.0 && value.is_finite() && value.abs() < 1e-3 {
        return format!("{value:.3e}");
    }
    if value.is_finite() && value.abs() >= 1e16 {
        return format_number(value);
    }
    format_fixed(value, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_a_user_types() {
        assert_eq!(format_number(16.0), "16");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(0.001), "0.001");
        assert_eq!(format_number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_number(1e-5), "1e-5");
        assert_eq!(format_number(2.5e20), "2.5e20");
        assert_eq!(format_fixed(0.1 * 3.0, 1), "0.3");
        assert_eq!(format_fixed(15.0, 0), "15");
        assert_eq!(format_fixed(-0.0001, 2), "0");
        assert_eq!(decimal_places(0.05), Some(2));
        assert_eq!(decimal_places(5.0), Some(0));
        assert_eq!(decimal_places(1e-7), None);
        assert_eq!(format_approx(0.876_666_666), "0.8767");
        assert_eq!(format_approx(2.0), "2");
    }
}
