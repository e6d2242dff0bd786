//! `--chmod` of COPY and ADD: an octal mode or chmod(1)'s symbolic form, applied to
//! every copied file and directory.

use anyhow::{bail, Result};

/// Most actions one symbolic `--chmod` may hold (`u=rwX,go=rX` has two).
const MAX_ACTIONS: usize = 16;

/// A `--chmod` value: an octal mode, or chmod(1)'s symbolic form (`u=rwX,go=rX`,
/// `+x`, `g=u`), applied to every copied file and directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic { actions: [Action; MAX_ACTIONS], len: usize },
}

/// One `who op perms` step of a symbolic mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// The bits `u`, `g`, `o` select (`u` = 0o4700 with setuid, ...); 0 = no
    /// `who` given, which means all of them (no umask applies in a build).
    who: u32,
    op: u8,
    /// PERM_* flags.
    perms: u16,
}

const PERM_R: u16 = 1;
const PERM_W: u16 = 2;
const PERM_X: u16 = 4;
/// `X`: execute only for directories and files that already have an execute bit.
const PERM_COND_X: u16 = 8;
const PERM_S: u16 = 16;
const PERM_T: u16 = 32;
const PERM_U: u16 = 64;
const PERM_G: u16 = 128;
const PERM_O: u16 = 256;

impl Chmod {
    /// Parses an octal (`755`, `0644`) or symbolic (`u+x,go-w`, `a=rX`) mode.
    pub fn parse(text: &str) -> Result<Chmod> {
        let bad = |why: &str| anyhow::anyhow!("--chmod={text}: {why}");
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
            let mode = u32::from_str_radix(text, 8).map_err(|_| bad("not an octal mode"))?;
            if mode > 0o7777 {
                bail!(bad("an octal mode is at most 7777"));
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut actions = [Action::default(); MAX_ACTIONS];
        let mut len = 0;
        for clause in text.split(',') {
            let mut chars = clause.chars().peekable();
            let mut who = 0;
            while let Some(c) = chars.peek().copied() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => break,
                };
                chars.next();
            }
            let mut any = false;
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    bail!(bad(&format!("unexpected {op:?}: expected [ugoa...][+-=][rwxXstugo...][,...] or an octal mode")));
                }
                let mut perms = 0;
                while let Some(c) = chars.peek().copied() {
                    perms |= match c {
                        'r' => PERM_R,
                        'w' => PERM_W,
                        'x' => PERM_X,
                        'X' => PERM_COND_X,
                        's' => PERM_S,
                        't' => PERM_T,
                        'u' => PERM_U,
                        'g' => PERM_G,
                        'o' => PERM_O,
                        _ => break,
                    };
                    chars.next();
                }
                if len == MAX_ACTIONS {
                    bail!(bad("too many clauses"));
                }
                actions[len] = Action { who, op: op as u8, perms };
                len += 1;
                any = true;
            }
            if !any {
                bail!(bad("expected [ugoa...][+-=][rwxXstugo...][,...] or an octal mode"));
            }
        }
        Ok(Chmod::Symbolic { actions, len })
    }

    /// The mode a file of mode `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let (actions, len) = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic { actions, len } => (actions, *len),
        };
        let mut m = mode & 0o7777;
        for a in &actions[..len] {
            let who = if a.who == 0 { 0o7777 } else { a.who };
            let has = |flag: u16| a.perms & flag != 0;
            let mut bits = 0;
            if has(PERM_R) {
                bits |= 0o444;
            }
            if has(PERM_W) {
                bits |= 0o222;
            }
            if has(PERM_X) || (has(PERM_COND_X) && (is_dir || m & 0o111 != 0)) {
                bits |= 0o111;
            }
            if has(PERM_S) {
                bits |= 0o6000;
            }
            if has(PERM_T) {
                bits |= 0o1000;
            }
            // `u`, `g`, `o` copy another class's current rwx bits.
            for (flag, shift) in [(PERM_U, 6), (PERM_G, 3), (PERM_O, 0)] {
                if has(flag) {
                    bits |= ((m >> shift) & 0o7) * 0o111;
                }
            }
            let bits = bits & who;
            match a.op {
                b'+' => m |= bits,
                b'-' => m &= !bits,
                _ => m = (m & !who) | bits,
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(spec: &str, from: u32, is_dir: bool) -> u32 {
        Chmod::parse(spec).unwrap_or_else(|e| panic!("{e}")).apply(from, is_dir)
    }

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(mode("755", 0o600, false), 0o755);
        assert_eq!(mode("0640", 0o777, true), 0o640);
        // The reference's example: directories 755, files 644, executables kept 755.
        assert_eq!(mode("u=rwX,go=rX", 0o700, true), 0o755);
        assert_eq!(mode("u=rwX,go=rX", 0o666, false), 0o644);
        assert_eq!(mode("u=rwX,go=rX", 0o700, false), 0o755);
        assert_eq!(mode("+x", 0o644, false), 0o755);
        assert_eq!(mode("a+x", 0o600, false), 0o711);
        assert_eq!(mode("g=u", 0o640, false), 0o660);
        assert_eq!(mode("g=u", 0o751, false), 0o771);
        assert_eq!(mode("o=", 0o777, false), 0o770);
        assert_eq!(mode("go-w", 0o777, false), 0o755);
        assert_eq!(mode("u+s,g+s", 0o755, false), 0o6755);
        assert_eq!(mode("+t", 0o777, true), 0o1777);
        assert_eq!(mode("u+r-w", 0o200, false), 0o400);
        assert_eq!(mode("a=rwx,o-rwx", 0o000, false), 0o770);
        assert_eq!(mode("=r", 0o777, false), 0o444);
    }

    #[test]
    fn chmod_errors() {
        for bad in ["", "u", "x", "u+q", "8", "77777", "u+x,", "ug"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
