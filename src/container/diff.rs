//! `strata diff CONTAINER`: what a container changed in its image, as `docker
//! diff` lists it, and how many bytes that is (`ps -s`). Its upper dir is walked and each entry judged against the
//! image's layer dirs: `A` added, `C` changed, `D` deleted. As in docker, a
//! directory that was only copied up to hold a change, with its mode, size and
//! time as the image has them, is left out, unless an entry was added to or
//! removed from it.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::overlay_marks::{is_whiteout, FUSE_OPAQUE_FILE, OPAQUE_XATTRS};
use crate::rootfs::LowerView;
use crate::store::{ContainerRecord, Containers, LocalStore};

/// The container's changes, `(kind, absolute path)`, sorted by path.
pub fn container_changes(store: &LocalStore, reference: &str) -> Result<Vec<(char, String)>> {
    let containers = Containers::open(&store.root);
    let record = containers.find(reference)?;
    let image = store.load_image(&record.manifest).with_context(|| format!("loading the image of container {}", record.name))?;
    let lowers = store.layer_dirs(&image)?;
    let view = LowerView { lowers: &lowers, opaque: &OPAQUE_XATTRS };
    let upper = containers.dir_of(&record.id).join("upper");
    changes_in(&upper, &view)
}

/// The changes the upper dir `upper` makes to the layers `view` merges.
fn changes_in(upper: &Path, view: &LowerView<'_>) -> Result<Vec<(char, String)>> {
    let mut changes: BTreeSet<(Vec<u8>, char)> = BTreeSet::new();
    let mut dirs_listed: BTreeSet<Vec<u8>> = BTreeSet::new();
    let walk = walkdir::WalkDir::new(upper).min_depth(1).follow_links(false).sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in walk {
        let entry = entry.with_context(|| format!("walking {}", upper.display()))?;
        let rel = entry.path().strip_prefix(upper).expect("below the walk's root");
        let meta = entry.path().symlink_metadata().with_context(|| format!("reading {}", entry.path().display()))?;
        let Some((kind, path)) = judge(view, rel, &meta) else { continue };
        if kind == 'S' {
            continue;
        }
        if meta.is_dir() {
            dirs_listed.insert(path.clone());
        }
        if kind == 'A' || kind == 'D' {
            // Adding or removing an entry changes its directory, whatever its times say.
            let parent = path[..path.iter().rposition(|b| *b == b'/').unwrap_or(0)].to_vec();
            if !parent.is_empty() && dirs_listed.insert(parent.clone()) {
                changes.insert((parent, 'C'));
            }
        }
        changes.insert((path, kind));
    }
    Ok(changes.into_iter().map(|(p, k)| (k, String::from_utf8_lossy(&p).into_owned())).collect())
}

/// What the upper dir's entry `rel` says: `A`, `C` or `D` with the absolute path
/// it is about, `S` for a directory that changed nothing itself, None for an
/// overlay marker that is not an entry of the container's tree.
fn judge(view: &LowerView<'_>, rel: &Path, meta: &Metadata) -> Option<(char, Vec<u8>)> {
    let name = rel.file_name()?.as_bytes();
    if name == FUSE_OPAQUE_FILE.as_bytes() {
        return None;
    }
    let absolute = |r: &Path| [b"/", r.as_os_str().as_bytes()].concat();
    if is_whiteout(meta) {
        return Some(('D', absolute(rel)));
    }
    // fuse-overlayfs, where it cannot make a device, writes `.wh.NAME` files.
    if let Some(gone) = name.strip_prefix(b".wh.") {
        let parent = rel.parent().unwrap_or(Path::new(""));
        return Some(('D', absolute(&parent.join(std::ffi::OsStr::from_bytes(gone)))));
    }
    let kind = match view.find(rel) {
        None => 'A',
        Some((_, lower)) if lower.is_dir() && meta.is_dir() && same_dir(&lower, meta) => 'S',
        Some(_) => 'C',
    };
    Some((kind, absolute(rel)))
}

/// docker's test for a directory copied up unchanged: size, mode and time equal
/// (a time without nanoseconds on one side matches the same second).
fn same_dir(lower: &Metadata, upper: &Metadata) -> bool {
    let same_time = (lower.mtime(), lower.mtime_nsec()) == (upper.mtime(), upper.mtime_nsec())
        || (lower.mtime() == upper.mtime() && (lower.mtime_nsec() == 0 || upper.mtime_nsec() == 0));
    lower.size() == upper.size() && lower.mode() == upper.mode() && same_time
}

/// The content bytes of a container's writable layer (its regular files), and of
/// its image's layers: `ps -s`'s size and, added up, its virtual size.
pub fn container_sizes(store: &LocalStore, record: &ContainerRecord) -> Result<(u64, u64)> {
    let upper = Containers::open(&store.root).dir_of(&record.id).join("upper");
    let writable = crate::rootfs::regular_bytes_below(&upper);
    let manifest = store.images.read_manifest(&crate::oci::descriptor_digest(&record.manifest)?)?;
    let mut image = 0;
    for layer in manifest.layers() {
        image += store.images.content_size(layer)?;
    }
    Ok((writable, image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A directory copied up with the image's times is left out, but a child added
    /// to or removed from it brings it back as `C`, as moby's diff does.
    #[test]
    fn an_unchanged_directory_is_listed_only_for_an_added_or_removed_child() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        for d in [lower.join("same/deep"), lower.join("kept"), upper.join("same/deep"), upper.join("kept")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(lower.join("same/deep/f"), "x").unwrap();
        fs::write(upper.join("same/deep/f"), "changed").unwrap();
        fs::write(upper.join("kept/new"), "n").unwrap();
        // The copied-up directories get the image's mode and times back.
        for d in ["same", "same/deep", "kept"] {
            let m = fs::metadata(lower.join(d)).unwrap();
            let t = filetime_of(&m);
            nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, &upper.join(d), &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
                .unwrap();
        }
        let lowers = [lower];
        let view = LowerView { lowers: &lowers, opaque: &OPAQUE_XATTRS };
        let got = changes_in(&upper, &view).unwrap();
        let got: Vec<String> = got.into_iter().map(|(k, p)| format!("{k} {p}")).collect();
        assert_eq!(got, ["C /kept", "A /kept/new", "C /same/deep/f"]);
    }

    fn filetime_of(m: &Metadata) -> nix::sys::time::TimeSpec {
        nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec())
    }
}
