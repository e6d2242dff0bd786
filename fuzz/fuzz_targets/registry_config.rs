//! The registry configuration a user or another tool writes: registries.conf (TOML)
//! with the short names it resolves, auth.json / docker config.json, and image
//! references. The first byte picks which; the rest is the file. Nothing may panic,
//! no helper is ever run, and what a file accepts must give names that parse back.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strata::oci::ImageName;
use strata::registry::{is_short_name, stored_credentials_in, ShortNames, StoredCredentials};

const SHORT: [&str; 5] =
    ["alpine", "library/alpine:3", "user/app@sha256:0000000000000000000000000000000000000000000000000000000000000000", "a", "x/y/z:t"];

fn registries_conf(text: &str) {
    let Ok(names) = ShortNames::from_text(Path::new("registries.conf"), text) else { return };
    for short in SHORT {
        if let Ok(candidates) = names.candidates(short) {
            for c in candidates {
                let again = ImageName::parse(&c.to_string()).expect("a candidate prints as a name that parses");
                assert_eq!(again, c);
            }
        }
    }
}

fn auth_json(bytes: &[u8]) {
    for registry in ["docker.io", "localhost:5000", "quay.io", ""] {
        match stored_credentials_in(Path::new("auth.json"), bytes, registry) {
            Ok(Some(StoredCredentials::Credentials(c))) => {
                let _ = c.basic_header();
            }
            Ok(Some(StoredCredentials::Helper(h))) => {
                let _ = h.len();
            }
            _ => {}
        }
    }
}

fn reference(text: &str) {
    let _ = is_short_name(text);
    let _ = ImageName::parse_tag(text);
    if let Ok(name) = ImageName::parse(text) {
        let printed = name.to_string();
        let again = ImageName::parse(&printed).expect("a parsed name prints as one that parses");
        assert_eq!(again, name, "{text:?} printed as {printed:?}");
        let _ = (name.domain(), name.path(), name.repository(), name.tag(), name.digest());
        let _ = name.with_tag("latest");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                registries_conf(text);
            }
        }
        1 => auth_json(rest),
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                reference(text);
            }
        }
    }
});
