//! Conversion of `u8` HWC views into the model's normalised `f32` NCHW input.

use crate::ViewNorm;

/// Per-channel lookup table from a `u8` value to its normalised `f32`, so converting a pixel
/// costs one load instead of a division.
pub(crate) struct ViewTable {
    values: [[f32; 256]; 3],
}

impl ViewTable {
    pub(crate) fn new(norm: ViewNorm) -> Self {
        let (mean, std) = match norm {
            ViewNorm::Unit => ([0.0; 3], [1.0; 3]),
            ViewNorm::MeanStd { mean, std } => (mean, std),
        };
        let mut values = [[0.0f32; 256]; 3];
        for (c, table) in values.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                // Same order of operations as torchvision: ToTensor divides by 255, then
                // Normalize subtracts the mean and divides by the standard deviation.
                *out = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        Self { values }
    }

    /// Writes `images` (`count` HWC images of `height x width`) as NCHW into `out`, which has
    /// exactly `count * 3 * height * width` values.
    pub(crate) fn write_nchw(&self, images: &[u8], height: usize, width: usize, out: &mut [f32]) {
        let plane = height * width;
        for (image, dst) in images
            .chunks_exact(plane * 3)
            .zip(out.chunks_exact_mut(plane * 3))
        {
            for (p, pixel) in image.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    dst[c * plane + p] = self.values[c][usize::from(pixel[c])];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_view_divides_by_255_and_transposes() {
        // One 1x2 image: pixel 0 = (0, 51, 255), pixel 1 = (255, 102, 0).
        let image = [0u8, 51, 255, 255, 102, 0];
        let mut out = [0.0f32; 6];
        ViewTable::new(ViewNorm::Unit).write_nchw(&image, 1, 2, &mut out);
        assert_eq!(out, [0.0, 1.0, 0.2, 0.4, 1.0, 0.0]);
    }

    #[test]
    fn mean_std_view_standardises_each_channel() {
        let norm = ViewNorm::MeanStd {
            mean: [0.5, 0.0, 1.0],
            std: [0.5, 2.0, 0.25],
        };
        let mut out = [0.0f32; 3];
        ViewTable::new(norm).write_nchw(&[255, 255, 0], 1, 1, &mut out);
        assert_eq!(out, [1.0, 0.5, -4.0]);
    }
}
