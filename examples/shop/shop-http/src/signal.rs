//! SIGTERM/SIGINT → a flag the server polls, for a clean shutdown.
//!
//! The standard library cannot install signal handlers, and the services
//! may use no crates, so this is the one place with `unsafe`: a declaration
//! of libc's `signal(2)` (std links libc anyway, statically in the release
//! images). The handler only stores to an atomic, which is
//! async-signal-safe. Without a handler the default action (terminate) still
//! applies, except for a process running as PID 1 in a container, which the
//! kernel shields from default-action signals: there SIGTERM would be
//! ignored until the SIGKILL that follows it.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Whether SIGTERM or SIGINT arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sets the flag as a signal would (tests).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod imp {
    use super::STOP;
    use std::os::raw::c_int;
    use std::sync::atomic::Ordering;

    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    /// glibc's SIG_ERR, `(sighandler_t) -1`.
    const SIG_ERR: usize = usize::MAX;

    unsafe extern "C" {
        // `sighandler_t signal(int, sighandler_t)`: the previous handler may
        // be SIG_DFL (0) or SIG_IGN (1), which are no function pointers, so
        // the return type is an integer of pointer size.
        fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    }

    extern "C" fn on_signal(_signum: c_int) {
        STOP.store(true, Ordering::SeqCst);
    }

    pub(super) fn install() -> bool {
        // SAFETY: `signal` is called with valid signal numbers and a handler
        // that only performs an atomic store, which is async-signal-safe.
        // glibc's `signal` has BSD semantics (SA_RESTART), so blocking calls
        // in other threads are not disturbed.
        let results = unsafe { [signal(SIGTERM, on_signal), signal(SIGINT, on_signal)] };
        results.iter().all(|&r| r != SIG_ERR)
    }
}

#[cfg(not(unix))]
mod imp {
    pub(super) fn install() -> bool {
        false
    }
}

/// Installs the handlers; false if that failed (the process then simply
/// dies on SIGTERM, which is still acceptable).
pub fn install() -> bool {
    imp::install()
}
