//! The loader's log of what it found in a CIFAR directory.
//!
//! This test has a binary of its own so that it can install a global subscriber. Tracing caches,
//! per callsite, whether any subscriber is interested, and a test thread running beside a
//! scoped subscriber can cache "not interested" for the callsites this test reads back.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ccssl_loader::{DatasetConfig, Part, load_dataset};

/// A `Write` that appends to a shared buffer, for reading log output back.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// CIFAR-10 records (one label byte, then 3 x 32 x 32 pixel bytes) with the given labels.
fn cifar10_records(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &label in labels {
        bytes.push(label);
        bytes.extend((0..3 * 1024).map(|pixel| (pixel % 251) as u8));
    }
    bytes
}

#[test]
fn log_reports_images_found() {
    let dir = std::env::temp_dir().join(format!("ccssl-cifar-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data_batch_2.bin"), cifar10_records(&[3, 0, 9])).unwrap();
    std::fs::write(dir.join("data_batch_5.bin"), cifar10_records(&[5])).unwrap();

    let capture = LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dataset = load_dataset(&DatasetConfig::cifar10_local(&dir), Part::Train);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(dataset.unwrap().labels, [3, 0, 9, 5]);

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("found 4 images in 2 of 5 train files"),
        "{log}"
    );
    assert!(log.contains("class names file not found"), "{log}");
}
