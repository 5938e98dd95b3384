//! Yishi's durable engine: cases kept in a database with their whole history. The pure work
//! (checking rules, computing transitions) is `yishi-core`'s; this crate stores what it
//! returns, behind one [`store::Store`] contract, and runs the service around it: the catalog
//! of active versions, per-instance serialisation, timers, the outbox, scenarios and reload.

pub mod copy;
pub mod reload;
pub mod scenario;
pub mod service;
pub mod store;
