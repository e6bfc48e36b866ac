//! Supervisor, dashboard and command line of ccssl, shared by the `ccssl-run` and `ccssl`
//! binaries.
//!
//! - [`kinds`]: the stage kinds a graph may use and the entry point of re-executed stages;
//! - [`stages`]: entry code of the stage kinds defined here (the view sink);
//! - [`supervisor`]: launches a validated graph as processes and watches them;
//! - [`dash`]: the terminal dashboard and the headless progress line;
//! - [`bench`]: the `ccssl bench` throughput measurements;
//! - [`cli`]: argument parsing and exit codes of both binaries.

pub mod bench;
pub mod cli;
pub mod dash;
pub mod kinds;
pub mod stages;
pub mod supervisor;
