//! End-to-end tests of ccssl: they run the built binaries on real graphs, real shared memory
//! and real files. The tests live in `tests/`, and this library contains their shared helpers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a binary of the `ccssl` crate (`ccssl-run` or `ccssl`) beside the running test
/// executable, in `target/<profile>/`.
///
/// Under cargo (`CARGO` is set), the first call runs `cargo build -p ccssl --bins` with the same
/// profile, because `cargo test -p ccssl-tests` alone neither builds nor refreshes binaries of
/// another package, and a stale binary would test old code.
pub fn ccssl_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    BUILT.get_or_init(|| {
        let Ok(cargo) = std::env::var("CARGO") else {
            return;
        };
        let mut command = Command::new(cargo);
        command
            .args(["build", "--quiet", "-p", "ccssl", "--bins"])
            .current_dir(repo_root());
        if dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p ccssl --bins failed");
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found; build it with cargo build -p ccssl --bins",
        path.display()
    );
    path
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory whose name starts with `label`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ccssl-test-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `probe` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Shared-memory segments whose name says the supervisor with `pid` created them.
pub fn segments_of(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("ccssl-{pid}.");
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Entries of `dir`, or none if it does not exist.
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// One line of a run directory's `pids` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagePid {
    /// Stage name.
    pub stage: String,
    /// Replica index.
    pub replica: u32,
    /// Process id.
    pub pid: u32,
}

/// Reads `<run_dir>/pids`, the live stage processes the supervisor started.
pub fn read_pids(run_dir: &Path) -> Vec<StagePid> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("pids")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some(StagePid {
                stage: parts.next()?.to_string(),
                replica: parts.next()?.parse().ok()?,
                pid: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; the pid belongs to a process this test started.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
}
