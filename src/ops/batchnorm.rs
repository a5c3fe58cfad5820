//! How batch normalization splits a channel's M = n·s values for its reductions, shared by
//! the GPU launcher and the CPU twin so that both reduce in the same order.
//!
//! A channel is cut into runs of consecutive m (m = ni·s + si), each reduced by one
//! workgroup of `WG` invocations, and the runs' partial results are then combined by one
//! workgroup per channel, one run per invocation. Runs are at least `MIN_RUN` values
//! (sixteen per invocation, which spreads a workgroup's fixed cost — its reduction tree's
//! barriers, and on lavapipe a launch cost of about 12 µs — over enough loads) and at most
//! `WG` per channel. resnet-20 at batch 128 gets 32, 8 and 2 runs per channel in its three
//! stages (512, 256 and 128 workgroups, where one per channel gave 16, 32 and 64).

/// Invocations per workgroup of batchnorm.wgsl.
pub const WG: usize = 256;

/// Fewest values in a run (except when the channel holds fewer).
pub const MIN_RUN: usize = 16 * WG;

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
        for count in [
            1,
            2,
            255,
            4096,
            4097,
            8192,
            131_072,
            1 << 20,
            (1 << 20) + 1,
            10_000_000,
        ] {
            let (runs, chunk) = runs(count);
            assert!((1..=WG).contains(&runs), "{count}: {runs} runs");
            assert!(
                runs * chunk >= count && (runs - 1) * chunk < count,
                "{count}"
            );
        }
        assert_eq!(runs(131_072), (32, 4096));
        assert_eq!(runs(100), (1, 4096));
        assert_eq!(runs((1 << 20) + 6), (256, 4097));
    }
}
