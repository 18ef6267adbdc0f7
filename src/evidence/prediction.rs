//! The predicted RTO: how long a restore of what storage holds now would take, from the
//! throughput that drills measured. Pure arithmetic; the drill and `dr check` gather the
//! figures.

/// One successful drill: what it restored and how long recovery took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub restored_bytes: u64,
    pub rto_ms: u64,
}

/// Drills a prediction looks at: the newest few, so that a faster or slower host shows
/// within days.
pub const SAMPLES: usize = 5;

/// Sizes closer than this are one size: their times are averaged instead of fitted.
const DISTINCT_SIZES: f64 = 1.2;

/// The predicted recovery time (ms) of `bytes`, from samples newest first; None without
/// a sample. Drills of clearly different sizes give a line (a fixed part plus a part per
/// byte, each at least 0); drills of about one size give their mean throughput.
pub fn predict_ms(bytes: u64, samples: &[Sample]) -> Option<u64> {
    let used: Vec<Sample> = samples
        .iter()
        .filter(|s| s.rto_ms > 0)
        .take(SAMPLES)
        .copied()
        .collect();
    if used.is_empty() {
        return None;
    }
    let xs: Vec<f64> = used.iter().map(|s| s.restored_bytes as f64).collect();
    let ys: Vec<f64> = used.iter().map(|s| s.rto_ms as f64).collect();
    let n = used.len() as f64;
    let (min, max) = xs
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    let x = bytes as f64;
    let predicted = if used.len() >= 2 && min > 0.0 && max / min > DISTINCT_SIZES {
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|v| (v - mx).powi(2)).sum();
        let sxy: f64 = xs.iter().zip(&ys).map(|(a, b)| (a - mx) * (b - my)).sum();
        let slope = (sxy / sxx).max(0.0);
        let intercept = (my - slope * mx).max(0.0);
        intercept + slope * x
    } else {
        let total_bytes: f64 = xs.iter().sum();
        let total_ms: f64 = ys.iter().sum();
        if total_bytes <= 0.0 {
            total_ms / n
        } else {
            x * total_ms / total_bytes
        }
    };
    Some(predicted.round().max(1.0) as u64)
}

/// Bytes per second the samples restored at (their total over their total time).
pub fn bytes_per_second(samples: &[Sample]) -> Option<u64> {
    let used = samples.iter().take(SAMPLES);
    let (bytes, ms) = used.fold((0u64, 0u64), |(b, m), s| {
        (b + s.restored_bytes, m + s.rto_ms)
    });
    (ms > 0).then(|| bytes.saturating_mul(1000) / ms)
}

/// The prediction's error against the measured time, in percent of the measured time:
/// positive when the prediction was too long.
pub fn error_pct(predicted_ms: u64, measured_ms: u64) -> Option<i64> {
    (measured_ms > 0).then(|| {
        ((predicted_ms as f64 - measured_ms as f64) * 100.0 / measured_ms as f64).round() as i64
    })
}

/// How a prediction compares with the RTO objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Within,
    /// Above 80% of the objective.
    Close,
    Above,
}

pub fn judge(predicted_ms: u64, objective_ms: u64) -> Verdict {
    if predicted_ms > objective_ms {
        Verdict::Above
    } else if predicted_ms * 10 > objective_ms * 8 {
        Verdict::Close
    } else {
        Verdict::Within
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: u64, ms: u64) -> Sample {
        Sample {
            restored_bytes: bytes,
            rto_ms: ms,
        }
    }

    #[test]
    fn one_size_scales_with_the_mean_throughput() {
        assert_eq!(predict_ms(1000, &[s(1000, 900), s(1000, 1100)]), Some(1000));
        assert_eq!(predict_ms(2000, &[s(1000, 1000)]), Some(2000));
        assert_eq!(predict_ms(2000, &[]), None);
    }

    #[test]
    fn different_sizes_fit_a_fixed_part_and_a_rate() {
        // 500 ms fixed, 1 ms per 1000 bytes.
        let samples = [s(1_000_000, 1500), s(3_000_000, 3500)];
        assert_eq!(predict_ms(10_000_000, &samples), Some(10_500));
    }

    #[test]
    fn error_and_verdict() {
        assert_eq!(error_pct(1300, 1000), Some(30));
        assert_eq!(error_pct(700, 1000), Some(-30));
        assert_eq!(judge(79, 100), Verdict::Within);
        assert_eq!(judge(81, 100), Verdict::Close);
        assert_eq!(judge(101, 100), Verdict::Above);
        assert_eq!(bytes_per_second(&[s(1000, 500)]), Some(2000));
    }
}
