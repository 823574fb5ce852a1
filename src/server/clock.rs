//! The clocks the shell reads and passes to the UAS.

use std::time::Instant;

use crate::uas::Now;

/// Reads both clocks.
///
/// Both follow tokio's clock, so a test that pauses it
/// (`tokio::time::pause()`/`advance()`) drives wrap-up timers and the
/// `since`/`at` timestamps too: the wall clock is the system's, shifted by
/// how far tokio's clock is from the real monotonic one (zero unless
/// paused).
pub(super) fn now() -> Now {
    let mono = tokio::time::Instant::now().into_std();
    let real = Instant::now();
    let sys = std::time::SystemTime::now();
    let sys = if mono >= real {
        sys + (mono - real)
    } else {
        sys - (real - mono)
    };
    let wall = sys
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now { mono, wall }
}
