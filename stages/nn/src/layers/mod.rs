//! Layers with explicit forward and backward passes.

pub mod batchnorm;
pub mod conv;
pub mod linear;
pub mod ops;

#[cfg(test)]
mod tests;
