//! dropship: inventory + playbook → parallel SSH deploys of compose apps.

pub mod cli;
pub mod commands;
pub mod diagnostic;
pub mod fleet;
pub mod health;
pub mod inventory;
pub mod output;
pub mod paths;
pub mod plan;
pub mod playbook;
pub mod release;
pub mod remote;
pub mod report;
pub mod rollout;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod steps;
pub mod template;
pub mod transport;
pub mod vars;
