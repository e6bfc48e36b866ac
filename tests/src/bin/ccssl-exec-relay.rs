//! `ccssl-exec-relay`: a relay stage built as its own program, for `Exec` stages in tests.
//!
//! It links `ccssl-pipe` and runs the same checked relay as the built-in `Relay` kind, so a
//! graph that swaps one for the other must give the same sink result.

use std::process::ExitCode;

use ccssl_pipe::graph::RelayConfig;
use ccssl_pipe::{stage, testing};

fn main() -> ExitCode {
    stage::main(|ctx| testing::relay(ctx, &RelayConfig::default()))
}
