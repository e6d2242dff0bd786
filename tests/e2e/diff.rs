//! `strata diff`: a container's changes after `rm`, `touch` and an edit, as the
//! `D`, `A` and `C` lines `docker diff` prints (a directory that gained or lost an
//! entry included); and two images compared, the edited file listed.

use crate::language::{skip, Ctx};
use crate::support::{path_str, strata};

const WITH_DATA: &str = "FROM busybox\nRUN mkdir /data && echo a > /data/gone && echo b > /data/edit && echo UNIQUE > /data/keep\n";

#[test]
fn diff_lists_a_containers_changes_as_docker_diff_does() {
    if skip("diff_lists_a_containers_changes_as_docker_diff_does") {
        return;
    }
    let tag = format!("diff-base-{}", std::process::id());
    let ctx = Ctx::new("diff-base", &WITH_DATA.replace("UNIQUE", &tag));
    strata(["build", "-t", &tag, &path_str(&ctx.dir)]).ok();
    let name = format!("diff-c-{}", std::process::id());
    strata(["run", "--name", &name, &tag, "sh", "-c", "rm /data/gone && touch /fresh && echo more >> /data/edit"]).ok();
    let out = strata(["diff", &name]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["C /data", "C /data/edit", "D /data/gone", "A /fresh"], "{out}");
    strata(["rm", &name]).ok();

    let unknown = strata(["diff", "no-such-container"]);
    assert!(!unknown.success() && unknown.stderr.contains("no-such-container"), "{}", unknown.describe());
}

#[test]
fn diff_of_two_images_lists_the_edited_file() {
    if skip("diff_of_two_images_lists_the_edited_file") {
        return;
    }
    let tag = format!("diff-from-{}", std::process::id());
    let ctx = Ctx::new("diff-from", &WITH_DATA.replace("UNIQUE", &tag));
    strata(["build", "-t", &tag, &path_str(&ctx.dir)]).ok();
    let next = format!("{tag}-next");
    let edited = Ctx::new("diff-to", &format!("FROM {tag}\nRUN echo more >> /data/edit && rm /data/gone && echo new > /added\n"));
    strata(["build", "-t", &next, &path_str(&edited.dir)]).ok();
    let out = strata(["diff", &tag, &next]).ok().stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"C /data/edit"), "{out}");
    assert!(lines.contains(&"D /data/gone") && lines.contains(&"A /added"), "{out}");
    assert!(!lines.iter().any(|l| l.ends_with("/data/keep") || l.starts_with("C /bin")), "untouched paths are not listed: {out}");
    assert_eq!(strata(["diff", &tag, &tag]).ok().stdout, "", "an image against itself");
}
