//! The single integration-test binary (cargo target `integration`).

mod bastion;
mod cli_support;
mod deploy;
mod dotenv;
mod e2e;
mod failures;
mod health;
mod host_keys;
mod hostile;
mod inputs;
mod interrupt;
mod locks;
mod orchestration;
mod output;
mod provision;
mod reports;
mod rollout;
mod secrets;
mod support;
mod transport;
mod uploads;
mod users;
