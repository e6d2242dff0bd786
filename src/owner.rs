//! File ownership that survives a single-id user namespace.
//!
//! Without a subuid range only container uid/gid 0 exist on disk, so chown to any
//! other id fails with EINVAL. The true owner is then recorded in the
//! `user.containers.override_stat` xattr (the convention of containers/storage and
//! fuse-overlayfs: `UID:GID:MODE`, mode in octal) on a root-owned file, and the
//! layer writer puts the recorded owner in the tar header. Symlinks cannot carry
//! user xattrs; their owner is rarely meaningful and is left as root.
//!
//! Any file's owner may set a `user.*` xattr, so the value alone proves nothing: a
//! RUN could name itself root, or an archive could carry a forged record. Hence:
//! - with every id mapped ([`Owners::Real`]: subuid ranges or real root) owners are
//!   real, and the xattr is neither written nor read;
//! - in single-id mode ([`Owners::Recorded`]) strata seals each value it writes with
//!   an HMAC-SHA256 keyed by a per-store secret (`owner.key` at the store root, 0600),
//!   stored as `UID:GID:MODE:MAC`, and honours only values whose MAC verifies. The
//!   key never enters a container's root, so a command cannot mint a value. It can
//!   copy a sealed value from one of its files to another, but that only claims an
//!   owner it could also set with chown, which pid 1 performs for it in this mode
//!   (see `sandbox::chown_notify`). A MAC bound to the path or inode instead would
//!   break on rename (dpkg renames every file it chowns) and on overlay copy-up.
//! - the xattr never travels in a layer: unpack does not set it from a tar, COPY does
//!   not carry it from a source, and the layer writer never emits it.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{AtFlags, AT_FDCWD};
use nix::unistd::{fchownat, Gid, Uid};
use ring::hmac;

use crate::durable::{self, Mode};

/// The xattr that records an owner the namespace cannot represent.
pub const OVERRIDE_XATTR: &str = "user.containers.override_stat";

/// Name of the key file below the store root.
pub const KEY_FILE: &str = "owner.key";

const KEY_LEN: usize = 32;

/// The per-store secret that seals recorded owners. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerKey(Vec<u8>);

impl std::fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerKey(..)")
    }
}

impl OwnerKey {
    /// Reads the key at `path`, creating it (random, 0600) when missing. Two
    /// processes creating it at once agree on one: `create_new` never replaces an
    /// existing file.
    pub fn load_or_create(path: &Path) -> io::Result<OwnerKey> {
        match Self::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut bytes = [0u8; KEY_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| io::Error::other("no random bytes for the owner key"))?;
        match durable::create_new(path, &bytes, Mode::Exact(0o600)) {
            Ok(()) => Ok(OwnerKey(bytes.to_vec())),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::read(path),
            Err(e) => Err(e),
        }
    }

    fn read(path: &Path) -> io::Result<OwnerKey> {
        let mut bytes = Vec::new();
        fs::File::open(path)?.read_to_end(&mut bytes)?;
        if bytes.len() != KEY_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: an owner key is {KEY_LEN} bytes, found {}; remove the file to make a new one", path.display(), bytes.len()),
            ));
        }
        Ok(OwnerKey(bytes))
    }

    fn hmac(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }

    /// `UID:GID:MODE:MAC`.
    pub(crate) fn seal(&self, uid: u32, gid: u32, mode: u32) -> String {
        let value = format!("{uid}:{gid}:0{:o}", mode & 0o7777);
        let tag = hmac::sign(&self.hmac(), value.as_bytes());
        let mac: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{value}:{mac}")
    }

    /// The owner in a sealed value, or None when it is not one this key sealed.
    fn open(&self, sealed: &[u8]) -> Option<(u32, u32)> {
        let text = std::str::from_utf8(sealed).ok()?;
        let (value, mac) = text.rsplit_once(':')?;
        if mac.len() != 64 {
            return None;
        }
        let tag: Vec<u8> = (0..32).map(|i| u8::from_str_radix(mac.get(2 * i..2 * i + 2)?, 16).ok()).collect::<Option<_>>()?;
        hmac::verify(&self.hmac(), value.as_bytes(), &tag).ok()?;
        let mut parts = value.split(':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        Some((uid, gid))
    }
}

/// How owners are kept in the trees of one store.
#[derive(Clone, Debug, Default)]
pub enum Owners {
    /// Every id the image uses is mapped: chown is real, the xattr means nothing.
    #[default]
    Real,
    /// One id is mapped: other owners are recorded in sealed xattrs.
    Recorded(OwnerKey),
}

impl Owners {
    /// The sealing key in single-id mode.
    pub fn key(&self) -> Option<&OwnerKey> {
        match self {
            Owners::Recorded(key) => Some(key),
            Owners::Real => None,
        }
    }

    /// The recorded owner of `path`: only in single-id mode and only a value this
    /// store sealed.
    pub fn recorded(&self, path: &Path) -> Option<(u32, u32)> {
        let Owners::Recorded(key) = self else { return None };
        key.open(&xattr::get(path, OVERRIDE_XATTR).ok().flatten()?)
    }

    /// [`Owners::recorded`] of an open file or directory, read from its descriptor.
    pub fn recorded_in(&self, file: &fs::File) -> Option<(u32, u32)> {
        use xattr::FileExt;
        let Owners::Recorded(key) = self else { return None };
        key.open(&file.get_xattr(OVERRIDE_XATTR).ok().flatten()?)
    }

    /// Sets `path`'s owner (not following a final symlink): for real when the ids
    /// are mapped, else (single-id mode) recorded in [`OVERRIDE_XATTR`] on a file
    /// owned by root. With every id mapped, an id outside the range fails (EINVAL).
    pub fn set_owner(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        match fchownat(AT_FDCWD, path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(()) => {
                if matches!(self, Owners::Recorded(_)) && xattr::get(path, OVERRIDE_XATTR).ok().flatten().is_some() {
                    let _ = xattr::remove(path, OVERRIDE_XATTR);
                }
                Ok(())
            }
            Err(nix::errno::Errno::EINVAL) => match self {
                Owners::Recorded(key) => record(key, path, uid, gid),
                Owners::Real => Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("owner {uid}:{gid} is outside the ids mapped in strata's user namespace"),
                )),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the recorded or real owner after a chown request where `u32::MAX`
    /// means "unchanged", as chown(2) takes it. Used by the sandbox's chown supervisor.
    pub fn chown_request(&self, path: &Path, follow: bool, uid: u32, gid: u32) -> io::Result<()> {
        let target = if follow { fs::canonicalize(path)? } else { path.to_path_buf() };
        let meta = fs::symlink_metadata(&target)?;
        let (cur_uid, cur_gid) = self.recorded(&target).unwrap_or((meta.uid(), meta.gid()));
        let uid = if uid == u32::MAX { cur_uid } else { uid };
        let gid = if gid == u32::MAX { cur_gid } else { gid };
        self.set_owner(&target, uid, gid)?;
        // chown(2) drops setuid/setgid on regular files; keep that semantics.
        if meta.is_file() && meta.mode() & 0o6000 != 0 {
            let mode = meta.mode() & 0o1777;
            fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            if let (Owners::Recorded(key), Some((u, g))) = (self, self.recorded(&target)) {
                xattr::set(&target, OVERRIDE_XATTR, key.seal(u, g, mode).as_bytes())?;
            }
        }
        Ok(())
    }
}

fn record(key: &OwnerKey, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    // Root owns it on disk; the xattr says who owns it in the image.
    fchownat(AT_FDCWD, path, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    xattr::set(path, OVERRIDE_XATTR, key.seal(uid, gid, meta.mode()).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_in(dir: &Path) -> OwnerKey {
        OwnerKey::load_or_create(&dir.join(KEY_FILE)).unwrap()
    }

    #[test]
    fn the_key_is_private_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let k = key_in(d.path());
        assert_eq!(key_in(d.path()), k, "a second load reads the same key");
        let mode = fs::metadata(d.path().join(KEY_FILE)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(format!("{k:?}"), "OwnerKey(..)", "the key is never printed");
        fs::write(d.path().join(KEY_FILE), b"short").unwrap();
        let err = OwnerKey::load_or_create(&d.path().join(KEY_FILE)).unwrap_err();
        assert!(err.to_string().contains(KEY_FILE), "{err}");
    }

    #[test]
    fn only_sealed_values_count_and_only_in_single_id_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        if xattr::set(&f, OVERRIDE_XATTR, b"0:0:04755").is_err() {
            eprintln!("skipping: no user xattrs on this filesystem");
            return;
        }
        let key = key_in(d.path());
        let single = Owners::Recorded(key.clone());
        assert_eq!(single.recorded(&f), None, "a value without a MAC is forged");
        let sealed = key.seal(1000, 100, 0o644);
        xattr::set(&f, OVERRIDE_XATTR, sealed.as_bytes()).unwrap();
        assert_eq!(single.recorded(&f), Some((1000, 100)));
        assert_eq!(single.recorded_in(&fs::File::open(&f).unwrap()), Some((1000, 100)), "read from a descriptor too");
        assert_eq!(Owners::Real.recorded(&f), None, "with every id mapped the xattr is ignored");
        assert_eq!(Owners::Real.recorded_in(&fs::File::open(&f).unwrap()), None);
        let other = Owners::Recorded(key_in(tempfile::tempdir().unwrap().path()));
        assert_eq!(other.recorded(&f), None, "another store's key does not verify");
        let (value, mac) = sealed.rsplit_once(':').unwrap();
        let tampered = format!("{}:{mac}", value.replacen("1000", "0", 1));
        xattr::set(&f, OVERRIDE_XATTR, tampered.as_bytes()).unwrap();
        assert_eq!(single.recorded(&f), None, "a changed owner breaks the MAC");
        xattr::set(&f, OVERRIDE_XATTR, sealed.as_bytes()).unwrap();
        let me = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        single.set_owner(&f, me.0, me.1).unwrap();
        assert_eq!(xattr::get(&f, OVERRIDE_XATTR).unwrap(), None, "a real chown clears the record");
    }
}
