//! The error of a GPU result against the CPU twin's, as one number per tensor.
//!
//! Floats: max |gpu − cpu| / max |cpu|, the error relative to the tensor's scale. An
//! element-wise relative error would blow up wherever the reference crosses zero (a
//! gradient, a centred activation), where both executors legitimately differ by a rounding
//! of the large terms that cancelled; measured against the largest value, every kernel's
//! error is a few units of f32 rounding times the depth of its sums, and a wrong element (a
//! bad index, a lost term) shows as an error of order 1. Integers and the counts of a
//! statistics record must agree exactly: a mismatch is reported as error 1.

use super::case::{Check, Data};
use crate::stats::{RECORD_WORDS, RawStats};

/// The error of `gpu` against `cpu` under `check`, and a phrase locating the worst element.
pub fn error(check: Check, gpu: &Data, cpu: &Data) -> (f64, String) {
    match (check, gpu, cpu) {
        (Check::Close(_), Data::F32(g), Data::F32(c)) => close(g, c),
        (Check::Exact, Data::U32(g), Data::U32(c)) => exact(g, c),
        (Check::Stats(_), Data::U32(g), Data::U32(c)) => stats(g, c),
        (Check::Input, ..) => (0.0, String::new()),
        _ => (f64::INFINITY, "GPU and CPU tensors differ in type".into()),
    }
}

fn close(g: &[f32], c: &[f32]) -> (f64, String) {
    if g.len() != c.len() {
        return (
            f64::INFINITY,
            format!("{} elements against {}", g.len(), c.len()),
        );
    }
    let scale = c
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, &v| m.max((v as f64).abs()));
    let scale = if scale > 0.0 { scale } else { 1.0 };
    let mut worst = (0f64, 0usize);
    for (i, (&a, &b)) in g.iter().zip(c).enumerate() {
        let same_nonfinite = (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b);
        let e = if same_nonfinite {
            0.0
        } else {
            let d = (a as f64 - b as f64).abs() / scale;
            if d.is_nan() { f64::INFINITY } else { d }
        };
        if e > worst.0 {
            worst = (e, i);
        }
    }
    let (e, i) = worst;
    let at = if e > 0.0 {
        format!("worst at index {i}: gpu {}, cpu {}", g[i], c[i])
    } else {
        String::new()
    };
    (e, at)
}

fn exact(g: &[u32], c: &[u32]) -> (f64, String) {
    if g.len() != c.len() {
        return (1.0, format!("{} elements against {}", g.len(), c.len()));
    }
    match g.iter().zip(c).position(|(a, b)| a != b) {
        None => (0.0, String::new()),
        Some(i) => (
            1.0,
            format!(
                "{} of {} differ; first at index {i}: gpu {}, cpu {}",
                g.iter().zip(c).filter(|(a, b)| a != b).count(),
                g.len(),
                g[i],
                c[i]
            ),
        ),
    }
}

/// Records compared field by field: counts, selections and histogram exactly where the
/// twins promise it (they are counted, not summed), the summed moments relative to the
/// record's own scale (max |x| for the mean, the sums of squares against themselves).
fn stats(g: &[u32], c: &[u32]) -> (f64, String) {
    if g.len() != c.len() || !g.len().is_multiple_of(RECORD_WORDS) {
        return (1.0, "records of different sizes".into());
    }
    let g: &[RawStats] = bytemuck::cast_slice(g);
    let c: &[RawStats] = bytemuck::cast_slice(c);
    let mut worst = (0f64, String::new());
    for (i, (a, b)) in g.iter().zip(c).enumerate() {
        let counts = |r: &RawStats| (r.finite, r.nan, r.inf, r.zeros, r.saturated, r.hist);
        if counts(a) != counts(b) || a.min != b.min || a.max != b.max || a.max_abs != b.max_abs {
            return (
                1.0,
                format!("record {i}: counts, histogram or extrema differ"),
            );
        }
        let rel = |x: f32, y: f32, scale: f32| {
            let s = if scale != 0.0 { scale.abs() } else { 1.0 };
            ((x as f64 - y as f64) / s as f64).abs()
        };
        for (field, e) in [
            ("mean", rel(a.mean, b.mean, b.max_abs)),
            ("m2", rel(a.m2_scaled, b.m2_scaled, b.m2_scaled)),
            ("norm", rel(a.norm_ssq, b.norm_ssq, b.norm_ssq)),
        ] {
            let e = if e.is_nan() { f64::INFINITY } else { e };
            if e > worst.0 {
                worst = (e, format!("record {i}: {field}"));
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::aligned::AlignedBuf;

    #[test]
    fn close_is_relative_to_the_largest_value() {
        let c = Data::F32(AlignedBuf::from_slice(&[100.0, 0.0, -1.0]));
        let g = Data::F32(AlignedBuf::from_slice(&[100.0, 0.01, -1.0]));
        let (e, at) = error(Check::Close(1e-3), &g, &c);
        assert!((e - 1e-4).abs() < 1e-9, "{e}");
        assert!(at.contains("index 1"), "{at}");
    }

    #[test]
    fn a_nan_is_an_infinite_error_unless_both_are_nan() {
        let c = Data::F32(AlignedBuf::from_slice(&[1.0, f32::NAN]));
        assert_eq!(error(Check::Close(1e-3), &c, &c).0, 0.0);
        let g = Data::F32(AlignedBuf::from_slice(&[f32::NAN, f32::NAN]));
        assert_eq!(error(Check::Close(1e-3), &g, &c).0, f64::INFINITY);
    }

    #[test]
    fn integers_must_match_exactly() {
        let c = Data::U32(vec![1, 2, 3]);
        assert_eq!(error(Check::Exact, &c, &c).0, 0.0);
        let g = Data::U32(vec![1, 2, 4]);
        let (e, at) = error(Check::Exact, &g, &c);
        assert_eq!(e, 1.0);
        assert!(at.contains("index 2"), "{at}");
    }

    #[test]
    fn stats_records_compare_counts_exactly_and_moments_relatively() {
        let x: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.37).sin()).collect();
        let r = crate::cpu::stats::stats_reduce(&x, None);
        let words = |r: &RawStats| Data::U32(bytemuck::cast_slice(&[*r]).to_vec());
        assert_eq!(error(Check::Stats(1e-4), &words(&r), &words(&r)).0, 0.0);
        let mut m = r;
        m.mean += 1e-3 * r.max_abs;
        let e = error(Check::Stats(1e-4), &words(&m), &words(&r)).0;
        assert!((e - 1e-3).abs() < 1e-5, "{e}");
        let mut z = r;
        z.zeros += 1;
        assert_eq!(error(Check::Stats(1e-4), &words(&z), &words(&r)).0, 1.0);
    }
}
