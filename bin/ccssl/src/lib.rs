//! Supervisor, dashboard and command line of ccssl, shared by the `ccssl-run` and `ccssl`
//! binaries.
//!
//! - [`kinds`]: the stage kinds a graph may use and the entry point of re-executed stages;
//! - [`stages`]: entry code of the stage kinds defined here (the view sink);
//! - [`supervisor`]: launches a validated graph as processes and watches them;
//! - [`dash`]: the terminal dashboard and the headless progress line;
//! - [`bench`]: the `ccssl bench` throughput measurements;
//! - [`cli`]: argument parsing and exit codes of both binaries;
//! - [`resume`]: the checks of `ccssl-run --resume` before a run continues;
//! - [`eval_cmd`], [`predict_cmd`]: `ccssl eval` and `ccssl predict` on a checkpoint.

pub mod bench;
pub mod cli;
pub mod dash;
pub mod eval_cmd;
pub mod kinds;
pub mod predict_cmd;
pub mod resume;
pub mod stages;
pub mod supervisor;

#[cfg(test)]
mod cmd_testutil;
