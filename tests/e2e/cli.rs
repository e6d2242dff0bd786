//! The other commands as a user meets them: `images`, `run`, `inspect`, `rmi`, and usage
//! errors.

use std::fs;

use crate::support::{fixture, fixtures, skip_without_sandbox, strata, with_base};

/// The rows of `strata images` as columns; the header row checked on the way.
fn image_rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"], "`strata images` header: {stdout}");
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
fn usage_errors_exit_2() {
    let bad_flag = strata(["build", "--no-such-flag", &fixture("hello")]);
    assert_eq!(bad_flag.code, Some(2), "{}", bad_flag.describe());
    let no_image = strata(["run"]);
    assert_eq!(no_image.code, Some(2), "{}", no_image.describe());
    let unknown = strata(["no-such-command"]);
    assert_eq!(unknown.code, Some(2), "{}", unknown.describe());
}
