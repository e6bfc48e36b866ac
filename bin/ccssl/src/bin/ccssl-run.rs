//! `ccssl-run`: runs a pipeline graph.

use std::process::ExitCode;

fn main() -> ExitCode {
    ccssl::cli::run_main()
}
