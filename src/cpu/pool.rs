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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the runner waits for the other workers to start polling before it starts the
/// step without the ones that have not (they then take no part in keeping awake).
const CHECK_IN_WAIT: Duration = Duration::from_micros(500);

/// Runs `step` on one of rayon's workers while every other worker of the pool polls for
/// the work its parallel kernels hand out, and returns its result. A panic in `step` ends
/// the polling and is raised again here.
///
/// A worker polls only if it takes its polling job before the step starts. rayon hands the
/// broadcast's jobs to the workers one after another, so a worker can steal part of the
/// step's parallel work before its own job reaches it, and then take that job while it
/// waits inside the stolen work for a part that another worker took: polling there, on top
/// of work the step needs finished, until the step finishes, is a deadlock. (It happened:
/// a resumed run's evaluation hung, one worker polling inside the softmax's parallel loop
/// that the other waited on.) So the runner waits, up to `CHECK_IN_WAIT`, for the others to
/// check in, then marks the step started; a worker whose job comes later returns at once.
/// A worker that saw the step not yet started cannot hold any of its work: it would have
/// had to take it from a deque after the runner marked the step started.
pub fn run_with_workers_awake<R: Send>(step: impl FnOnce() -> R + Send) -> R {
    run_counting_pollers(step).0
}

/// `run_with_workers_awake`, and how many workers polled.
fn run_counting_pollers<R: Send>(step: impl FnOnce() -> R + Send) -> (R, usize) {
    if rayon::current_num_threads() == 1 {
        // No other worker; still run on the pool's, so that parallel kernels inside start
        // from a worker instead of handing their work to the pool and sleeping.
        let mut result = None;
        rayon::scope(|_| result = Some(step()));
        return (result.expect("the scope ran the step"), 0);
    }
    let done = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let polling = AtomicUsize::new(0);
    let others = rayon::current_num_threads() - 1;
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
            let deadline = Instant::now() + CHECK_IN_WAIT;
            while polling.load(Ordering::SeqCst) < others && Instant::now() < deadline {
                std::thread::yield_now();
            }
            started.store(true, Ordering::SeqCst);
            let _end = EndOnDrop(&done);
            Some(step())
        } else {
            if started.load(Ordering::SeqCst) {
                return None;
            }
            polling.fetch_add(1, Ordering::SeqCst);
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
    let result = results
        .swap_remove(runner)
        .expect("the runner ran the step");
    (result, polling.load(Ordering::SeqCst))
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

    /// A worker busy elsewhere until after the check-in wait takes its polling job once the
    /// step has started, and returns at once instead of polling; the step still finishes.
    #[test]
    fn a_worker_that_checks_in_late_does_not_poll() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (busy, release) = (AtomicBool::new(false), AtomicBool::new(false));
        let (sum, polled) = pool.in_place_scope(|s| {
            // One worker waits for the step's end; the step runs on the other.
            s.spawn(|_| {
                busy.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
            });
            while !busy.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            pool.install(|| {
                run_counting_pollers(|| {
                    let sum = (0..10_000u64).into_par_iter().map(|i| i % 7).sum::<u64>();
                    release.store(true, Ordering::SeqCst);
                    sum
                })
            })
        });
        assert_eq!(sum, (0..10_000u64).map(|i| i % 7).sum::<u64>());
        assert_eq!(
            polled, 0,
            "the busy worker polled after the step had started"
        );
    }

    /// Many short steps whose parallel loops nest, run one after another from outside the
    /// pool as the executor runs them, on pools of two and three threads: every one ends
    /// (a hang fails the test after a minute instead of stalling the suite).
    #[test]
    fn many_short_nested_steps_all_finish() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                for step in 0..300u64 {
                    let got = pool.install(|| {
                        run_with_workers_awake(|| {
                            (0..64u64)
                                .into_par_iter()
                                .map(|i| {
                                    (0..64u64)
                                        .into_par_iter()
                                        .map(|j| i * j + step)
                                        .sum::<u64>()
                                })
                                .sum::<u64>()
                        })
                    });
                    let want: u64 = (0..64u64)
                        .map(|i| (0..64u64).map(|j| i * j + step).sum::<u64>())
                        .sum();
                    assert_eq!(got, want, "{threads} threads, step {step}");
                }
            }
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a step did not finish within a minute");
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
