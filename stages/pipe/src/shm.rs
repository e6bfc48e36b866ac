//! Shared-memory segments: naming, creation, mapping and stale-segment cleanup.
//!
//! Every segment of a run is a file `/dev/shm/ccssl-<run id>-<name>` with mode 0600. The run id
//! starts with the decimal pid of the supervisor that created it, followed by a `.` and a
//! per-run suffix ([`new_run_id`] builds one). So a later start can tell a segment whose
//! supervisor is gone from one of a live run, and [`remove_stale_segments`] removes the former.
//!
//! NOTE: a pid can be reused after its process died, so a stale segment whose pid was reused by
//! an unrelated live process is kept until that process exits. Nothing is removed wrongly.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

/// Directory of the segments: Linux's shared-memory tmpfs.
pub const SHM_DIR: &str = "/dev/shm";

/// File-name prefix of every segment this project creates.
pub const SEGMENT_PREFIX: &str = "ccssl-";

/// Errors of segment creation, opening and cleanup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// The segment already exists, usually left behind by a dead run with the same run id.
    #[error(
        "shared-memory segment {path} already exists; remove it or pick a new run id \
         (segments of dead runs are removed by remove_stale_segments)"
    )]
    Exists {
        /// Segment path.
        path: PathBuf,
    },
    /// The segment path has an empty, overlong or NUL-containing file name.
    #[error("invalid segment path {name:?}: expected a file name of 1 ..= 200 bytes without NUL")]
    InvalidName {
        /// Rejected name.
        name: String,
    },
    /// A system call on the segment failed.
    #[error("failed to {op} shared-memory segment {path}: {source}")]
    Io {
        /// Operation that failed (`create`, `open`, `map`, `allocate`, `remove`, ...).
        op: &'static str,
        /// Segment path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

impl ShmError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        ShmError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Builds a fresh run id for this process: `<pid>.<nanoseconds since the epoch, hex>`.
pub fn new_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}.{:x}", std::process::id(), nanos)
}

/// Returns the path of segment `name` of run `run_id`: `/dev/shm/ccssl-<run id>-<name>`.
///
/// The name must be a valid file name: a `/` in it makes creation fail with a not-found error,
/// so callers should accept only `[A-Za-z0-9_.-]` names.
pub fn segment_path(run_id: &str, name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(format!("{SEGMENT_PREFIX}{run_id}-{name}"))
}

/// Returns the supervisor pid embedded in a segment file name, or `None` when the name does not
/// follow `ccssl-<pid>.<suffix>-<name>` or `ccssl-<pid>-<name>`.
pub fn segment_owner_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix(SEGMENT_PREFIX)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = rest.as_bytes().get(digits)?;
    if digits == 0 || !matches!(after, b'.' | b'-') {
        return None;
    }
    rest[..digits].parse().ok()
}

/// Tells whether process `pid` exists (possibly as a zombie not yet reaped).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 performs only the existence and permission check and sends
    // nothing; it has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, 0) };
    // EPERM means the process exists but belongs to another user.
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Lists the `ccssl-*` segments in `dir` whose supervisor pid no longer exists.
pub fn stale_segments_in(dir: &Path) -> Result<Vec<PathBuf>, ShmError> {
    let entries = fs::read_dir(dir).map_err(|e| ShmError::io("list", dir, e))?;
    let mut stale = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ShmError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(segment_owner_pid) else {
            continue;
        };
        if !pid_alive(pid) {
            stale.push(entry.path());
        }
    }
    stale.sort();
    Ok(stale)
}

/// Removes the stale `ccssl-*` segments in `dir` and returns their paths.
///
/// A segment that disappears meanwhile (another process cleaned it) is not an error.
pub fn remove_stale_segments_in(dir: &Path) -> Result<Vec<PathBuf>, ShmError> {
    let mut removed = Vec::new();
    for path in stale_segments_in(dir)? {
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(segment = %path.display(), "removed stale segment of a dead run");
                removed.push(path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ShmError::io("remove", &path, e)),
        }
    }
    Ok(removed)
}

/// Removes the stale `ccssl-*` segments in `/dev/shm`; see [`remove_stale_segments_in`].
pub fn remove_stale_segments() -> Result<Vec<PathBuf>, ShmError> {
    remove_stale_segments_in(Path::new(SHM_DIR))
}

/// Removes every segment of run `run_id` in `/dev/shm` and returns their paths.
pub fn remove_run_segments(run_id: &str) -> Result<Vec<PathBuf>, ShmError> {
    let dir = Path::new(SHM_DIR);
    let prefix = format!("{SEGMENT_PREFIX}{run_id}-");
    let entries = fs::read_dir(dir).map_err(|e| ShmError::io("list", dir, e))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ShmError::io("list", dir, e))?;
        let matches = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix));
        if !matches {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ShmError::io("remove", &path, e)),
        }
    }
    Ok(removed)
}

/// Removes one segment file. Processes that still map it keep their mapping.
pub fn unlink(path: &Path) -> Result<(), ShmError> {
    fs::remove_file(path).map_err(|e| ShmError::io("remove", path, e))
}

fn check_file_name(path: &Path) -> Result<(), ShmError> {
    let name = path.file_name().and_then(OsStr::to_str).unwrap_or("");
    if !name.is_empty() && name.len() <= 200 && !name.contains('\0') {
        Ok(())
    } else {
        Err(ShmError::InvalidName {
            name: path.display().to_string(),
        })
    }
}

/// Creates a zero-filled segment of `len` bytes with `O_EXCL` and mode 0600, reserves its
/// memory, and maps it.
///
/// The memory is reserved with `posix_fallocate`, so a full `/dev/shm` fails here with an error
/// instead of raising SIGBUS on a later write. On error no file is left behind.
pub(crate) fn create_segment(path: &Path, len: u64) -> Result<MmapRaw, ShmError> {
    check_file_name(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => ShmError::Exists {
                path: path.to_owned(),
            },
            _ => ShmError::io("create", path, e),
        })?;
    let result = allocate_and_map(&file, path, len);
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

fn allocate_and_map(file: &File, path: &Path, len: u64) -> Result<MmapRaw, ShmError> {
    let off_len = libc::off_t::try_from(len).map_err(|_| {
        ShmError::io(
            "allocate",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "length exceeds off_t"),
        )
    })?;
    // SAFETY: the descriptor is open for writing and owned by `file` for the whole call.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
    if rc != 0 {
        return Err(ShmError::io(
            "allocate",
            path,
            io::Error::from_raw_os_error(rc),
        ));
    }
    MmapOptions::new()
        .map_raw(file)
        .map_err(|e| ShmError::io("map", path, e))
}

/// Opens and maps an existing segment read-write; returns the mapping and its length.
pub(crate) fn open_segment(path: &Path) -> Result<MmapRaw, ShmError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ShmError::io("open", path, e))?;
    MmapOptions::new()
        .map_raw(&file)
        .map_err(|e| ShmError::io("map", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait for true");
        pid
    }

    #[test]
    fn owner_pid_parses_run_ids() {
        assert_eq!(segment_owner_pid("ccssl-123.abc-edge"), Some(123));
        assert_eq!(segment_owner_pid("ccssl-77-a-b"), Some(77));
        assert_eq!(segment_owner_pid("ccssl-x12-edge"), None);
        assert_eq!(segment_owner_pid("ccssl-12"), None);
        assert_eq!(segment_owner_pid("other-12.a-edge"), None);
        assert_eq!(segment_owner_pid("ccssl-12x-edge"), None);
    }

    #[test]
    fn new_run_id_embeds_own_pid() {
        let id = new_run_id();
        let name = format!("ccssl-{id}-edge");
        assert_eq!(segment_owner_pid(&name), Some(std::process::id()));
    }

    #[test]
    fn create_is_exclusive_and_private() {
        let path = segment_path(&new_run_id(), "shm-create-test");
        let map = create_segment(&path, 4096).expect("create");
        assert_eq!(map.len(), 4096);
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = create_segment(&path, 4096);
        assert!(matches!(again, Err(ShmError::Exists { .. })), "{again:?}");
        unlink(&path).expect("unlink");
    }

    #[test]
    fn create_rejects_nested_name() {
        let path = segment_path(&new_run_id(), "a/b");
        let result = create_segment(&path, 64);
        assert!(
            matches!(result, Err(ShmError::Io { op: "create", .. })),
            "{result:?}"
        );
        assert!(!path.exists());
    }

    #[test]
    fn stale_cleanup_removes_only_dead_runs() {
        let dead = format!("{}.feed", dead_pid());
        let live = new_run_id();
        let dead_path = segment_path(&dead, "stale-test");
        let live_path = segment_path(&live, "stale-test");
        drop(create_segment(&dead_path, 64).expect("create dead"));
        drop(create_segment(&live_path, 64).expect("create live"));

        // A concurrent run's cleanup may remove the dead segment first, so only its absence
        // is checked, not that this call removed it.
        remove_stale_segments().expect("cleanup");
        assert!(!dead_path.exists());
        assert!(live_path.exists());

        let gone = remove_run_segments(&live).expect("remove run");
        assert_eq!(gone, vec![live_path.clone()]);
        assert!(!live_path.exists());
    }
}
