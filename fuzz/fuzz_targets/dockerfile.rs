//! Dockerfile text -> syntax tree -> instructions -> build plan, and `$VAR`
//! expansion of every line with both escape characters: nothing may panic or hang,
//! whatever the bytes.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use strata::dockerfile::{self, expand_word, expand_words};

/// Some variables set (one to the empty string, which `${V:-x}` and `${V-x}` tell
/// apart), everything else unset.
fn env(name: &str) -> Option<String> {
    match name {
        "EMPTY" => Some(String::new()),
        "A" => Some("a b  c".into()),
        "PATH" => Some("/usr/bin:/bin".into()),
        "Q" => Some("'\"$A\\".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(df) = dockerfile::parse(text, "Dockerfile") {
        let _ = df.dump();
        let args = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let _ = strata::plan::plan(&df, "Dockerfile", &args, None, &Default::default());
        let _ = strata::plan::plan(&df, "Dockerfile", &args, Some("x"), &Default::default());
    }
    for line in text.lines().take(64) {
        for escape in ['\\', '`'] {
            let _ = expand_word(line, &env, escape);
            let _ = expand_words(line, &env, escape);
        }
    }
});
