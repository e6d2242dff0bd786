//! `--flag` validation for instructions, and Go-style duration values.
//!
//! The tree keeps flags as written (`--from=build`); each instruction declares
//! which flags it takes and of what kind. Anything undeclared is an error, as
//! in BuildKit, so a typo such as `--form=build` fails at parse time instead of
//! being silently ignored.

use std::collections::HashMap;
use std::time::Duration;

use super::ParseErrorKind;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    Str,
    /// `--mount=x`, repeatable.
    Multi,
}

/// Flags of one instruction after validation.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: HashMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Validates `raw` (`--name[=value]` strings) against `specs`.
    pub fn parse(instruction: &str, raw: &[String], specs: &[(&'static str, Kind)]) -> Result<Flags, ParseErrorKind> {
        let mut flags = Flags::default();
        for arg in raw {
            let body = arg.strip_prefix("--").unwrap_or(arg);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = specs.iter().find(|(n, _)| *n == name) else {
                return Err(ParseErrorKind::UnknownFlag { instruction: instruction.to_string(), flag: name.to_string() });
            };
            let entry = flags.values.entry(key).or_default();
            if kind != Kind::Multi && !entry.is_empty() {
                return Err(ParseErrorKind::DuplicateFlag(name.to_string()));
            }
            let value = match (kind, value) {
                (Kind::Bool, None) => "true".to_string(),
                (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => {
                        return Err(ParseErrorKind::BadFlagValue {
                            flag: name.to_string(),
                            value: v.to_string(),
                            reason: "expecting boolean value".to_string(),
                        })
                    }
                },
                (_, None) => return Err(ParseErrorKind::FlagNeedsValue(name.to_string())),
                (_, Some(v)) => v.to_string(),
            };
            entry.push(value);
        }
        Ok(flags)
    }

    pub fn bool(&self, name: &str) -> bool {
        self.values.get(name).and_then(|v| v.first()).is_some_and(|v| v == "true")
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.first()).cloned()
    }

    pub fn multi(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

/// Parses a Go `time.ParseDuration` string (`1m30s`, `0.5s`, `100ms`, `0`).
/// Negative durations are rejected: no Dockerfile option accepts them.
pub(crate) fn parse_go_duration(s: &str) -> Option<Duration> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Some(Duration::ZERO);
    }
    if body.is_empty() {
        return None;
    }
    let mut rest = body;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * scale;
        rest = next;
    }
    Some(Duration::from_nanos((total * 1e9).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[(&str, Kind)] = &[("from", Kind::Str), ("link", Kind::Bool), ("exclude", Kind::Multi)];

    fn raw(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kinds() {
        let f = Flags::parse("COPY", &raw(&["--from=a", "--link", "--exclude=x", "--exclude=y"]), SPECS).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.multi("exclude"), ["x", "y"]);
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(Flags::parse("COPY", &raw(&["--form=a"]), SPECS).is_err());
        assert!(Flags::parse("COPY", &raw(&["--from"]), SPECS).is_err());
        assert!(Flags::parse("COPY", &raw(&["--from=a", "--from=b"]), SPECS).is_err());
        assert!(Flags::parse("COPY", &raw(&["--link=maybe"]), SPECS).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("-1s"), None);
    }
}
