//! Datasets and batch sequencing of ccssl.
//!
//! Reads CIFAR-10, CIFAR-100, ImageFolder and a synthetic dataset, draws the labeled split,
//! and turns (seed, step) into the step's labeled and unlabeled batch.
