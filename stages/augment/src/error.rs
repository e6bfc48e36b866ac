//! Errors of the augmenter.

/// Error from augmenting a batch or validating a configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum AugmentError {
    /// A pixel buffer whose length does not match its stated size.
    #[error(
        "image buffer of {len} bytes does not match {width}x{height} RGB ({expected} bytes); \
         pass HWC u8 data with width * height * 3 bytes"
    )]
    BufferSize {
        /// Buffer length in bytes.
        len: usize,
        /// Stated width in pixels.
        width: usize,
        /// Stated height in pixels.
        height: usize,
        /// Expected length in bytes.
        expected: usize,
    },
    /// A batch whose parts disagree in length.
    #[error("invalid batch {seq}: {reason}")]
    Batch {
        /// Sequence number of the batch.
        seq: u64,
        /// Description of the inconsistency.
        reason: String,
    },
    /// A configuration value outside its accepted range.
    #[error("invalid augment setting `{field}` = {value}: {accepted}")]
    Config {
        /// Dotted path of the setting, e.g. `strong.m`.
        field: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// The accepted range or values.
        accepted: &'static str,
    },
}
