//! The single integration-test binary (cargo target `integration`).

mod support;
mod transport;
