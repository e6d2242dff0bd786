//! The `check` setting: `skip=RULE,RULE|all`, `error=BOOL` and `experimental=...`,
//! separated by `;`, as BuildKit's `# check=` directive and its
//! `BUILDKIT_DOCKERFILE_CHECK` build argument take it.

use std::collections::BTreeSet;

use super::Rule;

/// Which rules run, and whether a finding fails the build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    /// Rule names as written; a name no rule has skips nothing, as in BuildKit.
    pub skip: BTreeSet<String>,
    /// `error=true`: findings stop the build.
    pub error: bool,
}

impl CheckConfig {
    /// Parses a setting; the error names the option at fault, as BuildKit's does.
    pub fn parse(text: &str) -> Result<CheckConfig, String> {
        let mut config = CheckConfig::default();
        let text = text.trim();
        if text.is_empty() {
            return Ok(config);
        }
        // BuildKit splits into at most three options; a fourth stays in the third's value.
        for part in text.splitn(3, ';') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let value = value.trim();
            match key.trim() {
                "skip" if value == "all" => config.skip_all = true,
                "skip" => config.skip.extend(value.split(',').map(|r| r.trim().to_string())),
                // strata has no experimental rules: naming them changes nothing.
                "experimental" => {}
                "error" => {
                    config.error = parse_bool(value).ok_or_else(|| format!("failed to parse check option {part:?}: invalid syntax"))?
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(config)
    }

    /// Whether `rule` runs under this setting.
    pub fn runs(&self, rule: Rule) -> bool {
        !self.skip_all && !self.skip.contains(rule.name())
    }
}

/// Go's strconv.ParseBool.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}
