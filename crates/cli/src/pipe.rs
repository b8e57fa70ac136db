//! Broken pipes end the command quietly, in one place.
//!
//! Rust ignores SIGPIPE, so writing to a closed pipe (`gantry status ID |
//! head -1`, once `head` has gone) fails with EPIPE, and `println!` panics on
//! that. SIGPIPE is not given back its default action instead: it would also
//! kill the process when a pipe to a child (a build's shell, git) closes,
//! and with it an embedded server. So the panic hook installed here ends the
//! process quietly when the panic is `println!`'s broken pipe, and code that
//! writes to stdout itself calls [`end_if_broken`]. Either way the command
//! exits 0: the reader chose to stop reading, as with ripgrep.

use std::io::ErrorKind;

/// Installs the panic hook; every other panic is reported as before.
pub(crate) fn install() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe_panic(message) {
            end();
        }
        report(info);
    }));
}

/// Whether `message` is the panic of `print!`/`println!`/`eprintln!` on a
/// closed pipe (std's text: `failed printing to stdout: Broken pipe (os
/// error 32)`).
fn is_broken_pipe_panic(message: &str) -> bool {
    let broken = std::io::Error::from_raw_os_error(EPIPE).to_string();
    message.starts_with("failed printing to std") && message.ends_with(&broken)
}

/// EPIPE on Linux, where gantry runs.
const EPIPE: i32 = 32;

/// Ends the process quietly when `error` is a broken pipe.
pub(crate) fn end_if_broken(error: &std::io::Error) {
    if error.kind() == ErrorKind::BrokenPipe {
        end();
    }
}

fn end() -> ! {
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_print_to_a_closed_pipe_is_a_broken_pipe_panic() {
        let broken = std::io::Error::from_raw_os_error(EPIPE);
        assert_eq!(broken.kind(), ErrorKind::BrokenPipe);
        assert!(is_broken_pipe_panic(&format!(
            "failed printing to stdout: {broken}"
        )));
        assert!(is_broken_pipe_panic(&format!(
            "failed printing to stderr: {broken}"
        )));
        assert!(!is_broken_pipe_panic("index out of bounds"));
        assert!(!is_broken_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
    }
}
