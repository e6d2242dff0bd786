//! The last lines a build step's command printed, kept beside the live relay so the
//! error of a failed step can end with them (`build --progress=plain`): in a long CI
//! log the failure is then at the bottom, with its cause.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Longest line kept, in bytes; a longer one is cut (a minified file dumped by
/// mistake must not fill the error).
const LINE_MAX: usize = 4096;

/// The last `keep` lines, as they were relayed (with the step's prefix).
#[derive(Debug)]
pub struct OutputTail {
    keep: usize,
    lines: Mutex<VecDeque<String>>,
}

impl OutputTail {
    pub fn new(keep: usize) -> OutputTail {
        OutputTail { keep, lines: Mutex::new(VecDeque::with_capacity(keep)) }
    }

    /// Keeps one relayed line (its newline dropped), forgetting the oldest beyond `keep`.
    pub fn push(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let mut text = String::from_utf8_lossy(&line[..line.len().min(LINE_MAX)]).into_owned();
        if line.len() > LINE_MAX {
            text.push_str(" [...]");
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == self.keep {
            lines.pop_front();
        }
        if self.keep > 0 {
            lines.push_back(text);
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_cut_to_size() {
        let tail = OutputTail::new(2);
        for line in [&b"one\n"[..], b"two\n", b"three"] {
            tail.push(line);
        }
        assert_eq!(tail.lines(), ["two", "three"]);
        let long = vec![b'x'; LINE_MAX + 10];
        tail.push(&long);
        let last = tail.lines().pop().unwrap();
        assert!(last.len() == LINE_MAX + " [...]".len() && last.ends_with(" [...]"), "{}", last.len());
        let none = OutputTail::new(0);
        none.push(b"x\n");
        assert!(none.lines().is_empty());
    }
}
