//! espial: a secure distributed event layer for Node.js applications.
//!
//! Three layers, one direction of dependency (binding → driver → core):
//! - [`core`]: sans-IO protocol state machines (wire codec, handshake, record layer,
//!   membership). No sockets, no clock reads, no global randomness.
//! - [`driver`]: owns the sockets and timers and feeds the core: a tokio task per node waits
//!   on them, and the application's calls step the core on their own thread (one lock).
//! - `binding`: the napi class that converts types and moves events to JavaScript.
//!
//! `docs/ARCHITECTURE.md` follows one custom event and one join through every module.

pub mod core;
pub mod driver;

#[cfg(feature = "napi")]
mod binding;

#[cfg(test)]
mod tests;
