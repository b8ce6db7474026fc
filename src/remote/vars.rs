//! Every shell variable that one script (or one part of a script) sets and another reads,
//! named once. Variables used within a single template stay in it; these cross files.
//! May import: `remote::script`.

use super::script::Var;

/// The session's frame nonce (`frame::report` prints it): set by the driver, or by
/// `frame::Framed` for a script run on its own.
pub const NONCE: Var = Var::new("dsn");
/// The driver's exit status so far (the last segment's).
pub const STATUS: Var = Var::new("dss");
/// The driver's result for the audit line: `ok`, `failed at STEP` or `interrupted`; read by the
/// lock's epilogue (`lock::release_and_audit_epilogue`).
pub const RESULT: Var = Var::new("dsr");
/// The time a segment started (bash's `EPOCHREALTIME`), for its marker.
pub const STEP_START: Var = Var::new("dsb");
/// How compose is invoked (`plugin`, `standalone`, `none`): set by `compose::DETECT` in the
/// driver's preamble, read by compose segments whose flavour was still unknown.
pub const COMPOSE_FLAVOR: Var = Var::new("dsf");
/// A script too long for a command line, read from stdin by its loader (`long_script.rs`).
pub const LOADED_SCRIPT: Var = Var::new("dsq");
/// Uploads' private directories: one variable per destination directory, this prefix and a
/// hash of the directory (`files::session_dir_var`); removed by the driver's cleanup.
pub const UPLOAD_DIR_PREFIX: &str = "dsu_";
