//! CIFAR-10 and CIFAR-100 in the official binary layout.
//!
//! A record is the label byte (CIFAR-100: coarse label byte, then fine label byte) followed by
//! 3072 pixel bytes: the red, green and blue planes of 32x32, each row-major. Records are
//! turned into interleaved HWC on reading. The files come from a directory or are streamed out
//! of the official `.tar.gz` without unpacking it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::read::GzDecoder;

use crate::dataset::{Dataset, Part};
use crate::download::{self, ArchiveSpec};
use crate::error::{LoaderError, io_error};

/// Side of a CIFAR image in pixels.
const SIDE: usize = 32;
/// Pixels of one colour plane.
const PLANE: usize = SIDE * SIDE;

/// One of the two CIFAR datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CifarKind {
    /// 10 classes, 5 training batches of 10 000 images, 3073-byte records.
    Ten,
    /// 100 fine classes, one training file of 50 000 images, 3074-byte records.
    Hundred,
}

impl CifarKind {
    pub(crate) fn display_name(self) -> &'static str {
        match self {
            Self::Ten => "CIFAR-10",
            Self::Hundred => "CIFAR-100",
        }
    }

    fn short_name(self) -> &'static str {
        match self {
            Self::Ten => "cifar10",
            Self::Hundred => "cifar100",
        }
    }

    fn num_classes(self) -> usize {
        match self {
            Self::Ten => 10,
            Self::Hundred => 100,
        }
    }

    /// Label bytes before the pixels of each record.
    fn label_bytes(self) -> usize {
        match self {
            Self::Ten => 1,
            Self::Hundred => 2,
        }
    }

    fn record_bytes(self) -> usize {
        self.label_bytes() + 3 * PLANE
    }

    /// Returns the subdirectory the official archive unpacks into.
    fn subdir(self) -> &'static str {
        match self {
            Self::Ten => "cifar-10-batches-bin",
            Self::Hundred => "cifar-100-binary",
        }
    }

    fn files(self, part: Part) -> &'static [&'static str] {
        match (self, part) {
            (Self::Ten, Part::Train) => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            (Self::Ten, Part::Test) => &["test_batch.bin"],
            (Self::Hundred, Part::Train) => &["train.bin"],
            (Self::Hundred, Part::Test) => &["test.bin"],
        }
    }

    fn names_file(self) -> &'static str {
        match self {
            Self::Ten => "batches.meta.txt",
            Self::Hundred => "fine_label_names.txt",
        }
    }

    /// Returns the official binary archive and the MD5 published next to it on the CIFAR
    /// page.
    pub(crate) fn archive(self) -> ArchiveSpec {
        match self {
            Self::Ten => ArchiveSpec {
                file_name: "cifar-10-binary.tar.gz",
                md5: "c32a1d4ab5d03f1284b67883e8d87530",
            },
            Self::Hundred => ArchiveSpec {
                file_name: "cifar-100-binary.tar.gz",
                md5: "03b5dce01913d631647c71ecec9e9cb8",
            },
        }
    }
}

/// Location of the binary files of a CIFAR dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A directory holding the `.bin` files.
    Dir(PathBuf),
    /// An official `.tar.gz`.
    Archive(PathBuf),
}

/// Reads `part` of a CIFAR dataset from `root`, downloading the official archive into the
/// cache first when `root` does not exist and `download` is set.
pub(crate) fn load(
    kind: CifarKind,
    root: &Path,
    download: bool,
    base_url: &str,
    part: Part,
) -> Result<Dataset, LoaderError> {
    let fetch = || {
        let cache = download::cache_dir()?;
        download::ensure_archive(base_url, &kind.archive(), &cache)
    };
    read_source(kind, &resolve(kind, root, download, fetch)?, part)
}

/// Picks the source: files under `root` when it exists, else the archive `fetch` returns when
/// downloading is allowed.
pub(crate) fn resolve(
    kind: CifarKind,
    root: &Path,
    download: bool,
    fetch: impl FnOnce() -> Result<PathBuf, LoaderError>,
) -> Result<Source, LoaderError> {
    if root.exists() {
        Ok(locate(kind, root))
    } else if download {
        tracing::info!(root = %root.display(), "dataset root not found, using the download cache");
        Ok(Source::Archive(fetch()?))
    } else {
        Err(LoaderError::RootNotFound {
            dataset: kind.display_name(),
            path: root.to_path_buf(),
        })
    }
}

/// Finds the files under an existing `root`: the archive itself, the official subdirectory,
/// the directory, or an official archive lying in the directory, in that order. Any other file
/// given as `root` is searched like a directory, so the error names the files expected.
pub(crate) fn locate(kind: CifarKind, root: &Path) -> Source {
    let name = root.file_name().unwrap_or_default().to_string_lossy();
    if root.is_file() && (name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Source::Archive(root.to_path_buf());
    }
    let subdir = root.join(kind.subdir());
    if subdir.is_dir() {
        return Source::Dir(subdir);
    }
    let archive = root.join(kind.archive().file_name);
    let has_batches = kind
        .files(Part::Test)
        .iter()
        .chain(kind.files(Part::Train))
        .any(|name| root.join(name).is_file());
    if !has_batches && archive.is_file() {
        return Source::Archive(archive);
    }
    Source::Dir(root.to_path_buf())
}

/// Reads `part` from `source`.
pub(crate) fn read_source(
    kind: CifarKind,
    source: &Source,
    part: Part,
) -> Result<Dataset, LoaderError> {
    let started = Instant::now();
    let (location, files) = match source {
        Source::Dir(dir) => (dir, read_dir_files(kind, dir, part)?),
        Source::Archive(archive) => (archive, read_archive_files(kind, archive, part)?),
    };
    let (batches, names) = files;
    let expected = kind.files(part);
    if batches.is_empty() {
        return Err(LoaderError::MissingFiles {
            dataset: kind.display_name(),
            path: location.clone(),
            expected: expected.join(", "),
        });
    }

    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (path, bytes) in &batches {
        append_records(kind, path, bytes, &mut images, &mut labels)?;
    }
    let class_names = match names {
        Some((path, text)) => parse_names(&path, &text, kind.num_classes())?,
        None => {
            tracing::warn!(
                file = kind.names_file(),
                location = %location.display(),
                "class names file not found, naming classes by number"
            );
            (0..kind.num_classes())
                .map(|class| format!("class {class}"))
                .collect()
        }
    };

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        dataset = kind.display_name(),
        part = part.name(),
        location = %location.display(),
        images = labels.len(),
        files = batches.len(),
        expected_files = expected.len(),
        images_per_second = (labels.len() as f64 / seconds.max(1e-9)) as u64,
        "found {} images in {} of {} {} files",
        labels.len(),
        batches.len(),
        expected.len(),
        part.name(),
    );
    Ok(Dataset {
        name: kind.short_name().to_string(),
        class_names,
        height: SIDE as u32,
        width: SIDE as u32,
        images,
        labels,
    })
}

/// Batch files found, each with its contents, and the class names file if present.
type Files = (Vec<(PathBuf, Vec<u8>)>, Option<(PathBuf, String)>);

fn read_dir_files(kind: CifarKind, dir: &Path, part: Part) -> Result<Files, LoaderError> {
    let mut batches = Vec::new();
    for name in kind.files(part) {
        let path = dir.join(name);
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(io_error(&path))?;
            batches.push((path, bytes));
        } else {
            tracing::debug!(path = %path.display(), "batch file not present");
        }
    }
    let names_path = dir.join(kind.names_file());
    let names = if names_path.is_file() {
        let text = std::fs::read_to_string(&names_path).map_err(io_error(&names_path))?;
        Some((names_path, text))
    } else {
        None
    };
    Ok((batches, names))
}

/// Streams the archive once and keeps the members `part` needs, whatever directory they sit
/// in inside the archive.
fn read_archive_files(kind: CifarKind, archive: &Path, part: Part) -> Result<Files, LoaderError> {
    let invalid = |reason: String| LoaderError::Archive {
        path: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(io_error(archive))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let requested = kind.files(part);

    let mut members: HashMap<String, Vec<u8>> = HashMap::new();
    let entries = tar.entries().map_err(|error| invalid(error.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| invalid(error.to_string()))?;
        let path = entry.path().map_err(|error| invalid(error.to_string()))?;
        let Some(name) = path
            .file_name()
            .and_then(|name| name.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        if !requested.contains(&name.as_str()) && name != kind.names_file() {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|error| invalid(format!("{name}: {error}")))?;
        members.insert(name, bytes);
    }

    let member_path = |name: &str| archive.join(name);
    let batches = requested
        .iter()
        .filter_map(|name| {
            members
                .remove(*name)
                .map(|bytes| (member_path(name), bytes))
        })
        .collect();
    let names = match members.remove(kind.names_file()) {
        Some(bytes) => {
            let path = member_path(kind.names_file());
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid(format!("{}: not UTF-8 text", kind.names_file())))?;
            Some((path, text))
        }
        None => None,
    };
    Ok((batches, names))
}

/// Checks and decodes the records of one batch file into HWC images and labels.
fn append_records(
    kind: CifarKind,
    path: &Path,
    bytes: &[u8],
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), LoaderError> {
    let record_bytes = kind.record_bytes();
    if !bytes.len().is_multiple_of(record_bytes) {
        return Err(LoaderError::RecordSize {
            dataset: kind.display_name(),
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            record: record_bytes,
        });
    }
    let count = bytes.len() / record_bytes;
    images.reserve(count * 3 * PLANE);
    labels.reserve(count);

    for (number, record) in bytes.chunks_exact(record_bytes).enumerate() {
        // CIFAR-100 keeps the coarse label first; the fine label is the last label byte.
        let label = u32::from(record[kind.label_bytes() - 1]);
        if label as usize >= kind.num_classes() {
            return Err(LoaderError::LabelOutOfRange {
                path: path.to_path_buf(),
                record: number,
                label,
                num_classes: kind.num_classes(),
            });
        }
        labels.push(label);

        let pixels = &record[kind.label_bytes()..];
        let (red, rest) = pixels.split_at(PLANE);
        let (green, blue) = rest.split_at(PLANE);
        let start = images.len();
        images.resize(start + 3 * PLANE, 0);
        for (index, rgb) in images[start..].chunks_exact_mut(3).enumerate() {
            rgb[0] = red[index];
            rgb[1] = green[index];
            rgb[2] = blue[index];
        }
    }
    Ok(())
}

/// Parses a names file: one class name a line, blank lines ignored.
fn parse_names(path: &Path, text: &str, expected: usize) -> Result<Vec<String>, LoaderError> {
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if names.len() != expected {
        return Err(LoaderError::ClassNames {
            path: path.to_path_buf(),
            found: names.len(),
            expected,
        });
    }
    Ok(names)
}

#[cfg(test)]
#[path = "cifar_tests.rs"]
mod tests;
