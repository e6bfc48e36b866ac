//! Errors of the loader: each names the value or path at fault and what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong while reading a dataset, drawing or loading the split, or
/// downloading an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// The dataset root does not exist and downloading is switched off.
    #[error(
        "{dataset} root {path} not found: pass --data DIR with the extracted binary batches or \
         the official .tar.gz, or set `download: true`"
    )]
    RootNotFound {
        /// Dataset name, for example `CIFAR-10`.
        dataset: &'static str,
        /// The configured root.
        path: PathBuf,
    },

    /// The root exists but contains none of the files the dataset needs.
    #[error(
        "{path}: no {dataset} files found (expected {expected}); point --data at the folder that contains them"
    )]
    MissingFiles {
        /// Dataset name.
        dataset: &'static str,
        /// The directory or archive that was searched.
        path: PathBuf,
        /// The file names looked for.
        expected: String,
    },

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A binary batch whose size is not a multiple of the record size.
    #[error(
        "{path}: size {size} bytes is not a whole number of {record}-byte records; the file is \
         truncated or not a {dataset} binary batch, so download it again"
    )]
    RecordSize {
        /// Dataset name.
        dataset: &'static str,
        /// The batch file (inside an archive: `archive.tar.gz/member`).
        path: PathBuf,
        /// File size in bytes.
        size: u64,
        /// Record size in bytes: 3073 for CIFAR-10, 3074 for CIFAR-100.
        record: usize,
    },

    /// A record whose label is not a valid class.
    #[error(
        "{path}: record {record} has label {label}, outside the {num_classes} classes \
         0..={max}; the file is corrupt or belongs to another dataset",
        max = num_classes - 1
    )]
    LabelOutOfRange {
        /// The batch file.
        path: PathBuf,
        /// Record number within the file, from 0.
        record: usize,
        /// The label found.
        label: u32,
        /// Number of classes of the dataset.
        num_classes: usize,
    },

    /// A class-names file whose line count does not match the class count.
    #[error(
        "{path}: {found} class names, expected {expected}; replace the file with the official one"
    )]
    ClassNames {
        /// The names file.
        path: PathBuf,
        /// Non-empty lines found.
        found: usize,
        /// Classes of the dataset.
        expected: usize,
    },

    /// A `.tar.gz` that cannot be read.
    #[error("{path}: invalid archive: {reason}; delete it and download it again")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    /// The archive server could not be reached or the transfer failed.
    #[error(
        "download of {url} failed: {reason}; without network access, fetch the archive \
         elsewhere and pass its folder with --data DIR"
    )]
    Download {
        /// The archive URL.
        url: String,
        /// What failed.
        reason: String,
    },

    /// A downloaded archive whose MD5 differs from the published one.
    #[error(
        "{url}: MD5 {actual} does not match the published {expected}; the download is corrupt \
         and was deleted, so retry, or check the `base_url` setting"
    )]
    Checksum {
        /// The archive URL.
        url: String,
        /// Published MD5, lowercase hex.
        expected: String,
        /// MD5 of the received bytes.
        actual: String,
    },

    /// An image file that does not decode.
    #[error("{path}: cannot decode image: {source}; remove or replace the file")]
    ImageDecode {
        /// The image.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },

    /// An ImageFolder class directory without any image.
    #[error(
        "{path}: class folder holds no .png, .jpg or .jpeg image; add images or remove the folder"
    )]
    EmptyClass {
        /// The class directory.
        path: PathBuf,
    },

    /// An ImageFolder root that does not exist.
    #[error("ImageFolder root {path} not found: fix `root` or pass --data DIR")]
    FolderNotFound {
        /// The configured root.
        path: PathBuf,
    },

    /// A test class folder with no counterpart among the training classes.
    #[error(
        "{path}: class folder has no counterpart in the training root {train_root}; test classes \
         must be a subset of the training classes"
    )]
    UnknownClass {
        /// The test class folder.
        path: PathBuf,
        /// The training root.
        train_root: PathBuf,
    },

    /// An ImageFolder root without class directories.
    #[error("{path}: no class folders found; ImageFolder expects ROOT/<class>/<image>.png|jpg")]
    NoClasses {
        /// The root.
        path: PathBuf,
    },

    /// A configured dataset has no test part.
    #[error("{dataset} has no test set; set `test_root` to a folder laid out like `root`")]
    NoTestSet {
        /// Dataset name.
        dataset: &'static str,
    },

    /// `num_labeled` does not split evenly over the classes.
    #[error(
        "num_labeled {num_labeled} is not divisible by the {num_classes} classes; use a multiple \
         of {num_classes}"
    )]
    NumLabeledNotDivisible {
        /// The configured count.
        num_labeled: usize,
        /// Classes of the dataset.
        num_classes: usize,
    },

    /// A class contains fewer images than the split takes from it.
    #[error(
        "num_labeled {num_labeled} takes {per_class} images per class, but class {class} \
         ({name}) has only {available}; lower num_labeled to at most {max}"
    )]
    ClassTooSmall {
        /// The configured count.
        num_labeled: usize,
        /// Images the split takes from each class.
        per_class: usize,
        /// The short class.
        class: usize,
        /// Its name.
        name: String,
        /// Its image count.
        available: usize,
        /// The largest valid `num_labeled`.
        max: usize,
    },

    /// A setting outside its valid range.
    #[error("invalid loader setting {field} = {value}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// Reason it is invalid and the accepted values.
        reason: String,
    },

    /// A `split.json` that does not parse.
    #[error("{path}: invalid split file: {source}; delete it to draw a new split")]
    SplitParse {
        /// The split file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// A split handed to the loader that does not fit the dataset or the settings.
    #[error("labeled split does not fit the dataset or the settings: {reason}")]
    SplitUnfit {
        /// Description of the mismatch.
        reason: String,
    },

    /// A `split.json` that does not fit the dataset or the settings.
    #[error(
        "{path}: {reason}; delete it to draw a new split, or use the settings it was drawn with"
    )]
    SplitMismatch {
        /// The split file.
        path: PathBuf,
        /// Description of the mismatch.
        reason: String,
    },
}

/// Wraps an I/O error with the path involved.
pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LoaderError {
    let path = path.into();
    move |source| LoaderError::Io { path, source }
}
