//! Shared-memory pipeline runtime of ccssl.
//!
//! This crate owns everything that stage processes share: the single-producer single-consumer
//! rings that join them (one `/dev/shm` segment per edge), the layouts of the slots that travel
//! through those rings, the per-stage metrics blocks, the stage lifecycle (start, stop, abandon),
//! and the graph schema with its validation into a typed plan.

pub mod batch;
pub mod graph;
pub mod metrics;
pub mod ring;
pub mod shm;
pub mod slot;
pub mod stage;
pub mod testing;
