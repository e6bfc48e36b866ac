//! `ccssl-run`: runs a pipeline graph.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("ccssl-run: not implemented yet");
    ExitCode::from(2)
}
