//! The registry side of the transport: references as `pull` and `push` take them,
//! clients with a command's TLS choice and credentials, `push`, and `login` /
//! `logout` (the credentials themselves are kept by `registry::auth`).

use anyhow::{bail, Context, Result};

use super::RegistryOptions;
use crate::oci::{self, ImageName};
use crate::registry::{
    forget_credentials, is_short_name, lookup_credentials, save_credentials, Client, Credentials, PushReport, TlsOptions,
};

impl RegistryOptions {
    /// A client for `registry`: with `creds` when given (for every registry), else
    /// with the credentials stored for it.
    pub fn connect(&self, registry: &str) -> crate::registry::Result<Client> {
        let creds = match &self.creds {
            Some(c) => Some(c.clone()),
            None => lookup_credentials(registry)?,
        };
        Client::new(registry, &self.tls, creds)
    }
}

/// A registry reference with an optional `docker://` in front, as skopeo writes it.
pub fn registry_name(reference: &str) -> Result<ImageName> {
    // skopeo's docker://NAME is a Docker reference: a name without a registry is
    // Docker Hub's, never a search.
    if let Some(bare) = reference.strip_prefix("docker://").filter(|b| is_short_name(b)) {
        return ImageName::parse(&format!("docker.io/{bare}")).with_context(|| format!("invalid image reference {reference:?}"));
    }
    let bare = reference.strip_prefix("docker://").unwrap_or(reference);
    let name = ImageName::parse(bare).with_context(|| format!("invalid image reference {reference:?}"))?;
    if name.domain() == "localhost" && !bare.starts_with("localhost") {
        bail!("{reference:?} names no registry: write it as REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/{bare} or docker.io/library/{bare}");
    }
    Ok(name)
}

/// Pushes the stored image `source` (name or id) to `dest`, a registry reference
/// (default: the image's own name).
pub fn push(images: &oci::Store, source: &str, dest: Option<&str>, opts: &RegistryOptions) -> Result<PushReport> {
    let manifest = images.resolve(source)?.with_context(|| format!("image {source:?} not found in the local store"))?;
    let dest = registry_name(dest.unwrap_or(source))?;
    let client = opts.connect(dest.domain())?;
    let progress = crate::report::transfer_progress(opts.view);
    crate::registry::push(images, &client, &manifest, &dest, progress.as_ref()).with_context(|| format!("pushing to {dest}"))
}

/// Checks `creds` with `registry` and, when it accepts them, stores them where
/// podman keeps them.
pub fn login(registry: &str, tls: &TlsOptions, creds: Credentials) -> Result<()> {
    let client = Client::new(registry, tls, Some(creds.clone()))?;
    client.ping().with_context(|| format!("logging in to {registry}"))?;
    save_credentials(registry, &creds)?;
    Ok(())
}

/// Forgets the stored credentials of `registry`; false when there were none.
pub fn logout(registry: &str) -> Result<bool> {
    Ok(forget_credentials(registry)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_transport_names_are_docker_references() {
        assert_eq!(registry_name("docker://alpine").unwrap().to_string(), "docker.io/library/alpine:latest");
        assert_eq!(registry_name("docker://me/app:1").unwrap().to_string(), "docker.io/me/app:1");
        assert_eq!(registry_name("docker://127.0.0.1:5000/a/b:2").unwrap().to_string(), "127.0.0.1:5000/a/b:2");
        assert!(registry_name("alpine").is_err(), "a bare short name is for the search list, not a push target");
    }
}
