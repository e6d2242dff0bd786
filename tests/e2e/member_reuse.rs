//! A deep edit of a large COPY (issue 16): the rebuilt layer copies the unchanged
//! gzip members of the step's previous layer, and is byte for byte the layer a
//! fresh store builds from the same files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::drivers::{build_busybox_in, strata_at};
use crate::layout::Layout;
use crate::support::{path_str, scratch, skip_without_sandbox};

/// Files in the context's tree, and the size of each: 8 MiB in all.
const FILES: usize = 256;
const FILE_SIZE: usize = 32 * 1024;

/// Compressible pseudo-random text, different for each `seed`.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"etaoin shrdlu\n"[(x % 14) as usize]
        })
        .collect()
}

fn file(ctx: &Path, n: usize) -> PathBuf {
    ctx.join(format!("tree/d{:02}/f{n:03}.txt", n % 16))
}

fn context() -> PathBuf {
    let ctx = scratch("reuse-context");
    fs::write(ctx.join("Dockerfile"), "FROM busybox:latest\nCOPY tree /tree\n").expect("write Dockerfile");
    for n in 0..FILES {
        let path = file(&ctx, n);
        fs::create_dir_all(path.parent().expect("parent")).expect("create tree dir");
        fs::write(&path, text(n as u64, FILE_SIZE)).expect("write tree file");
    }
    ctx
}

/// The COPY layer of one build: its blob digest and diff id.
#[derive(Debug, PartialEq, Eq)]
struct Layer {
    digest: String,
    diff_id: String,
}

/// Builds `ctx` in the store at `root`; returns the COPY layer and stderr. The
/// directories COPY creates get the build's time, so SOURCE_DATE_EPOCH clamps
/// every time: the same files then make the same tar in any store.
#[track_caller]
fn build(root: &Path, ctx: &Path, out: &Path) -> (Layer, String) {
    let output = format!("oci:{}:reuse", path_str(out));
    let args = ["build", "--progress=plain", "-t", "reuse:latest", "--output", &output, &path_str(ctx)];
    let run = strata_at(root, None, &[("SOURCE_DATE_EPOCH", "1700000000")], &args).ok();
    let layout = Layout::open(out);
    let manifest = layout.manifest(Some("reuse"));
    let digest = Layout::layers(&manifest).last().expect("the COPY layer")["digest"].as_str().expect("digest").to_string();
    let config = layout.config(&manifest);
    let diff_id = config["rootfs"]["diff_ids"].as_array().and_then(|d| d.last()).and_then(|d| d.as_str()).expect("diff id").to_string();
    (Layer { digest, diff_id }, run.stderr)
}

/// "reused R of M": the counts the build reported, if it reported reuse.
fn reused(stderr: &str) -> Option<(usize, usize)> {
    let line = stderr.lines().find(|l| l.contains("--> reused "))?;
    let mut words = line.split_whitespace().skip_while(|w| *w != "reused").skip(1);
    let r = words.next()?.parse().ok()?;
    let m = words.nth(1)?.parse().ok()?;
    Some((r, m))
}

#[test]
fn a_deep_edit_reuses_the_other_members_and_matches_a_fresh_store() {
    if skip_without_sandbox("a_deep_edit_reuses_the_other_members_and_matches_a_fresh_store") {
        return;
    }
    let dir = scratch("reuse");
    let (warm, cold) = (dir.join("warm"), dir.join("cold"));
    build_busybox_in(&warm, None, &[]).unwrap_or_else(|e| panic!("{e}"));
    build_busybox_in(&cold, None, &[]).unwrap_or_else(|e| panic!("{e}"));
    let ctx = context();
    let (before, first) = build(&warm, &ctx, &dir.join("out-1"));
    assert_eq!(reused(&first), None, "nothing to reuse in a first build:\n{first}");

    // One file in the middle of the tree, same size, new content.
    let middle = file(&ctx, FILES / 2);
    fs::write(&middle, text(999_999, FILE_SIZE)).expect("edit the file");
    let (after, second) = build(&warm, &ctx, &dir.join("out-2"));
    assert_ne!(after, before, "the edit changes the layer");
    let (r, m) = reused(&second).unwrap_or_else(|| panic!("the rebuild reused nothing:\n{second}"));
    assert!(m >= 8 && r + 2 >= m, "reused {r} of {m} members: all but the edited chunk(s) expected");

    let (fresh, third) = build(&cold, &ctx, &dir.join("out-3"));
    assert_eq!(reused(&third), None, "a fresh store has nothing to reuse:\n{third}");
    assert_eq!(after.diff_id, fresh.diff_id, "the same files make the same tar in both stores");
    assert_eq!(after.digest, fresh.digest, "the reused layer's blob equals a fresh store's");
    let index = warm.join("oci/members").join(after.digest.trim_start_matches("sha256:"));
    assert!(index.is_file(), "the rebuilt blob has its own member index: {}", index.display());
}
