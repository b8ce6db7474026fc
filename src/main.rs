//! The `dropship` binary: parse arguments, run, map the outcome to an exit status.

fn main() {}
