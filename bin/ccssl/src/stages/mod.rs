//! Entry code of stage kinds that live in this crate rather than in a stage library.

pub mod view_sink;
