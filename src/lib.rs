//! Yishi (议事): the `yishi` binary's library: command line, HTTP admin API, file watching.

pub mod bench;
pub mod cli;
pub mod config;
pub mod console;
pub mod output;
pub mod serve;
pub mod server;
pub mod webhook;

/// The plain list of every step kind this build knows: the engine's control flow plus the
/// governance plugins.
pub fn registry() -> yishi_core::Registry {
    let mut r = yishi_core::Registry::with_builtins();
    for k in yishi_plugins::kinds() {
        r.register(k);
    }
    r
}
