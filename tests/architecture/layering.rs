//! The "Modules and who may use whom" table of ARCHITECTURE.md, read as data.

use std::collections::BTreeSet;

pub const HEADING: &str = "## Modules and who may use whom";

/// One row: a top-level module and the modules it may use.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub module: String,
    pub may_use: BTreeSet<String>,
}

/// Parses the table under [`HEADING`]; the error says what is missing or malformed.
pub fn parse(markdown: &str) -> Result<Vec<Row>, String> {
    let mut lines = markdown.lines().skip_while(|l| l.trim() != HEADING);
    if lines.next().is_none() {
        return Err(format!("ARCHITECTURE.md has no `{HEADING}` heading"));
    }
    let mut lines = lines.skip_while(|l| !l.trim_start().starts_with('|'));
    let header = lines.next().map(cells).unwrap_or_default();
    if header != ["module", "owns", "may use"] {
        return Err(format!("the table under `{HEADING}` must have the header | module | owns | may use |, not {header:?}"));
    }
    let mut rows: Vec<Row> = Vec::new();
    for line in lines.take_while(|l| l.trim_start().starts_with('|')) {
        let cells = cells(line);
        if cells.iter().all(|c| c.chars().all(|ch| matches!(ch, '-' | ':' | ' '))) {
            continue; // the |---|---| separator
        }
        let [first, _, may_use] = cells.as_slice() else {
            return Err(format!("a row of the table does not have 3 cells: {line}"));
        };
        let Some(module) = backticked(first).into_iter().next() else {
            return Err(format!("a row's first cell names no module in backticks: {line}"));
        };
        let above: Vec<String> = rows.iter().map(|r| r.module.clone()).collect();
        rows.push(Row { module: module_name(&module), may_use: allowed(may_use, &above) });
    }
    // "everything" can only be expanded once every row is known.
    let all: BTreeSet<String> = rows.iter().map(|r| r.module.clone()).collect();
    for row in &mut rows {
        if row.may_use.remove(EVERYTHING) {
            row.may_use.extend(all.iter().cloned());
        }
    }
    Ok(rows)
}

/// Stands for every module until all rows are read.
const EVERYTHING: &str = "*";

/// The "may use" cell -> module names. Text in parentheses is commentary (the
/// `owner.rs` row says which modules use it there), so its backticks do not count.
fn allowed(cell: &str, above: &[String]) -> BTreeSet<String> {
    let outside = without_parentheses(cell);
    let mut out: BTreeSet<String> = backticked(&outside).iter().map(|m| module_name(m)).collect();
    let lower = outside.to_lowercase();
    if lower.contains("everything above") {
        out.extend(above.iter().cloned());
    } else if lower.contains("everything") || lower.contains("every module") {
        out.insert(EVERYTHING.into());
    }
    out
}

/// `dockerfile/` -> `dockerfile`, `report.rs` -> `report`, `registry::progress` -> `registry`.
fn module_name(text: &str) -> String {
    let head = text.split("::").next().unwrap_or(text).trim();
    head.trim_end_matches('/').trim_end_matches(".rs").to_string()
}

fn without_parentheses(text: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The texts between pairs of backticks.
fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// A table row's cells, trimmed. A `|` inside backticks (`seccomp=unconfined|FILE`)
/// or escaped as `\|` is part of its cell.
fn cells(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => cell.extend(chars.next()),
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    // The leading and trailing pipes leave an empty cell at each end.
    if out.first().is_some_and(String::is_empty) {
        out.remove(0);
    }
    if out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_the_forms_the_table_uses() {
        let md = "# x\n\n## Modules and who may use whom\n\n| module | owns | may use |\n|---|---|---|\n\
                  | `a/` | parsing (`lines`) | nothing in strata |\n\
                  | `b/` | `x=on|off` and `y` | `a` |\n\
                  | `c/` | stuff | everything above |\n\
                  | `r.rs` | bars | `b::progress` (the trait it draws) |\n\
                  | `o.rs` | owners | - (a leaf used by `a`, `c`) |\n\
                  | `t/` | top | every module |\n\nafter\n";
        let rows = parse(md).unwrap();
        let got: Vec<(&str, BTreeSet<String>)> = rows.iter().map(|r| (r.module.as_str(), r.may_use.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("a", set(&[])),
                ("b", set(&["a"])),
                ("c", set(&["a", "b"])),
                ("r", set(&["b"])),
                ("o", set(&[])),
                ("t", set(&["a", "b", "c", "r", "o", "t"])),
            ]
        );
    }

    #[test]
    fn a_missing_heading_or_header_is_an_error() {
        assert!(parse("# nothing here\n").is_err());
        assert!(parse("## Modules and who may use whom\n\n| module | may use |\n|---|---|\n").is_err());
    }
}
