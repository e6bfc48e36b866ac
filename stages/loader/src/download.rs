//! Download of the official CIFAR archives into the local cache.
//!
//! The archive is written to `<name>.part`, resumed with an HTTP `Range` request after a broken
//! transfer, checked against the published MD5 and only then renamed to `<name>`. A file at the
//! final name is therefore always complete and verified. An advisory lock on `<name>.lock`
//! keeps two processes (the loader and the evaluation stage, say) from writing the same file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::error::{LoaderError, io_error};

/// An archive to fetch and the MD5 it must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// File name, appended to the base URL and used in the cache.
    pub file_name: &'static str,
    /// Published MD5, lowercase hex.
    pub md5: &'static str,
}

/// Transfers tried before giving up, counting the first; each one resumes the previous.
const MAX_ATTEMPTS: usize = 4;
/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for the whole body of one transfer. A stalled transfer fails after it and the
/// next attempt resumes where it stopped; 30 minutes covers 170 MB at 100 kB/s.
const BODY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Returns the cache directory: `$CCSSL_CACHE` when set, else `$HOME/.cache/ccssl`.
pub fn cache_dir() -> Result<PathBuf, LoaderError> {
    cache_dir_from(std::env::var_os("CCSSL_CACHE"), std::env::var_os("HOME")).ok_or_else(|| {
        LoaderError::Config {
            field: "CCSSL_CACHE",
            value: "unset".to_string(),
            reason: "HOME is unset too, so there is no cache directory; set CCSSL_CACHE"
                .to_string(),
        }
    })
}

fn cache_dir_from(ccssl_cache: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let non_empty = |value: Option<OsString>| value.filter(|value| !value.is_empty());
    match (non_empty(ccssl_cache), non_empty(home)) {
        (Some(cache), _) => Some(PathBuf::from(cache)),
        (None, Some(home)) => Some(PathBuf::from(home).join(".cache").join("ccssl")),
        (None, None) => None,
    }
}

/// Returns the path of `spec` in `cache`, downloading it from `base_url` first when absent.
pub fn ensure_archive(
    base_url: &str,
    spec: &ArchiveSpec,
    cache: &Path,
) -> Result<PathBuf, LoaderError> {
    let target = cache.join(spec.file_name);
    if target.is_file() {
        tracing::debug!(path = %target.display(), "using cached archive");
        return Ok(target);
    }
    fs::create_dir_all(cache).map_err(io_error(cache))?;

    let lock_path = cache.join(format!("{}.lock", spec.file_name));
    let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
    lock.lock().map_err(io_error(&lock_path))?;
    // Another process may have finished the download while this one waited for the lock.
    if target.is_file() {
        return Ok(target);
    }

    let url = format!("{}/{}", base_url.trim_end_matches('/'), spec.file_name);
    let partial = cache.join(format!("{}.part", spec.file_name));
    let agent = agent_for(&url);
    tracing::info!(url, path = %target.display(), "downloading archive");

    download_resuming(&agent, &url, &partial)?;
    let mut actual = md5_hex(&partial)?;
    if actual != spec.md5 {
        // A partial file left by an earlier run may belong to another version of the
        // archive. One fresh transfer rules that out before the mismatch is reported.
        tracing::warn!(
            url,
            expected = spec.md5,
            actual,
            "MD5 mismatch, downloading again from the start"
        );
        fs::remove_file(&partial).map_err(io_error(&partial))?;
        download_resuming(&agent, &url, &partial)?;
        actual = md5_hex(&partial)?;
    }
    if actual != spec.md5 {
        fs::remove_file(&partial).map_err(io_error(&partial))?;
        return Err(LoaderError::Checksum {
            url,
            expected: spec.md5.to_string(),
            actual,
        });
    }

    File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(io_error(&partial))?;
    fs::rename(&partial, &target).map_err(io_error(&target))?;
    tracing::info!(path = %target.display(), md5 = actual, "archive downloaded and verified");
    Ok(target)
}

/// Builds an agent that returns HTTP errors as responses and bypasses proxies for loopback
/// hosts.
fn agent_for(url: &str) -> ureq::Agent {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|prefix| url.starts_with(prefix));
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_body(Some(BODY_TIMEOUT));
    if loopback {
        config = config.proxy(None);
    }
    config.build().into()
}

/// Transfers `url` into `partial` until complete, resuming after broken transfers.
fn download_resuming(agent: &ureq::Agent, url: &str, partial: &Path) -> Result<(), LoaderError> {
    let mut last_failure = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        match transfer(agent, url, partial)? {
            Transfer::Complete => return Ok(()),
            Transfer::Broken(reason) => {
                tracing::warn!(
                    url,
                    attempt,
                    max_attempts = MAX_ATTEMPTS,
                    reason,
                    "transfer broke off, resuming"
                );
                last_failure = reason;
            }
        }
    }
    Err(LoaderError::Download {
        url: url.to_string(),
        reason: format!("transfer broke off {MAX_ATTEMPTS} times, last: {last_failure}"),
    })
}

enum Transfer {
    Complete,
    /// The connection dropped after it was established; worth resuming.
    Broken(String),
}

/// Sends one request, resuming from the current size of `partial` when it has bytes.
fn transfer(agent: &ureq::Agent, url: &str, partial: &Path) -> Result<Transfer, LoaderError> {
    let failed = |reason: String| LoaderError::Download {
        url: url.to_string(),
        reason,
    };
    let offset = fs::metadata(partial).map(|meta| meta.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let response = request.call().map_err(|error| failed(describe(&error)))?;
    let status = response.status().as_u16();

    let (append, total) = match status {
        200 => (false, content_length(&response)),
        206 => match content_range(&response) {
            Some((start, total)) if start == offset => (true, total),
            other => {
                // The server sent a range other than the one asked for: start over.
                tracing::warn!(url, offset, range = ?other, "unexpected Content-Range, restarting");
                fs::remove_file(partial).map_err(io_error(partial))?;
                return Ok(Transfer::Broken(
                    "server sent an unexpected range".to_string(),
                ));
            }
        },
        // The partial file already contains every byte (or more), so the MD5 check decides.
        416 if offset > 0 => return Ok(Transfer::Complete),
        // Server-side failures are often transient, so they count as a broken transfer.
        500..=599 => return Ok(Transfer::Broken(format!("server answered HTTP {status}"))),
        _ => return Err(failed(format!("server answered HTTP {status}"))),
    };
    if offset > 0 && !append {
        tracing::info!(
            url,
            offset,
            "server ignored the range request, restarting from byte 0"
        );
    } else if append {
        tracing::info!(url, offset, "resuming download");
    }

    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(partial)
        .map_err(io_error(partial))?;
    let mut body = response.into_body().into_reader();
    let start = if append { offset } else { 0 };
    let copied = copy_body(&mut body, &mut file, start, total);
    file.flush().map_err(io_error(partial))?;
    let size = fs::metadata(partial).map_err(io_error(partial))?.len();
    match copied {
        Err(CopyError::Write(error)) => Err(LoaderError::Io {
            path: partial.to_path_buf(),
            source: error,
        }),
        Err(CopyError::Read(error)) => Ok(Transfer::Broken(format!("{error} after {size} bytes"))),
        Ok(()) => match total {
            Some(total) if size < total => {
                Ok(Transfer::Broken(format!("got {size} of {total} bytes")))
            }
            _ => Ok(Transfer::Complete),
        },
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies the body, telling network failures (resumable) from disk failures (fatal), and
/// logs progress every tenth of `total` bytes when the size is known.
fn copy_body(
    body: &mut impl Read,
    file: &mut File,
    start: u64,
    total: Option<u64>,
) -> Result<(), CopyError> {
    let mut buffer = vec![0u8; 1 << 16];
    let mut written = start;
    let step = total.map_or(u64::MAX, |total| (total / 10).max(1));
    let mut next_report = (start / step + 1).saturating_mul(step);
    loop {
        let read = match body.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(CopyError::Read(error)),
        };
        file.write_all(&buffer[..read]).map_err(CopyError::Write)?;
        written += read as u64;
        if written >= next_report {
            let total = total.unwrap_or(written);
            let percent = 100 * written / total.max(1);
            tracing::info!(written, total, "downloaded {percent}%");
            next_report = next_report.saturating_add(step);
        }
    }
}

fn content_length(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Start and total size from `Content-Range: bytes START-END/TOTAL`.
fn content_range(response: &ureq::http::Response<ureq::Body>) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get("content-range")?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// Words a request failure so that an offline machine is recognisable.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::HostNotFound => "host not found (no network or DNS?)".to_string(),
        ureq::Error::ConnectionFailed => "connection failed (no network?)".to_string(),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({io})")
        }
        ureq::Error::Timeout(_) => format!("{error} (no network?)"),
        other => other.to_string(),
    }
}

/// MD5 of a file, lowercase hex.
pub(crate) fn md5_hex(path: &Path) -> Result<String, LoaderError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
