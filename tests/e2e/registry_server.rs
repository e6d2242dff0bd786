//! A real registry for the tests: Debian's docker-registry serving a private
//! directory on 127.0.0.1, with optional htpasswd basic auth and TLS, killed on drop.
//! `restart` brings it back on the same port and storage (the fault tests freeze and
//! kill it).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{path_str, run};

/// How a [`Registry`] is configured.
#[derive(Default, Clone)]
pub struct RegistryOptions {
    /// A user and password for htpasswd basic auth.
    pub htpasswd: Option<(String, String)>,
    /// PEM certificate (chain) and key: the registry serves HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A docker-registry process serving a private directory; killed on drop.
pub struct Registry {
    child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
    config: PathBuf,
}

impl Registry {
    /// Plain HTTP, with basic auth when `htpasswd` is given.
    pub fn start(dir: &Path, htpasswd: Option<(&str, &str)>) -> Registry {
        let options = RegistryOptions { htpasswd: htpasswd.map(|(u, p)| (u.to_string(), p.to_string())), tls: None };
        Registry::start_with(dir, &options)
    }

    pub fn start_with(dir: &Path, options: &RegistryOptions) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            path_str(&dir.join("data"))
        );
        if let Some((cert, key)) = &options.tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", path_str(cert), path_str(key)));
        }
        if let Some((user, password)) = &options.htpasswd {
            let line = run("htpasswd", ["-Bbn", user.as_str(), password.as_str()]).ok().stdout;
            fs::write(dir.join("htpasswd"), line.trim()).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: strata-e2e\n    path: {}\n", path_str(&dir.join("htpasswd"))));
        }
        let config_path = dir.join("config.yml");
        fs::write(&config_path, config).unwrap();
        let mut registry = Registry { child: None, addr, log: dir.join("registry.log"), config: config_path };
        registry.spawn();
        registry
    }

    fn spawn(&mut self) {
        let out = fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start docker-registry (scripts/deps.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {}: {}",
                self.addr,
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the registry (SIGKILL: no graceful shutdown, as a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the registry where it is (SIGSTOP): a transfer it is in the middle of
    /// stays half done, however fast it was going, until `kill`.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            let pid = i32::try_from(child.id()).expect("a pid fits in pid_t");
            // SAFETY: kill(2) on our own child, which is not reaped before `kill`.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
    }

    /// Starts it again on the same address and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The registry's log so far (its access log included).
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many blob uploads the registry has finished, from its access log.
    pub fn finished_uploads(&self) -> usize {
        self.log_text().lines().filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/")).count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}
