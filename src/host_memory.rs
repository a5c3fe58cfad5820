//! The host's free memory, checked before large allocations, so that a plan or a benchmark
//! too big for the machine is refused with the sizes instead of aborting (or being killed)
//! halfway through allocating.

use crate::error::{Error, Result};

/// Memory the operating system can give this process now (free plus reclaimable caches),
/// or None where it cannot be read.
pub fn available() -> Option<u64> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let a = sys.available_memory();
    // 0 means unknown (sysinfo reports 0 where the platform gives nothing).
    (a > 0).then_some(a)
}

/// Refuses `bytes` of host memory for `what` when more than the machine has available;
/// `fix` says what to change. Passes where the free memory cannot be read.
pub fn check(what: &str, bytes: u64, fix: &str) -> Result<()> {
    check_against(what, bytes, available(), fix)
}

/// `check` against a given free memory (None: unknown).
pub fn check_against(what: &str, bytes: u64, available: Option<u64>, fix: &str) -> Result<()> {
    match available {
        Some(a) if bytes > a => Err(Error::HostMemory {
            what: what.to_string(),
            needs: bytes,
            available: a,
            fix: fix.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Bytes as a person reads them: GiB above one, else MiB.
pub fn readable(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_what_exceeds_the_free_memory() {
        let gib = 1u64 << 30;
        assert!(check_against("x", gib, Some(2 * gib), "less").is_ok());
        assert!(check_against("x", 3 * gib, None, "less").is_ok());
        let e = check_against("the plan", 3 * gib, Some(2 * gib), "reduce the batch size")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the plan") && e.contains("3.0 GiB") && e.contains("2.0 GiB"),
            "{e}"
        );
        assert!(e.contains("reduce the batch size"), "{e}");
        assert_eq!(readable(5 << 20), "5.0 MiB");
    }

    #[test]
    fn this_machine_reports_its_free_memory() {
        // Every platform the engine is built for has a reading; 0 or None would disable
        // the checks silently.
        assert!(available().is_some_and(|a| a > 1 << 20));
    }
}
