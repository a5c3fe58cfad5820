//! Running a training step on rayon's pool with the pool's other workers kept awake.
//!
//! A step of a small network is a string of short parallel kernels with short serial ops
//! between them. Between two parallel kernels rayon's idle workers go to sleep within tens
//! of microseconds, and waking one takes as long again (a futex wake, an interrupt to
//! another core of a virtual machine): measured on the two-core development guest, a
//! 128×256×256 product on two threads took 88 µs back to back and 103–115 µs after 50 µs
//! to 1 ms of serial work, up to a third more. So for a step, every worker but the one
//! running it polls rayon for work (`rayon::yield_now`) and yields its core to the OS when
//! there is none, until the step ends.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `step` on one of rayon's workers while every other worker of the pool polls for
/// the work its parallel kernels hand out, and returns its result. A panic in `step` ends
/// the polling and is raised again here.
pub fn run_with_workers_awake<R: Send>(step: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() == 1 {
        // No other worker; still run on the pool's, so that parallel kernels inside start
        // from a worker instead of handing their work to the pool and sleeping.
        let mut result = None;
        rayon::scope(|_| result = Some(step()));
        return result.expect("the scope ran the step");
    }
    let done = AtomicBool::new(false);
    let step = Mutex::new(Some(step));
    // Called from one of the pool's workers, that worker runs the step (it would wait for
    // it anyway); from outside the pool, worker 0.
    let runner = rayon::current_thread_index().unwrap_or(0);
    let mut results = rayon::broadcast(|worker| {
        if worker.index() == runner {
            let step = step
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take()
                .expect("one worker runs the step");
            let _end = EndOnDrop(&done);
            Some(step())
        } else {
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    // Nothing to do: let the OS run anything else waiting for this core
                    // (the step itself, where the pool has more threads than cores).
                    std::thread::yield_now();
                }
            }
            None
        }
    });
    results
        .swap_remove(runner)
        .expect("the runner ran the step")
}

/// Sets the flag when dropped, so that the pollers stop however the step ends.
struct EndOnDrop<'a>(&'a AtomicBool);

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// The step's parallel work is done, and right, on pools of one to four threads, and
    /// from inside a pool as from outside one.
    #[test]
    fn runs_the_step_with_its_parallel_work() {
        for threads in 1..=4 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let sum = pool.install(|| {
                run_with_workers_awake(|| {
                    (0..10_000u64)
                        .into_par_iter()
                        .map(|i| (0..100u64).into_par_iter().map(|j| i ^ j).sum::<u64>())
                        .sum::<u64>()
                })
            });
            let want: u64 = (0..10_000u64)
                .map(|i| (0..100u64).map(|j| i ^ j).sum::<u64>())
                .sum();
            assert_eq!(sum, want, "{threads} threads");
        }
        assert_eq!(run_with_workers_awake(|| 7), 7);
    }

    /// Steps started from several of the pool's workers at once (each runs on its own
    /// worker, the pollers of one run the others' work) all finish.
    #[test]
    fn steps_from_several_workers_at_once_finish() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let total: u64 = pool.install(|| {
            (0..12u64)
                .into_par_iter()
                .map(|i| {
                    run_with_workers_awake(|| {
                        (0..1000u64).into_par_iter().map(|j| i * j).sum::<u64>()
                    })
                })
                .sum()
        });
        assert_eq!(total, (0..12u64).map(|i| i * 499_500).sum::<u64>());
    }

    /// A panicking step stops the pollers and reaches the caller.
    #[test]
    fn a_panic_in_the_step_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| run_with_workers_awake(|| -> u32 { panic!("step failed") }))
        }));
        assert!(caught.is_err());
        // The pool still works afterwards (no worker is left polling).
        assert_eq!(pool.install(|| run_with_workers_awake(|| 5)), 5);
    }
}
