//! `strata layers`: a 10 MiB file added and deleted later, and a 1 MiB file
//! overwritten, are reported as wasted bytes exactly, charged to the layers that
//! shipped them; the text fits 80 columns; `--tree` shows one layer's changes.

use crate::language::{skip, Ctx};
use crate::support::{path_str, strata};

const WASTEFUL: &str = "\
FROM busybox
RUN head -c 10485760 /dev/zero > /big
RUN head -c 1048576 /dev/zero > /data
RUN rm /big && echo UNIQUE > /marker
RUN head -c 1048576 /dev/urandom > /data
";

/// The layer whose history line contains `step`, as `layers --format json` lists it.
fn layer_of<'a>(layers: &'a [serde_json::Value], step: &str) -> &'a serde_json::Value {
    layers.iter().find(|l| l["created_by"].as_str().is_some_and(|c| c.contains(step))).unwrap_or_else(|| panic!("no layer for {step:?}"))
}

#[test]
fn layers_reports_wasted_bytes_and_where_they_came_from() {
    if skip("layers_reports_wasted_bytes_and_where_they_came_from") {
        return;
    }
    let tag = format!("layers-wasteful-{}", std::process::id());
    let ctx = Ctx::new("layers-wasteful", &WASTEFUL.replace("UNIQUE", &tag));
    strata(["build", "-t", &tag, &path_str(&ctx.dir)]).ok();
    let figures = strata(["layers", "--format", "json", &tag]).ok().json();
    let layers = figures["layers"].as_array().expect("layers");
    let big = layer_of(layers, "/big");
    let first_data = layer_of(layers, "/dev/zero > /data");
    let removal = layer_of(layers, "rm /big");
    let second_data = layer_of(layers, "/dev/urandom > /data");
    assert_eq!(big["wasted_bytes"], 10 << 20, "{big}");
    assert_eq!(first_data["wasted_bytes"], 1 << 20, "{first_data}");
    assert_eq!(second_data["wasted_bytes"], 0);
    assert_eq!(big["added"]["bytes"], 10 << 20);
    assert_eq!(removal["removed"]["files"], 1);
    assert_eq!(removal["removed"]["bytes"], 10 << 20);
    assert_eq!(second_data["modified"]["files"], 1);
    assert_eq!(figures["wasted_bytes"], (10 << 20) + (1 << 20));
    let index = |l: &serde_json::Value| l["index"].clone();
    let paths = figures["wasted_paths"].as_array().unwrap();
    assert_eq!(paths[0], serde_json::json!({"path": "/big", "bytes": 10 << 20, "layer": index(big), "hidden_by": index(removal)}));
    assert_eq!(
        paths[1],
        serde_json::json!({"path": "/data", "bytes": 1 << 20, "layer": index(first_data), "hidden_by": index(second_data)})
    );
    let efficiency = figures["efficiency"].as_f64().unwrap();
    let total = figures["total_bytes"].as_f64().unwrap();
    assert!((efficiency - (total - 11.0 * 1048576.0) / total).abs() < 1e-9, "{efficiency}");

    let text = strata(["layers", &tag]).ok().stdout;
    assert!(text.lines().all(|l| l.chars().count() <= 80), "fits 80 columns:\n{text}");
    assert!(text.contains("11.5 MB wasted"), "{text}");
    assert!(text.lines().any(|l| l.contains("/big") && l.contains("10.5 MB")), "{text}");

    let tree = strata(["layers", "--tree", &index(removal).to_string(), &tag]).ok().stdout;
    assert!(tree.lines().any(|l| l.starts_with("D ") && l.ends_with("big")), "the whiteout is a D line:\n{tree}");
    assert!(tree.lines().any(|l| l.starts_with("A ") && l.ends_with("marker")), "{tree}");
    let err = strata(["layers", "--tree", "99", &tag]);
    assert!(!err.success() && err.stderr.contains("not 99"), "{}", err.describe());
}
