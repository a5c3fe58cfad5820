//! Numbers said in words, for the summary at the top of a study's report: a gradient
//! ratio as a power of ten or as "within a factor F", a spread across layers, a loss.

/// The smallest "round" factor F with 1/F ≤ r ≤ F, among those a reader takes in at once.
const FACTORS: [f64; 5] = [1.5, 2.0, 3.0, 5.0, 10.0];

/// A power of ten with one decimal where it matters: "10^-8", "10^-1.5".
pub fn power_of_ten(x: f64) -> String {
    let e = x.log10();
    if (e - e.round()).abs() < 0.05 || e.abs() >= 3.0 {
        format!("10^{}", e.round() as i64)
    } else {
        format!("10^{e:.1}")
    }
}

/// How `r` (first layer's gradient over the last layer's) compares to 1, ending a sentence
/// like "the first layer's gradient is …": "within a factor 2 of the last layer's",
/// "10^-8 of the last layer's", "10^3 times the last layer's".
pub fn ratio(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        return "not finite (the run produced NaN or Inf)".into();
    }
    if let Some(f) = FACTORS.iter().find(|&&f| r <= f && r >= 1.0 / f) {
        return format!("within a factor {} of the last layer's", trim(*f));
    }
    if r < 1.0 {
        format!("{} of the last layer's", power_of_ten(r))
    } else {
        format!("{} times the last layer's", power_of_ten(r))
    }
}

/// How far apart the largest and smallest of some per-layer values are (`s` ≥ 1):
/// "within a factor 2", "a factor 10^5 apart".
pub fn spread(s: f64) -> String {
    if !s.is_finite() {
        return "not all finite".into();
    }
    match FACTORS.iter().find(|&&f| s <= f) {
        Some(f) => format!("within a factor {} of each other", trim(*f)),
        None => format!("{} apart", power_of_ten(s)),
    }
}

/// A number with three significant digits, without trailing zeros.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else {
            "∞".into()
        };
    }
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        return format!("{x:.2e}");
    }
    let digits = (3 - 1 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn trim(f: f64) -> String {
    num(f)
}

/// "a, b and c".
pub fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_as_words() {
        assert_eq!(ratio(1e-8), "10^-8 of the last layer's");
        assert_eq!(ratio(0.6), "within a factor 2 of the last layer's");
        assert_eq!(ratio(1.2), "within a factor 1.5 of the last layer's");
        assert_eq!(ratio(0.03), "10^-1.5 of the last layer's");
        assert_eq!(ratio(2000.0), "10^3 times the last layer's");
        assert_eq!(ratio(200.0), "10^2.3 times the last layer's");
        assert_eq!(ratio(f64::NAN), "not finite (the run produced NaN or Inf)");
        assert_eq!(spread(1.7), "within a factor 2 of each other");
        assert_eq!(spread(1e5), "10^5 apart");
        assert_eq!(num(0.12345), "0.123");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(123.4), "123");
        assert_eq!(list(&["a".into(), "b".into(), "c".into()]), "a, b and c");
    }
}
