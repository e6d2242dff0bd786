//! The other commands as a user meets them: `images` (table and json), `run`,
//! `inspect`, `tag`, `history`, `rmi` (with and without -f), usage errors, and what
//! `build -q` leaves on stderr, and the completions and man pages made from the
//! flags.

use std::fs;

use crate::support::{fixture, fixtures, path_str, scratch, skip_without_sandbox, strata, strings, with_base};

/// The rows of `strata images` as columns; the header row checked on the way.
fn image_rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE", "SHARED"], "`strata images` header: {stdout}");
    lines.map(|line| line.split_whitespace().map(str::to_owned).collect()).collect()
}

#[test]
fn images_lists_built_images_and_run_prints_the_greeting() {
    if skip_without_sandbox("images_lists_built_images_and_run_prints_the_greeting") {
        return;
    }
    with_base();
    strata(["build", "-t", "hello", &fixture("hello")]).ok();

    let images = strata(["images"]).ok();
    let rows = image_rows(&images.stdout);
    let find = |repo: &str| {
        rows.iter()
            .find(|row| row.len() >= 5 && row[0] == repo && row[1] == "latest")
            .unwrap_or_else(|| panic!("no {repo} latest in:\n{}", images.stdout))
            .clone()
    };
    let hello = find("localhost/hello");
    find("localhost/busybox");
    let id = &hello[2];
    assert!(id.len() >= 12 && id.chars().all(|c| c.is_ascii_hexdigit()), "IMAGE ID column: {hello:?}");
    // SIZE is last, as podman prints it: "1.07 MB" (two words) or "1.07MB".
    let size = hello[hello.len().saturating_sub(2)..].join(" ");
    assert!(size.ends_with('B') && size.chars().any(|c| c.is_ascii_digit()), "SIZE column should hold a size: {hello:?}");

    let quiet = strata(["images", "-q"]).ok();
    assert!(quiet.stdout.lines().any(|l| l.trim().starts_with(id.as_str())), "`images -q` lists {id}: {}", quiet.stdout);

    let run = strata(["run", "--rm", "hello"]).ok();
    let greeting = fs::read_to_string(fixtures().join("hello/greeting.txt")).expect("fixture");
    assert!(run.stdout.starts_with(&greeting), "{}", run.describe());
    assert!(run.stdout.contains("Hello from strata! I am app (uid 1000), working in /app."), "{}", run.describe());
    assert!(run.stdout.contains("built by a RUN step on "), "{}", run.describe());
}

#[test]
fn run_prints_output_and_returns_the_exit_code() {
    if skip_without_sandbox("run_prints_output_and_returns_the_exit_code") {
        return;
    }
    with_base();
    let out = strata([
        "run",
        "--rm",
        "-e",
        "FOO=bar baz",
        "--user",
        "1000",
        "--workdir",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo \"$FOO|$(id -u)|$(pwd)\"; echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.code, Some(7), "the command's exit code: {}", out.describe());
    assert_eq!(out.stdout.trim(), "bar baz|1000|/tmp", "{}", out.describe());
    assert!(out.stderr.contains("to-stderr"), "{}", out.describe());

    let passwd = strata(["run", "--rm", "busybox", "cat", "/etc/passwd"]).ok();
    assert!(passwd.stdout.contains("app:x:1000:1000:"), "{}", passwd.describe());
    let whoami = strata(["run", "--rm", "busybox", "id", "-u"]).ok();
    assert_eq!(whoami.stdout.trim(), "0", "container root by default");
}

#[test]
fn rmi_removes_the_tag() {
    if skip_without_sandbox("rmi_removes_the_tag") {
        return;
    }
    with_base();
    let dockerfile = fixture("e2e/containerfile/Dockerfile");
    let context = fixture("e2e/containerfile");
    strata(["build", "-f", &dockerfile, "-t", "e2e-rmi:v1", &context]).ok();
    let before = strata(["images"]).ok();
    assert!(image_rows(&before.stdout).iter().any(|r| r[0] == "localhost/e2e-rmi" && r[1] == "v1"), "{}", before.stdout);
    strata(["rmi", "e2e-rmi:v1"]).ok();
    let after = strata(["images"]).ok();
    assert!(!image_rows(&after.stdout).iter().any(|r| r[0] == "localhost/e2e-rmi"), "{}", after.stdout);
    let gone = strata(["inspect", "e2e-rmi:v1"]);
    assert_eq!(gone.code, Some(1), "inspect of a removed image: {}", gone.describe());
}

#[test]
fn quiet_builds_silence_warnings_too() {
    if skip_without_sandbox("quiet_builds_silence_warnings_too") {
        return;
    }
    let ctx = scratch("quiet-warnings");
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nLABEL quiet=yes\n").unwrap();
    let loud = strata(["build", "--build-arg", "NEVER_USED=1", &path_str(&ctx)]).ok();
    let unused = "strata: warning: one or more build-args [\"NEVER_USED\"] were not consumed";
    assert!(loud.stderr.contains(unused), "without -q the warning shows: {}", loud.describe());
    for flag in ["-q", "--progress=quiet"] {
        let quiet = strata(["build", flag, "--build-arg", "NEVER_USED=1", &path_str(&ctx)]).ok();
        assert!(!quiet.stderr.contains("warning"), "{flag} silences warnings: {}", quiet.describe());
    }
}

#[test]
fn usage_errors_exit_2() {
    let bad_flag = strata(["build", "--no-such-flag", &fixture("hello")]);
    assert_eq!(bad_flag.code, Some(2), "{}", bad_flag.describe());
    let no_image = strata(["run"]);
    assert_eq!(no_image.code, Some(2), "{}", no_image.describe());
    let unknown = strata(["no-such-command"]);
    assert_eq!(unknown.code, Some(2), "{}", unknown.describe());
}

/// Builds a one-RUN, one-LABEL image unique to `name`; returns its image id.
fn small_image(name: &str) -> String {
    let ctx = scratch(name);
    let unique = format!("{name}-{}-{}", std::process::id(), path_str(&ctx).len());
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN echo {unique} > /u\nLABEL made.by={name}\n")).unwrap();
    strata(["build", "-q", "-t", name, &path_str(&ctx)]).ok().stdout.trim().to_string()
}

#[test]
fn tag_history_inspect_and_images_json_agree() {
    if skip_without_sandbox("tag_history_inspect_and_images_json_agree") {
        return;
    }
    with_base();
    let id = small_image("cli-meta");
    assert_eq!(id.len(), 64, "build prints the image id: {id}");
    strata(["tag", "cli-meta", "cli-meta:v2", "example.com/team/cli-meta:v3"]).ok();

    let json = strata(["images", "--format", "json"]).ok().json();
    let ours: Vec<&serde_json::Value> = json.as_array().unwrap().iter().filter(|r| r["Id"] == id.as_str()).collect();
    let names: Vec<String> = ours.iter().flat_map(|r| strings(&r["Names"])).collect();
    for want in ["localhost/cli-meta:latest", "localhost/cli-meta:v2", "example.com/team/cli-meta:v3"] {
        assert!(names.iter().any(|n| n == want), "images --format json names {want}: {json:#}");
    }
    let digest = ours[0]["Digest"].as_str().unwrap().to_string();
    assert!(ours.iter().all(|r| r["Digest"] == digest.as_str() && r["Size"].as_u64().unwrap() > 0), "{json:#}");
    assert!(ours[0]["Created"].as_str().is_some_and(|c| c.starts_with("20")), "{json:#}");

    let inspect = strata(["inspect", "cli-meta:v2", "example.com/team/cli-meta:v3"]).ok().json();
    let docs = inspect.as_array().expect("inspect prints a JSON array");
    assert_eq!(docs.len(), 2);
    let doc = &docs[0];
    assert_eq!(doc["Id"], id.as_str());
    assert_eq!(doc["Digest"], digest.as_str());
    assert_eq!(doc["Manifest"]["config"]["digest"], format!("sha256:{id}").as_str());
    assert_eq!(doc["Manifest"]["layers"].as_array().unwrap().len(), doc["rootfs"]["diff_ids"].as_array().unwrap().len());
    assert_eq!(doc["config"]["Labels"]["made.by"], "cli-meta");
    assert_eq!(docs[1]["Id"], id.as_str());
    let missing = strata(["inspect", "cli-meta", "no-such-image-here"]);
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(missing.stderr.contains("no-such-image-here"), "{}", missing.describe());

    let history = strata(["history", "--no-trunc", "cli-meta:v2"]).ok();
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(lines[0].starts_with("CREATED") && lines[0].contains("CREATED BY") && lines[0].contains("SIZE"), "{}", history.stdout);
    assert!(lines[1].contains("LABEL made.by=cli-meta") && lines[1].contains(" 0 B "), "newest first, no layer: {}", history.stdout);
    assert!(lines[2].contains("RUN echo cli-meta-") && !lines[2].contains(" 0 B "), "the RUN made a layer: {}", history.stdout);
    assert!(lines.len() > 3, "the base image's history follows: {}", history.stdout);

    // Names that cannot be tags.
    let hex = "b".repeat(64);
    for bad in [format!("cli-meta@sha256:{hex}"), hex.clone()] {
        let out = strata(["tag", "cli-meta", &bad]);
        assert_eq!(out.code, Some(1), "tag {bad}: {}", out.describe());
        assert!(out.stderr.contains("digest") || out.stderr.contains("image id"), "{}", out.describe());
        let built = strata(["build", "-t", &bad, &fixture("hello")]);
        assert_eq!(built.code, Some(1), "build -t {bad}: {}", built.describe());
    }
}

#[test]
fn rmi_of_an_id_with_several_names_needs_force() {
    if skip_without_sandbox("rmi_of_an_id_with_several_names_needs_force") {
        return;
    }
    with_base();
    let id = small_image("cli-rmi-a");
    strata(["tag", "cli-rmi-a", "cli-rmi-b"]).ok();
    let refused = strata(["rmi", &id[..12]]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(refused.stderr.contains("referenced in multiple repositories"), "{}", refused.describe());
    strata(["inspect", "cli-rmi-a", "cli-rmi-b"]).ok();
    let forced = strata(["rmi", "-f", &id[..12]]).ok();
    assert!(
        forced.stdout.contains("Untagged: localhost/cli-rmi-a:latest") && forced.stdout.contains("Untagged: localhost/cli-rmi-b:latest"),
        "{}",
        forced.describe()
    );
    for name in ["cli-rmi-a", "cli-rmi-b"] {
        assert_eq!(strata(["inspect", name]).code, Some(1), "{name} is gone");
    }
    // One name: an id needs no -f.
    let id = small_image("cli-rmi-c");
    strata(["rmi", &id]).ok();
    assert_eq!(strata(["inspect", "cli-rmi-c"]).code, Some(1));
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    let bash = strata(["completion", "bash"]).ok().stdout;
    assert!(bash.contains("complete -F") && bash.contains("--check") && bash.contains("--build-arg"), "bash: {bash:.300}");
    let zsh = strata(["completion", "zsh"]).ok().stdout;
    assert!(zsh.starts_with("#compdef strata") && zsh.contains("--no-cache"), "zsh: {zsh:.300}");
    let fish = strata(["completion", "fish"]).ok().stdout;
    assert!(fish.contains("complete -c strata") && fish.contains("-l check"), "fish: {fish:.300}");
    assert_eq!(strata(["completion", "tcsh"]).code, Some(2), "an unknown shell is a usage error");

    let page = strata(["man"]).ok().stdout;
    assert!(page.contains(".TH strata 1"), "strata.1: {page:.300}");
    let dir = scratch("man-pages");
    strata(["man", "--dir", &path_str(&dir)]).ok();
    let build = fs::read_to_string(dir.join("strata-build.1")).expect("strata-build.1 is written");
    assert!(build.contains(".TH strata-build 1") && build.contains("check"), "strata-build.1: {build:.300}");
    assert!(dir.join("strata.1").is_file() && dir.join("strata-run.1").is_file());
}
