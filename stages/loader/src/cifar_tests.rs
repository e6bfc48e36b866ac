use super::*;
use crate::testutil::{HttpServer, Reply, TempDir, cifar_records, pattern_pixel, tar_gz};

const CIFAR10_NAMES: &str =
    "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

fn hundred_names() -> String {
    (0..100).map(|class| format!("fine{class}\n")).collect()
}

/// Checks that image `index` contains the HWC form of test record `record`.
fn assert_pattern(dataset: &Dataset, index: usize, record: usize) {
    let image = dataset.image(index);
    for (row, col) in [(0, 0), (0, 31), (17, 5), (31, 31)] {
        for channel in 0..3 {
            let expected = pattern_pixel(record, channel, row * 32 + col);
            assert_eq!(
                image[(row * 32 + col) * 3 + channel],
                expected,
                "image {index} ({row}, {col}) channel {channel}"
            );
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cifar10_directory_with_two_batches() {
    let dir = TempDir::new("cifar10-dir");
    write(
        &dir.path().join("data_batch_1.bin"),
        &cifar_records(&[3, 0, 9], 1, 0),
    );
    write(
        &dir.path().join("data_batch_3.bin"),
        &cifar_records(&[5, 5], 1, 3),
    );
    write(
        &dir.path().join("test_batch.bin"),
        &cifar_records(&[1], 1, 100),
    );
    write(
        &dir.path().join("batches.meta.txt"),
        CIFAR10_NAMES.as_bytes(),
    );

    let train = read_source(
        CifarKind::Ten,
        &locate(CifarKind::Ten, dir.path()),
        Part::Train,
    )
    .unwrap();

    assert_eq!(train.labels, vec![3, 0, 9, 5, 5]);
    assert_eq!(train.images.len(), 5 * 3072);
    for index in 0..5 {
        assert_pattern(&train, index, index);
    }
    assert_eq!(train.class_names[0], "airplane");
    assert_eq!(train.class_names[9], "truck");
    assert_eq!(train.name, "cifar10");

    let test = read_source(
        CifarKind::Ten,
        &locate(CifarKind::Ten, dir.path()),
        Part::Test,
    )
    .unwrap();
    assert_eq!(test.labels, vec![1]);
    assert_pattern(&test, 0, 100);
}

#[test]
fn cifar10_official_subdirectory_is_found() {
    let dir = TempDir::new("cifar10-subdir");
    let sub = dir.path().join("cifar-10-batches-bin");
    write(&sub.join("data_batch_1.bin"), &cifar_records(&[2], 1, 0));

    assert_eq!(locate(CifarKind::Ten, dir.path()), Source::Dir(sub));
}

#[test]
fn cifar10_read_straight_from_archive() {
    let dir = TempDir::new("cifar10-archive");
    let batch = cifar_records(&[4, 7], 1, 0);
    let test = cifar_records(&[8], 1, 50);
    let archive = tar_gz(&[
        (
            "cifar-10-batches-bin/batches.meta.txt",
            CIFAR10_NAMES.as_bytes(),
        ),
        ("cifar-10-batches-bin/data_batch_1.bin", &batch),
        ("cifar-10-batches-bin/test_batch.bin", &test),
        ("cifar-10-batches-bin/readme.html", b"<html></html>"),
    ]);
    let path = dir.path().join("cifar-10-binary.tar.gz");
    write(&path, &archive);

    // The archive given as root, and lying in the root directory.
    for root in [path.clone(), dir.path().to_path_buf()] {
        assert_eq!(locate(CifarKind::Ten, &root), Source::Archive(path.clone()));
    }
    let train = read_source(CifarKind::Ten, &Source::Archive(path.clone()), Part::Train).unwrap();
    assert_eq!(train.labels, vec![4, 7]);
    assert_pattern(&train, 1, 1);
    assert_eq!(train.class_names[4], "deer");

    let test = read_source(CifarKind::Ten, &Source::Archive(path), Part::Test).unwrap();
    assert_eq!(test.labels, vec![8]);
    assert_pattern(&test, 0, 50);
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = TempDir::new("cifar100");
    let sub = dir.path().join("cifar-100-binary");
    write(&sub.join("train.bin"), &cifar_records(&[42, 99, 0], 2, 0));
    write(&sub.join("test.bin"), &cifar_records(&[7], 2, 9));
    write(
        &sub.join("fine_label_names.txt"),
        hundred_names().as_bytes(),
    );
    write(&sub.join("coarse_label_names.txt"), b"coarse0\n");

    let train = read_source(
        CifarKind::Hundred,
        &locate(CifarKind::Hundred, dir.path()),
        Part::Train,
    )
    .unwrap();

    assert_eq!(train.labels, vec![42, 99, 0]);
    assert_pattern(&train, 1, 1);
    assert_eq!(train.num_classes(), 100);
    assert_eq!(train.class_names[42], "fine42");
    assert_eq!(train.name, "cifar100");
}

#[test]
fn missing_names_file_numbers_classes() {
    let dir = TempDir::new("cifar10-no-names");
    write(
        &dir.path().join("test_batch.bin"),
        &cifar_records(&[1], 1, 0),
    );

    let test = read_source(CifarKind::Ten, &Source::Dir(dir.path().into()), Part::Test).unwrap();

    assert_eq!(test.class_names[3], "class 3");
}

#[test]
fn missing_root_without_download_is_an_error() {
    let dir = TempDir::new("cifar10-missing");
    let root = dir.path().join("nowhere");

    let error = resolve(CifarKind::Ten, &root, false, || unreachable!("no download")).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "CIFAR-10 root {} not found: pass --data DIR with the extracted binary batches or the \
             official .tar.gz, or set `download: true`",
            root.display()
        )
    );
}

#[test]
fn directory_without_batches_is_an_error() {
    let dir = TempDir::new("cifar10-empty");
    write(&dir.path().join("notes.txt"), b"nothing here");

    let error = read_source(
        CifarKind::Ten,
        &locate(CifarKind::Ten, dir.path()),
        Part::Train,
    )
    .unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: no CIFAR-10 files found (expected data_batch_1.bin, data_batch_2.bin, \
             data_batch_3.bin, data_batch_4.bin, data_batch_5.bin); point --data at the folder \
             that contains them",
            dir.path().display()
        )
    );
}

#[test]
fn batch_file_as_root_is_an_error() {
    let dir = TempDir::new("cifar10-file-root");
    let path = dir.path().join("data_batch_1.bin");
    write(&path, &cifar_records(&[1], 1, 0));

    let message = read_source(CifarKind::Ten, &locate(CifarKind::Ten, &path), Part::Train)
        .unwrap_err()
        .to_string();

    let expected = format!(
        "{}: no CIFAR-10 files found (expected data_batch_1.bin",
        path.display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn truncated_batch_is_an_error() {
    let dir = TempDir::new("cifar10-truncated");
    let mut bytes = cifar_records(&[1, 2], 1, 0);
    bytes.truncate(6000);
    let path = dir.path().join("data_batch_1.bin");
    write(&path, &bytes);

    let error =
        read_source(CifarKind::Ten, &Source::Dir(dir.path().into()), Part::Train).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: size 6000 bytes is not a whole number of 3073-byte records; the file is \
             truncated or not a CIFAR-10 binary batch, so download it again",
            path.display()
        )
    );
}

#[test]
fn cifar10_file_read_as_cifar100_is_an_error() {
    let dir = TempDir::new("cifar100-wrong-size");
    let path = dir.path().join("train.bin");
    write(&path, &cifar_records(&[1, 2], 1, 0));

    let message = read_source(
        CifarKind::Hundred,
        &Source::Dir(dir.path().into()),
        Part::Train,
    )
    .unwrap_err()
    .to_string();

    assert!(
        message.contains("size 6146 bytes is not a whole number of 3074-byte records"),
        "{message}"
    );
}

#[test]
fn label_outside_classes_is_an_error() {
    let dir = TempDir::new("cifar10-label");
    let path = dir.path().join("test_batch.bin");
    write(&path, &cifar_records(&[0, 1, 10], 1, 0));

    let error =
        read_source(CifarKind::Ten, &Source::Dir(dir.path().into()), Part::Test).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: record 2 has label 10, outside the 10 classes 0..=9; the file is corrupt or \
             belongs to another dataset",
            path.display()
        )
    );
}

#[test]
fn wrong_names_count_is_an_error() {
    let dir = TempDir::new("cifar10-names");
    write(
        &dir.path().join("test_batch.bin"),
        &cifar_records(&[0], 1, 0),
    );
    let names = dir.path().join("batches.meta.txt");
    write(&names, b"airplane\nautomobile\n");

    let error =
        read_source(CifarKind::Ten, &Source::Dir(dir.path().into()), Part::Test).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: 2 class names, expected 10; replace the file with the official one",
            names.display()
        )
    );
}

#[test]
fn corrupt_archive_is_an_error() {
    let dir = TempDir::new("cifar10-bad-archive");
    let path = dir.path().join("cifar-10-binary.tar.gz");
    write(&path, b"this is not gzip");

    let message = read_source(CifarKind::Ten, &Source::Archive(path.clone()), Part::Train)
        .unwrap_err()
        .to_string();

    assert!(
        message.starts_with(&format!("{}: invalid archive: ", path.display())),
        "{message}"
    );
    assert!(
        message.ends_with("delete it and download it again"),
        "{message}"
    );
}

#[test]
fn missing_root_downloads_into_cache() {
    let batch = cifar_records(&[6, 9, 9], 1, 0);
    let archive = tar_gz(&[("cifar-10-batches-bin/data_batch_1.bin", &batch)]);
    let md5 = format!("{:x}", <md5::Md5 as md5::Digest>::digest(&archive));
    let spec = ArchiveSpec {
        file_name: "cifar-10-binary.tar.gz",
        md5: Box::leak(md5.into_boxed_str()),
    };
    let server = HttpServer::start(archive, vec![Reply::Serve]);
    let dir = TempDir::new("cifar10-download");
    let cache = dir.path().join("cache");

    let fetch = || download::ensure_archive(&server.base_url(), &spec, &cache);
    let source = resolve(CifarKind::Ten, &dir.path().join("absent"), true, fetch).unwrap();

    assert_eq!(
        source,
        Source::Archive(cache.join("cifar-10-binary.tar.gz"))
    );
    let train = read_source(CifarKind::Ten, &source, Part::Train).unwrap();
    assert_eq!(train.labels, vec![6, 9, 9]);
}

/// The real CIFAR-10 sample beside the repository: the official `data_batch_1` and the
/// 10 000 test images, with the counts its SOURCE.md lists.
#[test]
fn real_sample_is_read() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cifar10");
    assert!(
        root.is_dir(),
        "real CIFAR-10 sample missing at {}",
        root.display()
    );

    let train = load(CifarKind::Ten, &root, false, "", Part::Train).unwrap();
    assert_eq!(train.len(), 10_000);
    // Record 9999 of the file, read by hand: label byte, then R, G and B planes.
    let raw = std::fs::read(root.join("data_batch_1.bin")).unwrap();
    let record = &raw[9999 * 3073..];
    assert_eq!(train.labels[9999], u32::from(record[0]));
    for pixel in [0, 33, 1023] {
        for channel in 0..3 {
            let expected = record[1 + channel * 1024 + pixel];
            assert_eq!(
                train.image(9999)[pixel * 3 + channel],
                expected,
                "pixel {pixel} channel {channel}"
            );
        }
    }
    assert_eq!(&train.labels[..10], &[6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assert_eq!(
        train.class_counts(),
        vec![1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    );
    assert_eq!(train.class_names[1], "automobile");

    let test = load(CifarKind::Ten, &root, false, "", Part::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(&test.labels[..10], &[3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
}
