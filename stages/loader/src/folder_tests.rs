use super::*;
use crate::testutil::TempDir;
use image::{Rgb, RgbImage};

const SIZE_32: Resize = Resize {
    height: 32,
    width: 32,
    filter: ResizeFilter::Bilinear,
};

fn solid(width: u32, height: u32, colour: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(colour))
}

fn save(image: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image.save(path).unwrap();
}

#[test]
fn classes_sorted_and_images_resized() {
    let root = TempDir::new("folder-basic");
    save(
        &solid(40, 20, [200, 10, 10]),
        &root.path().join("dog/b.png"),
    );
    save(
        &solid(32, 32, [10, 200, 10]),
        &root.path().join("dog/a.PNG"),
    );
    save(
        &solid(64, 64, [10, 10, 200]),
        &root.path().join("cat/only.jpg"),
    );
    std::fs::write(root.path().join("dog/notes.txt"), "not an image").unwrap();
    save(
        &solid(8, 8, [0, 0, 0]),
        &root.path().join("dog/.hidden.png"),
    );
    std::fs::create_dir_all(root.path().join(".cache/x")).unwrap();

    let dataset = load(root.path(), None, SIZE_32, Part::Train).unwrap();

    assert_eq!(dataset.class_names, vec!["cat", "dog"]);
    assert_eq!(dataset.labels, vec![0, 1, 1]);
    assert_eq!((dataset.height, dataset.width), (32, 32));
    assert_eq!(dataset.images.len(), 3 * 32 * 32 * 3);
    // JPEG keeps a flat colour within a few grey levels.
    for (value, expected) in dataset.image(0)[..3].iter().zip([10u8, 10, 200]) {
        assert!(
            value.abs_diff(expected) <= 3,
            "cat pixel {value} vs {expected}"
        );
    }
    // "a.PNG" sorts before "b.png"; PNG and a flat resize are exact.
    assert_eq!(&dataset.image(1)[..3], &[10, 200, 10]);
    assert!(
        dataset
            .image(2)
            .chunks_exact(3)
            .all(|pixel| pixel == [200, 10, 10])
    );
}

#[test]
fn resize_keeps_layout() {
    let root = TempDir::new("folder-layout");
    let halves = RgbImage::from_fn(64, 48, |x, _| {
        if x < 32 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    save(&halves, &root.path().join("only/halves.png"));

    let resize = Resize {
        height: 16,
        width: 16,
        filter: ResizeFilter::Nearest,
    };
    let dataset = load(root.path(), None, resize, Part::Train).unwrap();

    let pixel = |row: usize, col: usize| &dataset.image(0)[(row * 16 + col) * 3..][..3];
    assert_eq!(pixel(0, 0), &[255, 0, 0]);
    assert_eq!(pixel(15, 7), &[255, 0, 0]);
    assert_eq!(pixel(0, 8), &[0, 0, 255]);
    assert_eq!(pixel(15, 15), &[0, 0, 255]);
}

#[test]
fn test_root_uses_training_labels() {
    let root = TempDir::new("folder-test-root");
    for class in ["ant", "bee", "cow"] {
        save(
            &solid(4, 4, [1, 2, 3]),
            &root.path().join(format!("train/{class}/x.png")),
        );
    }
    save(&solid(4, 4, [1, 2, 3]), &root.path().join("test/cow/y.png"));
    save(&solid(4, 4, [1, 2, 3]), &root.path().join("test/ant/z.png"));
    let (train, test) = (root.path().join("train"), root.path().join("test"));

    let dataset = load(&train, Some(&test), SIZE_32, Part::Test).unwrap();

    assert_eq!(dataset.labels, vec![0, 2]);
    assert_eq!(dataset.num_classes(), 3);
}

#[test]
fn test_class_unknown_to_training_is_an_error() {
    let root = TempDir::new("folder-unknown");
    save(
        &solid(4, 4, [1, 2, 3]),
        &root.path().join("train/ant/x.png"),
    );
    save(&solid(4, 4, [1, 2, 3]), &root.path().join("test/emu/y.png"));
    let (train, test) = (root.path().join("train"), root.path().join("test"));

    let error = load(&train, Some(&test), SIZE_32, Part::Test).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: class folder has no counterpart in the training root {}; test classes must be a \
             subset of the training classes",
            test.join("emu").display(),
            train.display()
        )
    );
}

#[test]
fn test_root_without_classes_is_an_error() {
    let root = TempDir::new("folder-empty-test");
    save(
        &solid(4, 4, [1, 2, 3]),
        &root.path().join("train/ant/x.png"),
    );
    std::fs::create_dir_all(root.path().join("test")).unwrap();
    let (train, test) = (root.path().join("train"), root.path().join("test"));

    let error = load(&train, Some(&test), SIZE_32, Part::Test).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: no class folders found; ImageFolder expects ROOT/<class>/<image>.png|jpg",
            test.display()
        )
    );
}

#[test]
fn missing_test_root_is_an_error() {
    let root = TempDir::new("folder-no-test");
    save(&solid(4, 4, [1, 2, 3]), &root.path().join("ant/x.png"));

    let message = load(root.path(), None, SIZE_32, Part::Test)
        .unwrap_err()
        .to_string();

    assert_eq!(
        message,
        "ImageFolder has no test set; set `test_root` to a folder laid out like `root`"
    );
}

#[test]
fn undecodable_image_is_named() {
    let root = TempDir::new("folder-broken");
    save(&solid(4, 4, [1, 2, 3]), &root.path().join("ant/good.png"));
    let broken = root.path().join("ant/broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n but then garbage").unwrap();

    let message = load(root.path(), None, SIZE_32, Part::Train)
        .unwrap_err()
        .to_string();

    let prefix = format!("{}: cannot decode image: ", broken.display());
    assert!(message.starts_with(&prefix), "{message}");
    assert!(
        message.ends_with("; remove or replace the file"),
        "{message}"
    );
}

#[test]
fn empty_class_folder_is_an_error() {
    let root = TempDir::new("folder-empty-class");
    save(&solid(4, 4, [1, 2, 3]), &root.path().join("ant/x.png"));
    std::fs::create_dir_all(root.path().join("bee")).unwrap();
    std::fs::write(root.path().join("bee/readme.txt"), "no images").unwrap();

    let error = load(root.path(), None, SIZE_32, Part::Train).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: class folder holds no .png, .jpg or .jpeg image; add images or remove the folder",
            root.path().join("bee").display()
        )
    );
}

#[test]
fn root_without_class_folders_is_an_error() {
    let root = TempDir::new("folder-no-classes");
    std::fs::write(root.path().join("loose.png"), b"").unwrap();

    let error = load(root.path(), None, SIZE_32, Part::Train).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "{}: no class folders found; ImageFolder expects ROOT/<class>/<image>.png|jpg",
            root.path().display()
        )
    );
}

#[test]
fn missing_root_is_an_error() {
    let root = TempDir::new("folder-missing");
    let missing = root.path().join("absent");

    let error = load(&missing, None, SIZE_32, Part::Train).unwrap_err();

    assert_eq!(
        error.to_string(),
        format!(
            "ImageFolder root {} not found: fix `root` or pass --data DIR",
            missing.display()
        )
    );
}
