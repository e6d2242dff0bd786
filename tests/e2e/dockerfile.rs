//! Dockerfile features of the walking skeleton, checked through the built images:
//! ARG before FROM and --build-arg, COPY of directories and globs, JSON-form RUN,
//! metadata instructions in the config, and Containerfile before Dockerfile.

use crate::support::{fixture, hello_image, inspect_config, skip_without_sandbox, strata, strings, with_base};

#[test]
fn arg_before_from_and_build_arg_overrides() {
    if skip_without_sandbox("arg_before_from_and_build_arg_overrides") {
        return;
    }
    with_base();
    let context = fixture("e2e/args");

    strata(["build", "-t", "e2e-args", &context]).ok();
    let out = strata(["run", "--rm", "e2e-args"]).ok();
    assert_eq!(out.stdout.trim(), "default-message", "{}", out.describe());

    strata(["build", "--build-arg", "MESSAGE=overridden value", "-t", "e2e-args-override", &context]).ok();
    let out = strata(["run", "--rm", "e2e-args-override"]).ok();
    assert_eq!(out.stdout.trim(), "overridden value", "{}", out.describe());
    let env = strings(&inspect_config("e2e-args-override")["Env"]);
    assert!(env.iter().any(|e| e == "FROM_ARG=overridden value"), "Env {env:?}");
    assert!(!env.iter().any(|e| e.starts_with("MESSAGE=")), "an ARG is not an ENV: {env:?}");

    // The ARG declared before FROM picks the base image.
    let hello = hello_image();
    strata(["build", "--build-arg", &format!("BASE={hello}"), "-t", "e2e-args-hello", &context]).ok();
    let out =
        strata(["run", "--rm", "e2e-args-hello", "sh", "-c", "id -un; cat /tmp/message; test -f /app/greeting.txt && echo has-greeting"])
            .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["app", "default-message", "has-greeting"], "FROM ${{BASE}} with BASE={hello}: {}", out.describe());
}

#[test]
fn copy_directories_globs_and_json_forms() {
    if skip_without_sandbox("copy_directories_globs_and_json_forms") {
        return;
    }
    with_base();
    strata(["build", "-t", "e2e-copy", &fixture("e2e/copy")]).ok();
    let out = strata(["run", "--rm", "e2e-copy", "find", "/srv"]).ok();
    let mut found: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    found.sort_unstable();
    let mut expected = vec![
        "/srv",
        "/srv/json",
        "/srv/json-exec",
        "/srv/json-shell",
        "/srv/json/data.json",
        "/srv/literal",
        "/srv/tree",
        "/srv/tree/a.txt",
        "/srv/tree/sub",
        "/srv/tree/sub/b.txt",
        "/srv/txt",
        "/srv/txt/one.txt",
        "/srv/txt/two.txt",
    ];
    expected.sort_unstable();
    assert_eq!(found, expected, "{}", out.describe());

    let cat = |path: &str| strata(["run", "--rm", "e2e-copy", "cat", path]).ok().stdout;
    assert_eq!(cat("/srv/tree/sub/b.txt"), "file b in sub\n");
    assert_eq!(cat("/srv/txt/two.txt"), "two\n");
    assert_eq!(cat("/srv/json/data.json"), "{\"copied\": true}\n");
    assert_eq!(cat("/srv/json-shell"), "json-shell\n");
    assert_eq!(cat("/srv/literal"), "$HOME", "exec-form RUN must not expand variables");
}

#[test]
fn metadata_instructions_land_in_the_config() {
    if skip_without_sandbox("metadata_instructions_land_in_the_config") {
        return;
    }
    with_base();
    strata(["build", "-t", "e2e-config", &fixture("e2e/config")]).ok();
    let config = inspect_config("e2e-config");
    let env = strings(&config["Env"]);
    for want in ["A=1", "B=two words", "C=1-two words"] {
        assert!(env.iter().any(|e| e == want), "{want} in Env {env:?}");
    }
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "PATH from the base: {env:?}");
    assert_eq!(config["WorkingDir"], "/work/sub", "{config:#}");
    assert_eq!(config["User"], "nobody", "{config:#}");
    assert_eq!(config["Labels"]["one"], "1", "{config:#}");
    assert_eq!(config["Labels"]["two words"], "2", "{config:#}");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config:#}");
    assert!(config["ExposedPorts"]["53/udp"].is_object(), "{config:#}");
    assert_eq!(strings(&config["Entrypoint"]), ["echo", "entry"], "{config:#}");
    assert_eq!(strings(&config["Cmd"]), ["default-arg"], "{config:#}");

    let out = strata(["run", "--rm", "e2e-config"]).ok();
    assert_eq!(out.stdout.trim(), "entry default-arg", "{}", out.describe());
    let out = strata(["run", "--rm", "e2e-config", "other", "args"]).ok();
    assert_eq!(out.stdout.trim(), "entry other args", "CMD replaced, ENTRYPOINT kept");

    // The hello fixture's metadata too.
    let config = inspect_config(hello_image());
    let env = strings(&config["Env"]);
    assert!(env.iter().any(|e| e == "GREETING=Hello from strata"), "{env:?}");
    assert!(env.iter().any(|e| e == "APP_HOME=/app"), "{env:?}");
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["User"], "app");
    assert_eq!(strings(&config["Cmd"]), ["hello"]);
    assert_eq!(config["Labels"]["org.example.demo"], "strata");
    assert!(config["ExposedPorts"]["8080/tcp"].is_object(), "{config:#}");
}

#[test]
fn containerfile_is_preferred_over_dockerfile() {
    if skip_without_sandbox("containerfile_is_preferred_over_dockerfile") {
        return;
    }
    with_base();
    let context = fixture("e2e/containerfile");
    strata(["build", "-t", "e2e-containerfile", &context]).ok();
    assert_eq!(inspect_config("e2e-containerfile")["Labels"]["picked"], "Containerfile");

    let dockerfile = fixture("e2e/containerfile/Dockerfile");
    strata(["build", "-f", &dockerfile, "-t", "e2e-dockerfile", &context]).ok();
    assert_eq!(inspect_config("e2e-dockerfile")["Labels"]["picked"], "Dockerfile");
}
