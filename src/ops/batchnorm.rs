//! How batch normalization splits a channel's M = n·s values for its reductions, shared by
//! the GPU launcher and the CPU twin so that both reduce in the same order.
//!
//! A channel is cut into runs of consecutive m (m = ni·s + si), each reduced by one
//! workgroup of `WG` invocations, and the runs' partial results are then combined by one
//! workgroup per channel, one run per invocation. Runs are at least `MIN_RUN` values (four
//! per invocation, so a workgroup's fixed cost is spread) and at most `WG` per channel.

/// Invocations per workgroup of batchnorm.wgsl.
pub const WG: usize = 256;

/// Fewest values in a run (except when the channel holds fewer).
pub const MIN_RUN: usize = 4 * WG;

/// The runs of a channel of `count` values: (runs, values per run), runs ≤ WG.
pub fn runs(count: usize) -> (usize, usize) {
    let chunk = MIN_RUN.max(count.div_ceil(WG));
    (count.div_ceil(chunk).max(1), chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_channel_and_stay_within_a_workgroup() {
        for count in [1, 2, 255, 1024, 1025, 8192, 131_072, 262_144, 262_145, 10_000_000] {
            let (runs, chunk) = runs(count);
            assert!((1..=WG).contains(&runs), "{count}: {runs} runs");
            assert!(runs * chunk >= count && (runs - 1) * chunk < count, "{count}");
        }
        assert_eq!(runs(131_072), (128, 1024));
        assert_eq!(runs(100), (1, 1024));
    }
}
