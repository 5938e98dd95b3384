//! Yishi's generic workflow engine: rules files in, durable cases out. No word of governance
//! lives here; step kinds that know governance are plugins (`yishi-plugins`).
//!
//! The data flows one way: [`files`] -> [`model`] (authored, with spans) -> [`check`]
//! (layered, validated, compiled into [`definition::Definition`]s) -> [`runtime`] (pure
//! instance transitions) -> [`store`] (SQLite, behind a narrow trait) -> [`service`] (the
//! engine as a running service: group commit, timers, catalog swaps).

pub mod builtin;
pub mod calendar;
pub mod check;
pub mod clock;
pub mod definition;
pub mod describe;
pub mod diag;
pub mod duration;
pub mod files;
pub mod kind;
pub mod model;
pub mod rhai_kind;
pub mod runtime;
pub mod scenario;
pub mod schema;
pub mod script;
pub mod service;
pub mod store;

pub use check::{Catalog, check};
pub use definition::Definition;
pub use diag::{Code, Diagnostic};
pub use files::FileSet;
pub use kind::{Registry, Step, StepKind};
