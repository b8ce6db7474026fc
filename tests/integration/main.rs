//! The single integration-test binary (cargo target `integration`).

mod bastion;
mod deploy;
mod diagnose;
mod dotenv;
mod e2e;
mod e2e_images;
mod failures;
mod firstday;
mod harness;
mod health;
mod host_keys;
mod hostile;
mod images;
mod inputs;
mod interrupt;
mod locks;
mod orchestration;
mod output;
mod provision;
mod reports;
mod rollout;
mod secrets;
mod transport;
mod uploads;
mod vault;
mod zero_downtime;
