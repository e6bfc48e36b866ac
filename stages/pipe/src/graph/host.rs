//! Checks of a graph against the machine it runs on: `Exec` programs and free shared memory.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::GraphError;
use super::validate::{Checker, EdgePlan};

/// Free bytes of the file system at `path` (for /dev/shm: shared memory still available).
pub fn shm_free_bytes(path: &Path) -> std::io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `statvfs` is plain old data, so all-zero bytes are a valid value to fill in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `stat` a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between targets (u32 or u64), so widen explicitly.
    #[allow(clippy::useless_conversion)]
    let (available, fragment) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(available.saturating_mul(fragment))
}

/// Finds the executable an `Exec` stage names.
pub(super) fn resolve_program(graph_file: &Path, program: &str) -> Result<PathBuf, String> {
    let accepted = "expected an executable file given as an absolute path, a path relative to the graph file, or a name found beside ccssl-run or in PATH";
    if program.contains('/') {
        let path = Path::new(program);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            graph_file.parent().unwrap_or(Path::new(".")).join(path)
        };
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!(
                "Exec program {program:?} not found or not executable at {}; {accepted}",
                path.display()
            ))
        };
    }
    let mut searched = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        searched.push(dir);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        searched.extend(std::env::split_paths(&paths));
    }
    for dir in &searched {
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let first = searched
        .first()
        .map_or_else(String::new, |d| format!("{} and ", d.display()));
    Err(format!(
        "Exec program {program:?} not found in {first}PATH; {accepted}"
    ))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub(super) fn check_shared_memory(checker: &Checker, edges: &[EdgePlan]) -> Result<(), GraphError> {
    let needed: u64 = edges
        .iter()
        .map(EdgePlan::shm_bytes)
        .fold(0, u64::saturating_add);
    let shm = Path::new("/dev/shm");
    let free = match shm_free_bytes(shm) {
        Ok(free) => free,
        // Without /dev/shm the supervisor reports the failure when it creates the rings.
        Err(_) => return Ok(()),
    };
    if needed <= free {
        return Ok(());
    }
    let (index, largest) = edges
        .iter()
        .enumerate()
        .max_by_key(|(_, e)| e.shm_bytes())
        .expect("needed > free >= 0 implies at least one edge");
    let index = index.to_string();
    Err(checker.invalid(
        &["edges", &index, "slots"],
        format!("edge \"{} -> {}\"", largest.from, largest.to),
        format!(
            "rings need {needed} bytes of shared memory in all ({} for this edge: {} slots of {} bytes, {} ring(s)), but /dev/shm has {free} bytes free; expected fewer slots or a smaller slot_bytes",
            largest.shm_bytes(),
            largest.slots,
            largest.slot_bytes,
            u64::from(largest.from_replicas) * u64::from(largest.to_replicas),
        ),
    ))
}
