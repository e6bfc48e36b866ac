//! ImageFolder: `root/<class>/<image>.png|jpg|jpeg`, as torchvision's `ImageFolder` lays it out.
//!
//! Classes are the subfolders of the training root sorted by name (byte order), so a class's
//! label is its rank. Images within a class are sorted by file name. Hidden entries (names
//! starting with `.`) and files with other extensions are skipped. Every image is converted to
//! RGB and resized to the configured size with the configured filter.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ccssl_pipe::batch::CHANNELS;
use image::imageops::FilterType;

use crate::config::ResizeFilter;
use crate::dataset::{Dataset, Part};
use crate::error::{LoaderError, io_error};

/// Extensions read, compared without case.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Output size and filter of an ImageFolder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resize {
    pub(crate) height: u32,
    pub(crate) width: u32,
    pub(crate) filter: ResizeFilter,
}

/// Reads `part`: the training root, or the test root with the training root's class list.
pub(crate) fn load(
    root: &Path,
    test_root: Option<&Path>,
    resize: Resize,
    part: Part,
) -> Result<Dataset, LoaderError> {
    let started = Instant::now();
    let classes = class_folders(root)?;
    if classes.is_empty() {
        return Err(LoaderError::NoClasses {
            path: root.to_path_buf(),
        });
    }
    let class_names: Vec<String> = classes
        .iter()
        .map(|name| name.to_string_lossy().into_owned())
        .collect();

    let (location, files) = match part {
        Part::Train => (root, train_files(root, &classes)?),
        Part::Test => {
            let test_root = test_root.ok_or(LoaderError::NoTestSet {
                dataset: "ImageFolder",
            })?;
            (test_root, test_files(root, test_root, &classes)?)
        }
    };
    let images = decode_all(&files, resize)?;
    let labels = files.iter().map(|(_, label)| *label).collect::<Vec<u32>>();

    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        root = %location.display(),
        part = part.name(),
        images = labels.len(),
        classes = class_names.len(),
        images_per_second = (labels.len() as f64 / seconds.max(1e-9)) as u64,
        "found {} images in {} classes",
        labels.len(),
        class_names.len(),
    );
    Ok(Dataset {
        name: "imagefolder".to_string(),
        class_names,
        height: resize.height,
        width: resize.width,
        images,
        labels,
    })
}

/// Names of the visible subdirectories of `root`, sorted.
fn class_folders(root: &Path) -> Result<Vec<std::ffi::OsString>, LoaderError> {
    if !root.is_dir() {
        return Err(LoaderError::FolderNotFound {
            path: root.to_path_buf(),
        });
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_error(root))? {
        let entry = entry.map_err(io_error(root))?;
        let name = entry.file_name();
        if !is_hidden(&name) && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Image files of every class, each with its label; an empty class is an error.
fn train_files(
    root: &Path,
    classes: &[std::ffi::OsString],
) -> Result<Vec<(PathBuf, u32)>, LoaderError> {
    let mut files = Vec::new();
    for (label, name) in classes.iter().enumerate() {
        let dir = root.join(name);
        let images = image_files(&dir)?;
        if images.is_empty() {
            return Err(LoaderError::EmptyClass { path: dir });
        }
        files.extend(images.into_iter().map(|path| (path, label as u32)));
    }
    Ok(files)
}

/// Image files under the test root, labelled by the training class of the same name. A class
/// may be missing from the test root, but an empty test class folder is an error.
fn test_files(
    train_root: &Path,
    test_root: &Path,
    classes: &[std::ffi::OsString],
) -> Result<Vec<(PathBuf, u32)>, LoaderError> {
    let test_classes = class_folders(test_root)?;
    if test_classes.is_empty() {
        return Err(LoaderError::NoClasses {
            path: test_root.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    for name in test_classes {
        let dir = test_root.join(&name);
        let Some(label) = classes.iter().position(|class| *class == name) else {
            return Err(LoaderError::UnknownClass {
                path: dir,
                train_root: train_root.to_path_buf(),
            });
        };
        let images = image_files(&dir)?;
        if images.is_empty() {
            return Err(LoaderError::EmptyClass { path: dir });
        }
        files.extend(images.into_iter().map(|path| (path, label as u32)));
    }
    files.sort_by_key(|(_, label)| *label);
    Ok(files)
}

/// Visible files of `dir` with an image extension, sorted by name.
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, LoaderError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let name = path.file_name().unwrap_or_default();
        let extension = path.extension().and_then(|ext| ext.to_str()).unwrap_or("");
        let is_image = EXTENSIONS
            .iter()
            .any(|known| extension.eq_ignore_ascii_case(known));
        if is_image && !is_hidden(name) && path.is_file() {
            files.push(path);
        } else {
            tracing::debug!(path = %path.display(), "skipping, not a .png/.jpg/.jpeg file");
        }
    }
    files.sort();
    Ok(files)
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Decodes and resizes every file, on up to 8 threads. Output order is file order, and the
/// error reported is that of the first bad file in that order, whatever the thread count.
fn decode_all(files: &[(PathBuf, u32)], resize: Resize) -> Result<Vec<u8>, LoaderError> {
    let image_bytes = resize.height as usize * resize.width as usize * CHANNELS;
    let mut images = vec![0u8; files.len() * image_bytes];
    let threads = std::thread::available_parallelism()
        .map_or(1, |count| count.get())
        .min(8);
    let per_thread = files.len().div_ceil(threads).max(1);

    let results: Vec<Result<(), LoaderError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .zip(images.chunks_mut(per_thread * image_bytes))
            .map(|(files, out)| {
                scope.spawn(move || {
                    for ((path, _), pixels) in files.iter().zip(out.chunks_exact_mut(image_bytes)) {
                        decode_into(path, resize, pixels)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    Ok(images)
}

/// Decodes one PNG or JPEG file and resizes it to `height x width` with `filter`, as an
/// ImageFolder dataset does with each of its images. Returns `u8` RGB pixels in HWC order.
///
/// # Errors
/// [`LoaderError::Io`] when the file cannot be read, [`LoaderError::ImageDecode`] when it is
/// not a decodable image; both name the path.
pub fn read_image_resized(
    path: &Path,
    height: u32,
    width: u32,
    filter: ResizeFilter,
) -> Result<Vec<u8>, LoaderError> {
    let resize = Resize {
        height,
        width,
        filter,
    };
    let mut pixels = vec![0u8; height as usize * width as usize * CHANNELS];
    decode_into(path, resize, &mut pixels)?;
    Ok(pixels)
}

fn decode_into(path: &Path, resize: Resize, pixels: &mut [u8]) -> Result<(), LoaderError> {
    let decode_error = |source| LoaderError::ImageDecode {
        path: path.to_path_buf(),
        source,
    };
    let reader = image::ImageReader::open(path)
        .and_then(|reader| reader.with_guessed_format())
        .map_err(io_error(path))?;
    let mut image = reader.decode().map_err(decode_error)?.to_rgb8();
    if image.dimensions() != (resize.width, resize.height) {
        image = image::imageops::resize(
            &image,
            resize.width,
            resize.height,
            filter_type(resize.filter),
        );
    }
    pixels.copy_from_slice(image.as_raw());
    Ok(())
}

fn filter_type(filter: ResizeFilter) -> FilterType {
    match filter {
        ResizeFilter::Nearest => FilterType::Nearest,
        ResizeFilter::Bilinear => FilterType::Triangle,
        ResizeFilter::Bicubic => FilterType::CatmullRom,
        ResizeFilter::Lanczos3 => FilterType::Lanczos3,
    }
}

#[cfg(test)]
#[path = "folder_tests.rs"]
mod tests;
