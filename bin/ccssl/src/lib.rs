//! Supervisor, dashboard and command line of ccssl, shared by the `ccssl-run` and `ccssl`
//! binaries.

pub mod dash;
pub mod eval_cmd;
pub mod predict_cmd;
#[cfg(test)]
mod cmd_testutil;
