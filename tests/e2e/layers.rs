//! `strata layers`: a 10 MiB file added and deleted later, and a 1 MiB file
//! overwritten, are reported as wasted bytes exactly, charged to the layers that
//! shipped them; the text fits 80 columns; `--tree` shows one layer's changes.
//! `--squash-all` and `--squash` merge those layers with the waste resolved away.

use crate::language::{skip, Ctx};
use crate::support::{path_str, strata};

/// UNIQUE (in ENV, which makes no layer) keeps each test's layers its own in the
/// shared store, so what one test shares is only the base.
const WASTEFUL: &str = "\
FROM busybox
ENV TEST=UNIQUE
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

/// The steps a build printed and how many were CACHED, and its image id.
fn build_counting_hits(args: &[&str]) -> (usize, usize, String) {
    let run = strata(args).ok();
    let steps = run.stderr.lines().filter(|l| l.contains("STEP ") && !l.contains(": FROM ")).count();
    let cached = run.stderr.lines().filter(|l| l.trim_end().ends_with("--> CACHED")).count();
    (steps, cached, run.stdout.trim().to_string())
}

#[test]
fn squash_all_ships_one_layer_without_the_deleted_bytes_and_stays_cached() {
    if skip("squash_all_ships_one_layer_without_the_deleted_bytes_and_stays_cached") {
        return;
    }
    let tag = format!("squash-{}", std::process::id());
    let ctx = Ctx::new("squash", &WASTEFUL.replace("UNIQUE", &tag));
    let dir = path_str(&ctx.dir);
    strata(["build", "-t", &tag, &dir]).ok();
    let all = format!("{tag}-all");
    let (_, _, first_id) = build_counting_hits(&["build", "--squash-all", "-t", &all, &dir]);
    let figures = strata(["layers", "--format", "json", &all]).ok().json();
    let layers = figures["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: {figures}");
    assert_eq!(figures["wasted_bytes"], 0, "no deleted or overwritten byte ships: {figures}");
    assert!(layers[0]["created_by"].as_str().unwrap().contains("--squash-all"), "{figures}");
    assert_eq!(strata(["diff", &tag, &all]).ok().stdout, "", "the flattened trees are the same");
    let unsquashed = strata(["layers", "--format", "json", &tag]).ok().json();
    let seen = unsquashed["total_bytes"].as_u64().unwrap() - unsquashed["wasted_bytes"].as_u64().unwrap();
    assert_eq!(figures["total_bytes"], seen, "it ships exactly what the unsquashed image shows");
    let (steps, cached, id) = build_counting_hits(&["build", "--squash-all", "-t", &all, &dir]);
    assert_eq!((steps, cached), (5, 5), "every step is CACHED");
    assert_eq!(id, first_id, "a rebuild gives the same image");

    // --squash keeps the base image's layers and merges the four this Dockerfile added.
    let new = format!("{tag}-new");
    strata(["build", "--squash", "-t", &new, &dir]).ok();
    let base_layers = strata(["layers", "--format", "json", "busybox"]).ok().json()["layers"].as_array().unwrap().len();
    let squashed = strata(["layers", "--format", "json", &new]).ok().json();
    assert_eq!(squashed["layers"].as_array().unwrap().len(), base_layers + 1, "{squashed}");
    assert_eq!(squashed["wasted_bytes"], 0);
    assert_eq!(strata(["diff", &tag, &new]).ok().stdout, "");
}

#[test]
fn sizes_are_content_sizes_and_shared_bytes_are_told_apart() {
    if skip("sizes_are_content_sizes_and_shared_bytes_are_told_apart") {
        return;
    }
    let tag = format!("sizes-{}", std::process::id());
    // Its layer's bytes are its own: a layer another test made in the same second
    // with the same files would be shared for real.
    let ctx = Ctx::new("sizes", &format!("FROM busybox\nRUN head -c 10485760 /dev/zero > /big && echo {tag} > /id\n"));
    strata(["build", "-t", &tag, &path_str(&ctx.dir)]).ok();
    // 10 MiB of zeros compress to a few kB: the SIZE shown is what the layer holds.
    let history = strata(["history", "--no-trunc", &tag]).ok().stdout;
    let big = history.lines().find(|l| l.contains("> /big")).unwrap_or_else(|| panic!("{history}"));
    assert!(big.contains("10.5 MB"), "{big}");

    let json = strata(["images", "--format", "json"]).ok().json();
    let row =
        |name: &str| json.as_array().unwrap().iter().find(|r| r["Names"][0].as_str().is_some_and(|n| n.contains(name))).cloned().unwrap();
    let (ours, base) = (row(&tag), row("busybox:latest"));
    let figures = strata(["layers", "--format", "json", &tag]).ok().json();
    assert_eq!(ours["Size"], figures["total_bytes"], "images and layers agree: {ours}");
    assert_eq!(ours["SharedSize"], base["Size"], "what it shares is the base: {ours} {base}");
    assert_eq!(ours["UniqueSize"].as_u64().unwrap(), ours["Size"].as_u64().unwrap() - base["Size"].as_u64().unwrap());

    let name = format!("sizes-c-{}", std::process::id());
    strata(["run", "--name", &name, &tag, "sh", "-c", "head -c 2000000 /dev/zero > /grown"]).ok();
    let ps = strata(["ps", "-a", "-s"]).ok().stdout;
    assert!(ps.lines().next().unwrap().ends_with("SIZE"), "{ps}");
    let line = ps.lines().find(|l| l.contains(&name)).unwrap_or_else(|| panic!("{ps}"));
    let virtual_size = human(ours["Size"].as_u64().unwrap() + 2_000_000);
    assert!(line.contains(&format!("2.00 MB (virtual {virtual_size})")), "{line}");
    strata(["rm", &name]).ok();
}

/// strata's sizes, as `human_size` prints them (kB, MB: powers of 1000).
fn human(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb < 10.0 {
        format!("{mb:.2} MB")
    } else if mb < 100.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{mb:.0} MB")
    }
}
