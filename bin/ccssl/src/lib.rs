//! Supervisor, dashboard and command line of ccssl, shared by the `ccssl-run` and `ccssl`
//! binaries.

pub mod bench;
