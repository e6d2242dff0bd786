//! pid 1's name as the container sees it: `strata-init`, with no host path.
//!
//! pid 1 is forked from the sandbox helper, `/path/to/strata __sandbox SPEC OUTCOME`,
//! so its /proc/1/cmdline would name strata's binary and the store, and
//! /proc/1/environ the caller's environment. The kernel's PR_SET_MM_ARG_START would
//! move the argument area but needs CAP_SYS_RESOURCE in the initial namespace, so
//! the bytes are overwritten in place instead, as setproctitle(3) does: /proc reads
//! them from our own stack.

use std::fs;

/// The name pid 1 shows in /proc/1/cmdline and /proc/1/comm (at most 15 bytes).
pub const INIT_NAME: &str = "strata-init";

/// Replaces this process's argument area with [`INIT_NAME`] and blanks its
/// environment area. Best effort: a /proc it cannot read leaves the title as it was.
/// Call only once nothing reads the process's arguments or environment any more.
pub fn neutralise() {
    let name = std::ffi::CString::new(INIT_NAME).expect("no NUL in the init name");
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
    let Some(areas) = fs::read_to_string("/proc/self/stat").ok().and_then(|s| areas(&s)) else {
        return;
    };
    let [arg_start, arg_end, env_start, env_end] = areas;
    let name = INIT_NAME.as_bytes();
    if arg_end <= arg_start || arg_end - arg_start < name.len() + 2 || env_end < env_start {
        return;
    }
    // SAFETY: the kernel reports these ranges as this process's argument and
    // environment strings, which exec placed in our own writable stack; only bytes
    // inside them are written, and this process is single-threaded here.
    unsafe {
        std::ptr::write_bytes(env_start as *mut u8, 0, env_end - env_start);
        let args = std::slice::from_raw_parts_mut(arg_start as *mut u8, arg_end - arg_start);
        args.fill(0);
        args[..name.len()].copy_from_slice(name);
        // A non-NUL last byte tells the kernel the title was rewritten: /proc then
        // shows the area up to its first NUL ("strata-init\0") instead of the whole
        // area with its trailing NULs.
        args[args.len() - 1] = b' ';
    }
}

/// The arg_start, arg_end, env_start and env_end fields (48 to 51) of a
/// /proc/PID/stat line. The second field, the command name, may hold spaces and
/// parentheses, so fields are counted after its last ')'.
fn areas(stat: &str) -> Option<[usize; 4]> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    Some([field(48)?, field(49)?, field(50)?, field(51)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let mut line = String::from("42 (a) b (c) S");
        for n in 4..=52 {
            line.push_str(&format!(" {n}"));
        }
        assert_eq!(areas(&line), Some([48, 49, 50, 51]));
        assert_eq!(areas("42 (short) S 1 2"), None);
    }

    #[test]
    fn our_own_stat_line_has_ordered_areas() {
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let [arg_start, arg_end, env_start, env_end] = areas(&stat).unwrap();
        assert!(arg_start < arg_end && arg_end <= env_start && env_start <= env_end, "{stat}");
    }
}
