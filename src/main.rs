//! The `strata` binary: parse arguments, run the command, print the error chain
//! once, map the outcome to an exit code (0 ok, 1 failure, 2 usage error).

use std::process::ExitCode;

fn main() -> ExitCode {
    // A test hook (fault-injection builds only): how the e2e tests tell such a build.
    strata::fault::abort_if_asked("start");
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The sandbox helper is an internal re-exec, not a user command; it must stay
    // single-threaded and skip argument parsing entirely.
    if args.get(1).map(|a| a == strata::sandbox::HELPER_COMMAND).unwrap_or(false) && args.len() == 4 {
        strata::sandbox::helper_main(args[2].as_ref(), args[3].as_ref());
    }
    // Like other command-line tools, die quietly when the reader of our output goes
    // away (`strata images | head`) instead of panicking on EPIPE.
    // SAFETY: installing SIG_DFL runs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    fixed_mmap_threshold();
    match strata::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Large buffers go straight to mmap and back to the kernel when freed.
///
/// glibc raises its mmap threshold to the size of each mmapped block it frees, up
/// to 32 MiB. After the first 1 MiB gzip chunk comes back, every later chunk and
/// member is carved from the thread arenas instead, and what the worker threads
/// free there is kept, not returned: a 1 GiB COPY peaked at 52-70 MiB of RSS, and
/// at 34-41 MiB with the threshold fixed. Setting it also fixes the trim
/// threshold, for the whole run, so memory follows what is live.
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024) };
}
