//! The owned RGB image every op works on.

use crate::AugmentError;

/// An 8-bit RGB image stored row by row, pixels interleaved (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps HWC bytes, checking that `data` has exactly `width * height * 3` bytes.
    pub fn from_vec(width: usize, height: usize, data: Vec<u8>) -> Result<Self, AugmentError> {
        let expected = width * height * 3;
        if data.len() != expected {
            return Err(AugmentError::BufferSize {
                len: data.len(),
                width,
                height,
                expected,
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Copies HWC bytes into a new image, checking their length as [`RgbImage::from_vec`] does.
    pub fn from_slice(width: usize, height: usize, data: &[u8]) -> Result<Self, AugmentError> {
        Self::from_vec(width, height, data.to_vec())
    }

    /// Creates a black image.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Returns the HWC bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Returns the HWC bytes for writing.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Consumes the image, returning its HWC bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }

    /// Byte offset of pixel (`x`, `y`).
    #[inline]
    pub(crate) fn offset(&self, x: usize, y: usize) -> usize {
        (y * self.width + x) * 3
    }

    /// Returns the RGB value of pixel (`x`, `y`).
    #[inline]
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = self.offset(x, y);
        [self.data[o], self.data[o + 1], self.data[o + 2]]
    }
}
