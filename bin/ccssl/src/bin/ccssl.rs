//! `ccssl`: graph checks and Graphviz output (later also evaluation, prediction and the
//! attachable dashboard).

use std::process::ExitCode;

fn main() -> ExitCode {
    ccssl::cli::tool_main()
}
