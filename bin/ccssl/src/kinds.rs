//! Stage kinds of ccssl graphs and the entry point of re-executed stage processes.
//!
//! A graph's stage kinds are one enum implementing [`ccssl_pipe::graph::StageSpec`]. For now
//! that is the set `ccssl-pipe` defines (the test stages and `Exec`). Adding a kind means
//! replacing [`Stage`] with an enum here that wraps `PipeStage`'s configs plus the new one,
//! implementing `StageSpec` for it, and adding its arm to [`run_stage`].

use std::process::ExitCode;

use ccssl_pipe::graph::PipeStage;
use ccssl_pipe::stage::{self, StageError};
use ccssl_pipe::testing;

/// The stage kinds `ccssl-run` accepts.
pub type Stage = PipeStage;

/// Runs the stage described by the launch environment (the hidden `stage` subcommand).
pub fn run_stage() -> ExitCode {
    stage::main(|ctx| match ctx.spec::<Stage>()? {
        PipeStage::Source(config) => testing::source(ctx, &config),
        PipeStage::Relay(config) => testing::relay(ctx, &config),
        PipeStage::Sink(config) => testing::sink(ctx, &config),
        PipeStage::Exec(config) => Err(StageError::Failed(format!(
            "an Exec stage runs {:?}, not the stage subcommand",
            config.program
        ))),
    })
}
