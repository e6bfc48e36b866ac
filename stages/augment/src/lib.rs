//! Image augmentation of ccssl: Pillow-compatible image ops and the weak, strong and contrast
//! views that the CCSSL objective (and plain FixMatch) trains on.
//!
//! Ops work on [`RgbImage`] (8-bit RGB, HWC) and reproduce Pillow 13's integer rounding, so
//! they match `PIL.ImageOps`, `PIL.ImageEnhance`, `Image.transform` and torchvision's PIL
//! transforms within one grey level (tests compare against fixtures from
//! `tools/reference/augment_reference.py`). [`augment_batch`] turns a loader batch into the
//! views the step stage consumes; it is a pure function of the batch, the configuration and
//! nothing else. [`stage::run`] runs it as the augment stage of a pipeline.

mod batch;
pub mod color;
mod config;
mod error;
pub mod geometry;
mod image;
pub mod randaugment;
pub mod resample;
pub mod stage;
pub mod views;

pub use batch::{View, augment_batch, augment_image, image_rng};
pub use config::{AugmentConfig, ColorJitterConfig, ContrastConfig, StrongConfig, WeakConfig};
pub use error::AugmentError;
pub use image::RgbImage;
