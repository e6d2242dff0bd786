//! Containers after `strata run`: exit codes, what the image's config applies, `ps`,
//! `rm`, `commit` (the interactive way of making an image) and `rmi` refusing an
//! image a container stands on.

use std::fs;

use crate::support::{hello_image, inspect_config, path_str, scratch, skip_without_sandbox, strata, strings, with_base};

#[test]
fn run_applies_the_config_and_propagates_the_exit_code() {
    if skip_without_sandbox("run_applies_the_config_and_propagates_the_exit_code") {
        return;
    }
    let hello = hello_image();
    let code = strata(["run", "--rm", "busybox", "sh", "-c", "exit 42"]);
    assert_eq!(code.code, Some(42), "{}", code.describe());

    // hello: USER app, WORKDIR /app, ENV GREETING; -e, -w and -u override them.
    let seen = strata(["run", "--rm", hello, "sh", "-c", "id -u; pwd; echo \"$GREETING\""]).ok();
    assert_eq!(seen.stdout, "1000\n/app\nHello from strata\n", "{}", seen.describe());
    let seen =
        strata(["run", "--rm", "-e", "GREETING=changed", "-w", "/tmp", "-u", "0", hello, "sh", "-c", "id -u; pwd; echo \"$GREETING\""])
            .ok();
    assert_eq!(seen.stdout, "0\n/tmp\nchanged\n", "{}", seen.describe());
    let seen = strata(["run", "--rm", "--entrypoint", "echo", hello, "from", "entrypoint"]).ok();
    assert_eq!(seen.stdout, "from entrypoint\n", "{}", seen.describe());
}

#[test]
fn rm_flag_leaves_no_container_behind() {
    if skip_without_sandbox("rm_flag_leaves_no_container_behind") {
        return;
    }
    let world = with_base();
    strata(["run", "--rm", "--name", "e2e-ephemeral", "busybox", "touch", "/x"]).ok();
    let listed = strata(["ps", "-a"]).ok().stdout;
    assert!(!listed.contains("e2e-ephemeral"), "{listed}");
    // Other tests make containers meanwhile: look for this one's record by name.
    for entry in fs::read_dir(world.root.join("containers")).expect("the containers dir").flatten() {
        if let Ok(record) = fs::read_to_string(entry.path().join("container.json")) {
            assert!(!record.contains("\"e2e-ephemeral\""), "--rm left {} behind: {record}", entry.path().display());
        }
    }
    assert!(!world.root.join("containers/names/e2e-ephemeral").exists(), "the name is released");
}

#[test]
fn commit_turns_a_container_into_an_image() {
    if skip_without_sandbox("commit_turns_a_container_into_an_image") {
        return;
    }
    with_base();
    let made =
        strata(["run", "--name", "e2e-commit-src", "busybox", "sh", "-c", "echo written-in-container > /made-here; rm /etc/group; exit 3"]);
    assert_eq!(made.code, Some(3), "{}", made.describe());
    let ps = strata(["ps", "-a"]).ok().stdout;
    let row = ps.lines().find(|l| l.ends_with("e2e-commit-src")).unwrap_or_else(|| panic!("ps -a lists the container: {ps}"));
    assert!(row.contains("Exited (3)") && row.contains("busybox"), "{row}");
    assert!(!strata(["ps"]).ok().stdout.contains("e2e-commit-src"), "ps without -a shows running containers only");

    // The name is taken while the container exists.
    let again = strata(["run", "--name", "e2e-commit-src", "busybox", "true"]);
    assert_eq!(again.code, Some(1), "{}", again.describe());
    assert!(again.stderr.contains("already in use"), "{}", again.describe());

    let id = strata([
        "commit",
        "-m",
        "made by hand",
        "--change",
        "CMD [\"cat\", \"/made-here\"]",
        "--change",
        "ENV MADE=by-commit",
        "--change",
        "LABEL via=commit",
        "e2e-commit-src",
        "e2e-committed:v1",
    ])
    .ok()
    .stdout;
    assert!(id.trim().starts_with("sha256:"), "commit prints the image id: {id}");

    let ran = strata(["run", "--rm", "e2e-committed:v1"]).ok();
    assert_eq!(ran.stdout, "written-in-container\n", "{}", ran.describe());
    let ran = strata(["run", "--rm", "e2e-committed:v1", "sh", "-c", "echo $MADE; test -e /etc/group || echo group-gone"]).ok();
    assert_eq!(ran.stdout, "by-commit\ngroup-gone\n", "{}", ran.describe());
    let config = crate::support::inspect_config("e2e-committed:v1");
    assert_eq!(config["Labels"]["via"], "commit", "{config:#}");
    let history = strata(["history", "--no-trunc", "e2e-committed:v1"]).ok().stdout;
    let top = history.lines().nth(1).unwrap_or_default();
    assert!(top.contains("made by hand") && top.contains("echo written-in-container"), "the commit is the newest history entry: {history}");

    // A change commit does not allow is refused.
    let bad = strata(["commit", "--change", "RUN echo no", "e2e-commit-src", "e2e-committed:bad"]);
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(bad.stderr.contains("cannot be changed by commit"), "{}", bad.describe());

    strata(["rm", "e2e-commit-src"]).ok();
    assert!(!strata(["ps", "-a"]).ok().stdout.contains("e2e-commit-src"));
}

#[test]
fn commit_changes_follow_the_build_rules() {
    if skip_without_sandbox("commit_changes_follow_the_build_rules") {
        return;
    }
    with_base();
    let src = "e2e-commit-rules";
    strata(["run", "--name", src, "busybox", "true"]).ok();

    // busybox has CMD ["sh"]: an ENTRYPOINT alone drops it, as in a build, instead of
    // running `echo from-entrypoint sh`. An absolute WORKDIR is kept as written, as
    // docker commit and a build keep it.
    let change = ["--change", "ENTRYPOINT [\"echo\", \"from-entrypoint\"]", "--change", "WORKDIR /tmp/./cache/.."];
    strata(["commit"].into_iter().chain(change).chain([src, "e2e-commit-rules:ep"])).ok();
    let config = inspect_config("e2e-commit-rules:ep");
    assert_eq!(strings(&config["Entrypoint"]), ["echo", "from-entrypoint"], "{config:#}");
    assert!(config.get("Cmd").is_none_or(|c| c.is_null()), "the base's CMD was for its entrypoint: {config:#}");
    assert_eq!(config["WorkingDir"], "/tmp/./cache/..", "{config:#}");
    let ran = strata(["run", "--rm", "e2e-commit-rules:ep"]).ok();
    assert_eq!(ran.stdout, "from-entrypoint\n", "{}", ran.describe());

    // A CMD given before the ENTRYPOINT in the same commit is kept.
    strata(["commit", "--change", "CMD [\"kept\"]", "--change", "ENTRYPOINT [\"echo\"]", src, "e2e-commit-rules:both"]).ok();
    let ran = strata(["run", "--rm", "e2e-commit-rules:both"]).ok();
    assert_eq!(ran.stdout, "kept\n", "{}", ran.describe());

    // STOPSIGNAL is checked, also when a variable set by an earlier change holds it.
    for change in [&["--change", "STOPSIGNAL NOPE"][..], &["--change", "ENV SIG=NOPE", "--change", "STOPSIGNAL $SIG"]] {
        let bad = strata(["commit"].iter().chain(change).chain(&[src, "e2e-commit-rules:bad"]));
        assert_eq!(bad.code, Some(1), "{change:?}: {}", bad.describe());
        assert!(bad.stderr.contains("invalid signal"), "{change:?}: {}", bad.describe());
        assert!(!strata(["inspect", "e2e-commit-rules:bad"]).success(), "{change:?}: a refused commit makes no image");
    }
    strata(["rm", src]).ok();
}

#[test]
fn rmi_refuses_the_last_name_of_an_image_in_use() {
    if skip_without_sandbox("rmi_refuses_the_last_name_of_an_image_in_use") {
        return;
    }
    with_base();
    let ctx = scratch("rmi-in-use");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo only > /only\n").unwrap();
    strata(["build", "-t", "e2e-only-name", &path_str(&ctx)]).ok();
    strata(["run", "--name", "e2e-user-of-only", "e2e-only-name", "true"]).ok();
    let refused = strata(["rmi", "e2e-only-name"]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(refused.stderr.contains("in use by container e2e-user-of-only"), "{}", refused.describe());
    assert!(strata(["images"]).ok().stdout.contains("e2e-only-name"), "nothing removed");
    strata(["rmi", "-f", "e2e-only-name"]).ok();
    // The container keeps its layers: commit still works after its image lost its name.
    let id = strata(["commit", "e2e-user-of-only"]).ok().stdout;
    assert!(id.trim().starts_with("sha256:"), "{id}");
    strata(["rm", "e2e-user-of-only"]).ok();
    let gone = strata(["rm", "e2e-user-of-only"]);
    assert_eq!(gone.code, Some(1), "{}", gone.describe());
    assert!(gone.stderr.contains("no such container"), "{}", gone.describe());
}

#[test]
fn volumes_bind_host_paths_inside_the_container() {
    if skip_without_sandbox("volumes_bind_host_paths_inside_the_container") {
        return;
    }
    with_base();
    let host = scratch("volumes");
    let data = host.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("in"), "from-host\n").unwrap();
    let single = host.join("single.txt");
    fs::write(&single, "one-file\n").unwrap();
    let vol = format!("{}:/data", path_str(&data));
    let file_ro = format!("{}:/etc/single.txt:ro", path_str(&single));
    let ran = strata([
        "run",
        "--rm",
        "-v",
        &vol,
        "-v",
        &file_ro,
        "busybox",
        "sh",
        "-c",
        "cat /data/in /etc/single.txt; echo from-container > /data/out; echo x > /etc/single.txt || echo refused",
    ])
    .ok();
    assert_eq!(ran.stdout, "from-host\none-file\nrefused\n", "{}", ran.describe());
    assert_eq!(fs::read_to_string(data.join("out")).unwrap(), "from-container\n", "a rw volume writes through to the host");
    assert_eq!(fs::read_to_string(&single).unwrap(), "one-file\n", "a ro volume is not written");

    // A symlink in the target path resolves inside the container, never on the host.
    let ctx = scratch("volumes-ctx");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN mkdir /real && ln -s /real /link\n").unwrap();
    strata(["build", "-t", "e2e-volume-link", &path_str(&ctx)]).ok();
    let vol = format!("{}:/link/mnt:ro", path_str(&data));
    let ran = strata(["run", "--rm", "-v", &vol, "e2e-volume-link", "cat", "/real/mnt/in"]).ok();
    assert_eq!(ran.stdout, "from-host\n", "{}", ran.describe());

    for bad in
        ["relative:/x", "/nonexistent-strata-e2e:/x", &format!("{}:relative", path_str(&data)), &format!("{}:/x:bogus", path_str(&data))]
    {
        let refused = strata(["run", "--rm", "-v", bad, "busybox", "true"]);
        assert_ne!(refused.code, Some(0), "-v {bad}: {}", refused.describe());
        assert!(refused.stderr.contains("invalid volume"), "-v {bad}: {}", refused.describe());
    }
}

#[test]
fn ctrl_c_reaches_the_containers_process() {
    if skip_without_sandbox("ctrl_c_reaches_the_containers_process") {
        return;
    }
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let world = with_base();
    let script = "trap 'echo got-int; exit 7' INT; echo ready; while true; do sleep 1; done";
    let mut child = Command::new(crate::support::strata_bin())
        .arg("--root")
        .arg(&world.root)
        .args(["run", "--rm", "busybox", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start strata run");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-int\n", "the trap ran");
    assert_eq!(status.code(), Some(7), "strata exits with the container's code");
}

#[test]
fn run_it_reads_a_line_typed_on_a_terminal() {
    if skip_without_sandbox("run_it_reads_a_line_typed_on_a_terminal") {
        return;
    }
    let world = with_base();
    // script(1) gives strata a real terminal; the test types into it after a pause.
    let cmd = format!(
        "'{}' --root '{}' run --rm -it busybox sh -c 'test -t 0 && echo on-a-tty; read line; echo got:\\$line'",
        path_str(&crate::support::strata_bin()),
        path_str(&world.root)
    );
    let typed = "sleep 2; printf 'typed by the test\\r'; sleep 2";
    let ran = crate::support::run("sh", ["-c", &format!("({typed}) | script -qefc \"{}\" /dev/null", cmd.replace('"', "\\\""))]).ok();
    let text = ran.stdout.replace('\r', "");
    assert!(text.contains("on-a-tty\n"), "{}", ran.describe());
    assert!(text.contains("got:typed by the test\n"), "{}", ran.describe());
}
