//! The subcommands of the `runnel` binary, one module each.

pub mod bench;
pub mod server;
