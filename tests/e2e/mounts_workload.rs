//! The acceptance workload of `RUN --mount=type=cache`: pip on the Debian minbase of
//! `workload.rs` keeps its download cache in a cache mount, so a rebuild after a new
//! requirement takes the old packages from the cache (pip says "Using cached") and
//! downloads only the new one, while no cache file enters the image. Needs PyPI and
//! the Debian mirror.

use std::fs;

use crate::language::Ctx;
use crate::layout::Layout;
use crate::mounts::assert_not_in_layers;
use crate::support::{path_str, scratch, skip_without_sandbox, strata};
use crate::workload::{link_or_copy, minbase_tarball};

const DOCKERFILE: &str = "FROM scratch\nADD rootfs.tar /\n\
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip\n\
WORKDIR /app\nCOPY requirements.txt .\n\
RUN --mount=type=cache,target=/root/.cache/pip pip install --break-system-packages -r requirements.txt\n";

/// Builds the pip image with `requirements`; returns the build log and every path in
/// the image's layers.
fn build(ctx: &Ctx, requirements: &str) -> (String, Vec<String>) {
    ctx.file("requirements.txt", requirements);
    let layout = scratch("mounts-pip-out").join("layout");
    let built = ctx.build_ok("mounts-pip", &["--output", &format!("oci:{}:pip", path_str(&layout))]);
    let layout = Layout::open(&layout);
    let manifest = layout.manifest(Some("pip"));
    let paths = Layout::layers(&manifest).iter().flat_map(|l| layout.layer_entries(l)).map(|e| e.path).collect();
    (format!("{}\n{}", built.stdout, built.stderr), paths)
}

#[test]
fn pip_reuses_its_cache_mount_and_downloads_only_the_new_package() {
    if skip_without_sandbox("pip_reuses_its_cache_mount_and_downloads_only_the_new_package") {
        return;
    }
    let ctx = Ctx::new("mounts-pip", DOCKERFILE);
    link_or_copy(&minbase_tarball(), &ctx.join("rootfs.tar"));
    let (first, paths) = build(&ctx, "six==1.16.0\nidna==3.7\n");
    for wheel in ["six-1.16.0", "idna-3.7"] {
        assert!(first.contains(&format!("Downloading {wheel}")), "the first build downloads {wheel}:\n{first}");
    }
    assert_not_in_layers(&paths, "root/.cache");

    let (second, paths) = build(&ctx, "six==1.16.0\nidna==3.7\npackaging==24.1\n");
    for wheel in ["six-1.16.0", "idna-3.7"] {
        assert!(second.contains(&format!("Using cached {wheel}")), "the rebuild takes {wheel} from the cache mount:\n{second}");
        assert!(!second.contains(&format!("Downloading {wheel}")), "the rebuild downloaded {wheel} again:\n{second}");
    }
    assert!(second.contains("Downloading packaging-24.1"), "the new requirement is downloaded:\n{second}");
    assert_not_in_layers(&paths, "root/.cache");
    let versions = strata([
        "run",
        "--rm",
        "mounts-pip",
        "python3",
        "-c",
        "import six, idna, packaging; print(six.__version__, idna.__version__, packaging.__version__)",
    ])
    .ok();
    assert_eq!(versions.stdout, "1.16.0 3.7 24.1\n", "the packages are installed in the image");
    fs::remove_file(ctx.join("rootfs.tar")).ok();
}
