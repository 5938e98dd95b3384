//! Yishi's pure core: rules files in, runnable definitions and instance transitions out. No
//! word of governance lives here (step kinds that know governance are plugins), and no I/O
//! beyond reading a folder it is given: no database, no network, no async runtime.
//!
//! The data flows one way: [`files`] -> [`model`] (authored, with spans) -> [`check`]
//! (layered, validated, compiled into [`definition::Definition`]s) -> [`runtime`] (pure
//! instance transitions, as events). The durable engine (`yishi-engine`) stores what the
//! runtime returns.

pub mod builtin;
pub mod calendar;
pub mod check;
pub mod clock;
pub mod definition;
pub mod describe;
pub mod diag;
pub mod duration;
pub mod files;
pub mod i18n;
pub mod kind;
pub mod model;
pub mod patch;
pub mod rhai_kind;
pub mod runtime;
pub mod schema;
pub mod script;
pub mod similar;
pub mod webhook;

pub use check::{Catalog, check};
pub use definition::Definition;
pub use diag::{Code, Diagnostic};
pub use files::FileSet;
pub use kind::{Registry, Step, StepKind};
