use super::*;
use crate::config::{DatasetConfig, SyntheticSpec};
use crate::dataset::Part;
use crate::synthetic::generate;
use crate::testutil::TempDir;

fn spec() -> SyntheticSpec {
    SyntheticSpec {
        classes: 10,
        train_per_class: 30,
        test_per_class: 1,
        height: 4,
        width: 4,
        ..Default::default()
    }
}

fn config(num_labeled: usize) -> LoaderConfig {
    let mut config = LoaderConfig::new(DatasetConfig::synthetic(&spec()));
    config.num_labeled = num_labeled;
    config.batch_size = 8;
    config
}

fn train() -> Dataset {
    generate(&spec(), Part::Train)
}

#[test]
fn draw_takes_equal_count_per_class() {
    let train = train();
    let split = LabeledSplit::draw(&train, &config(40), 5).unwrap();

    assert_eq!(split.labeled.len(), 40);
    let mut per_class = vec![0; 10];
    for &index in &split.labeled {
        per_class[train.labels[index as usize] as usize] += 1;
    }
    assert_eq!(per_class, vec![4; 10]);
    let mut sorted = split.labeled.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 40, "labeled indices repeat");
    assert_eq!(split.num_train, 300);
    assert_eq!(split.expand_copies, 1);
}

#[test]
fn draw_depends_only_on_seed() {
    let train = train();
    let first = LabeledSplit::draw(&train, &config(40), 5).unwrap();
    assert_eq!(first, LabeledSplit::draw(&train, &config(40), 5).unwrap());
    assert_ne!(
        first.labeled,
        LabeledSplit::draw(&train, &config(40), 6).unwrap().labeled
    );
}

#[test]
fn draw_covers_every_member_of_a_class() {
    // Over many seeds each image of class 0 is picked about equally often.
    let train = train();
    let mut picks = vec![0u32; train.len()];
    for seed in 0..600 {
        for index in LabeledSplit::draw(&train, &config(100), seed)
            .unwrap()
            .labeled
        {
            picks[index as usize] += 1;
        }
    }
    // Each image is picked with probability 10/30 per draw: 200 of 600 expected.
    for (index, &count) in picks.iter().enumerate() {
        assert!(
            (140..260).contains(&count),
            "image {index} picked {count} times"
        );
    }
}

#[test]
fn num_labeled_not_divisible_is_an_error() {
    let error = LabeledSplit::draw(&train(), &config(45), 0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "num_labeled 45 is not divisible by the 10 classes; use a multiple of 10"
    );
}

#[test]
fn num_labeled_above_class_size_is_an_error() {
    let error = LabeledSplit::draw(&train(), &config(310), 0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "num_labeled 310 takes 31 images per class, but class 0 (pattern-0) has only 30; lower \
         num_labeled to at most 300"
    );
}

#[test]
fn expansion_follows_reference_rule() {
    let train = train();
    // Fewer labeled images than one batch: always expanded, ceil(16 * 1024 / 10) = 1639.
    let mut small = config(10);
    small.batch_size = 16;
    small.eval_step = 1024;
    let split = LabeledSplit::draw(&train, &small, 0).unwrap();
    assert_eq!(split.expand_copies, 1639);
    assert_eq!(split.labeled_stream().len(), 10 * 1639);
    assert_eq!(&split.labeled_stream()[10..20], split.labeled.as_slice());

    // Expansion asked for: ceil(8 * 100 / 40) = 20.
    let mut expanded = config(40);
    expanded.expand_labeled = true;
    expanded.eval_step = 100;
    assert_eq!(
        LabeledSplit::draw(&train, &expanded, 0)
            .unwrap()
            .expand_copies,
        20
    );

    // Enough labeled images and no request: no expansion.
    assert_eq!(
        LabeledSplit::draw(&train, &config(40), 0)
            .unwrap()
            .labeled_stream()
            .len(),
        40
    );
}

#[test]
fn load_or_draw_reuses_saved_split() {
    let run = TempDir::new("split-reuse");
    let train = train();
    let drawn = LabeledSplit::load_or_draw(run.path(), &train, &config(40), 9).unwrap();
    let path = run.path().join(SPLIT_FILE);
    assert!(path.is_file());

    // Swap one labeled image for another of its class: a reused split keeps the edit.
    let mut edited = drawn.clone();
    let first = edited.labeled[0];
    let replacement = (0..train.len() as u32)
        .find(|&index| {
            train.labels[index as usize] == train.labels[first as usize]
                && !drawn.labeled.contains(&index)
        })
        .unwrap();
    edited.labeled[0] = replacement;
    edited.save(&path).unwrap();

    let reused = LabeledSplit::load_or_draw(run.path(), &train, &config(40), 9).unwrap();
    assert_eq!(reused, edited);
    assert!(!run.path().join("split.json.tmp").exists());
}

/// Saves `split`, changed by `edit`, and returns the message of loading it.
fn load_error(edit: impl FnOnce(&mut LabeledSplit), config: &LoaderConfig, seed: u64) -> String {
    let run = TempDir::new("split-invalid");
    let train = train();
    let mut split = LabeledSplit::draw(&train, &self::config(40), 9).unwrap();
    edit(&mut split);
    let path = run.path().join(SPLIT_FILE);
    split.save(&path).unwrap();
    let message = LabeledSplit::load(&path, &train, config, seed)
        .unwrap_err()
        .to_string();
    let prefix = format!("{}: ", path.display());
    let suffix = "; delete it to draw a new split, or use the settings it was drawn with";
    assert!(
        message.starts_with(&prefix) && message.ends_with(suffix),
        "{message}"
    );
    message[prefix.len()..message.len() - suffix.len()].to_string()
}

#[test]
fn load_rejects_other_seed() {
    let reason = load_error(|_| {}, &config(40), 10);
    assert_eq!(
        reason,
        "split was drawn with seed 9, but the run seed is 10"
    );
}

#[test]
fn load_rejects_other_num_labeled() {
    let reason = load_error(|_| {}, &config(20), 9);
    assert_eq!(
        reason,
        "split holds 40 labeled images (num_labeled 40), but num_labeled is 20"
    );
}

#[test]
fn load_rejects_out_of_range_index() {
    let reason = load_error(|split| split.labeled[3] = 300, &config(40), 9);
    assert_eq!(reason, "labeled index 300 is out of range 0..300");
}

#[test]
fn load_rejects_duplicate_index() {
    let reason = load_error(|split| split.labeled[1] = split.labeled[0], &config(40), 9);
    assert!(
        reason.starts_with("labeled index ") && reason.ends_with(" appears twice"),
        "{reason}"
    );
}

#[test]
fn load_rejects_unbalanced_classes() {
    let train = train();
    let reason = load_error(
        |split| {
            // Replace a class-0 image with an unused class-1 image.
            let position = split
                .labeled
                .iter()
                .position(|&index| train.labels[index as usize] == 0)
                .unwrap();
            let unused = (0..300u32)
                .find(|&index| train.labels[index as usize] == 1 && !split.labeled.contains(&index))
                .unwrap();
            split.labeled[position] = unused;
        },
        &config(40),
        9,
    );
    assert_eq!(reason, "class 0 has 3 labeled images, expected 4");
}

#[test]
fn load_rejects_other_dataset() {
    let reason = load_error(|split| split.num_train = 500, &config(40), 9);
    assert!(
        reason.starts_with("split was drawn on synthetic (500 images, 10 classes"),
        "{reason}"
    );
}

#[test]
fn load_rejects_other_expansion() {
    let mut expanded = config(40);
    expanded.expand_labeled = true;
    let reason = load_error(|_| {}, &expanded, 9);
    assert_eq!(
        reason,
        "split repeats the labeled list 1 times, but the settings give 205"
    );
}

#[test]
fn load_rejects_invalid_json() {
    let run = TempDir::new("split-json");
    let path = run.path().join(SPLIT_FILE);
    std::fs::write(&path, "{\"version\": 1,").unwrap();

    let message = LabeledSplit::load(&path, &train(), &config(40), 9)
        .unwrap_err()
        .to_string();

    assert!(
        message.starts_with(&format!("{}: invalid split file: ", path.display())),
        "{message}"
    );
    assert!(
        message.ends_with("; delete it to draw a new split"),
        "{message}"
    );
}
