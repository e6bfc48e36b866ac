//! `ccssl`: evaluation, prediction, graph checks and the attachable dashboard.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("ccssl: not implemented yet");
    ExitCode::from(2)
}
