//! dropship: inventory + playbook → parallel SSH deploys of compose apps.

pub mod transport;
