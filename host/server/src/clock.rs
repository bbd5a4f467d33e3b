//! Clocks the server reads besides `Instant`: the calling thread's CPU time,
//! for the figures the benchmarks print.

use std::time::Duration;

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`; the
/// standard library has no per-thread CPU clock).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
