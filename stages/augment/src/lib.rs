//! Image augmentation of ccssl.
//!
//! Pillow-compatible image ops and the weak, strong and contrast views of the CCSSL objective.
