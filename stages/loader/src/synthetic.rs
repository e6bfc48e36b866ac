//! A generated dataset that a small model can learn, for tests and smoke runs.
//!
//! Class `c` of `K` has a base colour of hue `c / K` and stripes at angle `180° * c / K`.
//! Each image draws its own stripe phase, a brightness gain in [0.85, 1.15) and uniform noise
//! of `±noise` grey levels per channel, all from a ChaCha stream keyed by the data seed, the
//! part and the image index. Image `i` has class `i % K`, so classes are interleaved.

use ccssl_pipe::batch::CHANNELS;
use rand::RngCore;

use crate::config::SyntheticSpec;
use crate::dataset::{Dataset, Part};
use crate::rng::{Domain, below, stream_rng, unit_f64};

/// Stripe period in pixels.
const STRIPE_PERIOD: f64 = 6.0;

/// Generates `part` of the synthetic dataset described by `spec`.
pub fn generate(spec: &SyntheticSpec, part: Part) -> Dataset {
    let (per_class, domain) = match part {
        Part::Train => (spec.train_per_class, Domain::SyntheticTrain),
        Part::Test => (spec.test_per_class, Domain::SyntheticTest),
    };
    let classes = spec.classes.max(1);
    let count = classes * per_class;
    let (height, width) = (spec.height as usize, spec.width as usize);
    let image_bytes = height * width * CHANNELS;

    let mut images = vec![0u8; count * image_bytes];
    let mut labels = Vec::with_capacity(count);
    for (index, pixels) in images.chunks_exact_mut(image_bytes).enumerate() {
        let class = index % classes;
        labels.push(class as u32);
        let mut rng = stream_rng(spec.data_seed, domain, index as u64);
        draw_image(pixels, height, width, class, classes, spec.noise, &mut rng);
    }

    Dataset {
        name: "synthetic".to_string(),
        class_names: (0..classes)
            .map(|class| format!("pattern-{class}"))
            .collect(),
        height: spec.height,
        width: spec.width,
        images,
        labels,
    }
}

fn draw_image(
    pixels: &mut [u8],
    height: usize,
    width: usize,
    class: usize,
    classes: usize,
    noise: u8,
    rng: &mut impl RngCore,
) {
    let colour = class_colour(class, classes);
    // NOTE: cos and sin come from the platform's libm, which may differ in the last bit
    // between platforms. Such a difference can, rarely, move a pixel by one grey level.
    // Everything else here is exact integer or IEEE arithmetic.
    let angle = std::f64::consts::PI * class as f64 / classes as f64;
    let (dx, dy) = (angle.cos() / STRIPE_PERIOD, angle.sin() / STRIPE_PERIOD);
    let phase = unit_f64(rng);
    let gain = 0.85 + 0.3 * unit_f64(rng);
    let spread = 2 * u64::from(noise) + 1;

    for y in 0..height {
        for x in 0..width {
            let t = (x as f64 * dx + y as f64 * dy + phase).rem_euclid(1.0);
            // Triangle wave in [0, 1]: light stripe centres at t = 0.5.
            let stripe = 1.0 - (2.0 * t - 1.0).abs();
            let shade = gain * (0.45 + 0.55 * stripe);
            let offset = (y * width + x) * CHANNELS;
            for channel in 0..CHANNELS {
                let jitter = below(rng, spread) as f64 - f64::from(noise);
                let value = colour[channel] * shade + jitter;
                pixels[offset + channel] = value.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Base colour of `class`: hue `class / classes` at saturation 0.75 and value 230, as RGB.
fn class_colour(class: usize, classes: usize) -> [f64; 3] {
    let hue = 6.0 * class as f64 / classes as f64;
    let sector = hue.floor();
    let fraction = hue - sector;
    let (value, saturation) = (230.0, 0.75);
    let low = value * (1.0 - saturation);
    let falling = value * (1.0 - saturation * fraction);
    let rising = value * (1.0 - saturation * (1.0 - fraction));
    match sector as u32 {
        0 => [value, rising, low],
        1 => [falling, value, low],
        2 => [low, value, rising],
        3 => [low, falling, value],
        4 => [rising, low, value],
        _ => [value, low, falling],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_spec() -> SyntheticSpec {
        SyntheticSpec {
            classes: 4,
            train_per_class: 6,
            test_per_class: 3,
            ..Default::default()
        }
    }

    #[test]
    fn generate_is_deterministic_per_data_seed() {
        let spec = small_spec();
        assert_eq!(generate(&spec, Part::Train), generate(&spec, Part::Train));

        let other = SyntheticSpec {
            data_seed: 1,
            ..small_spec()
        };
        assert_ne!(
            generate(&spec, Part::Train).images,
            generate(&other, Part::Train).images
        );
    }

    #[test]
    fn generate_sizes_and_labels() {
        let train = generate(&small_spec(), Part::Train);
        assert_eq!(train.len(), 24);
        assert_eq!(train.images.len(), 24 * 32 * 32 * 3);
        assert_eq!(train.class_counts(), vec![6, 6, 6, 6]);
        assert_eq!(&train.labels[..5], &[0, 1, 2, 3, 0]);

        let test = generate(&small_spec(), Part::Test);
        assert_eq!(test.len(), 12);
        assert_ne!(test.image(0), train.image(0));
    }

    /// Nearest-class-mean on mean colour separates the classes: the data carries a class
    /// signal that even a linear model picks up.
    #[test]
    fn classes_separate_by_mean_colour() {
        let spec = SyntheticSpec {
            classes: 10,
            train_per_class: 20,
            ..Default::default()
        };
        let train = generate(&spec, Part::Train);
        let mean_colour = |index: usize| {
            let mut sum = [0f64; 3];
            for pixel in train.image(index).chunks_exact(3) {
                for channel in 0..3 {
                    sum[channel] += f64::from(pixel[channel]);
                }
            }
            sum.map(|value| value / 1024.0)
        };
        let mut centres = vec![[0f64; 3]; 10];
        for index in 0..train.len() {
            let colour = mean_colour(index);
            let class = train.labels[index] as usize;
            for channel in 0..3 {
                centres[class][channel] += colour[channel] / 20.0;
            }
        }
        let mut correct = 0;
        for index in 0..train.len() {
            let colour = mean_colour(index);
            let distance = |centre: &[f64; 3]| -> f64 {
                centre
                    .iter()
                    .zip(colour)
                    .map(|(c, v)| (c - v).powi(2))
                    .sum()
            };
            let nearest = (0..10)
                .min_by(|&a, &b| distance(&centres[a]).total_cmp(&distance(&centres[b])))
                .unwrap();
            correct += usize::from(nearest == train.labels[index] as usize);
        }
        assert!(correct >= 180, "nearest mean got {correct} of 200");
    }

    #[test]
    fn class_colours_are_distinct() {
        let colours: Vec<[f64; 3]> = (0..10).map(|class| class_colour(class, 10)).collect();
        for a in 0..10 {
            for b in a + 1..10 {
                let distance: f64 = colours[a]
                    .iter()
                    .zip(&colours[b])
                    .map(|(x, y)| (x - y).abs())
                    .sum();
                assert!(distance > 40.0, "classes {a} and {b}: {distance}");
            }
        }
    }
}
