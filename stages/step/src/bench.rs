//! Timing of the full training step (forward, losses, backward, SGD update) on synthetic
//! views, for `ccssl bench step`.
