//! espial: a secure distributed event layer for Node.js applications.
//!
//! Three layers, one direction of dependency (binding → driver → core):
//! - [`core`]: sans-IO protocol state machines (wire codec, handshake, record layer,
//!   membership). No sockets, no clock reads, no global randomness.
//! - [`driver`]: a tokio task per node that owns the sockets and timers and feeds the core.
//! - `binding`: the napi class that converts types and moves events to JavaScript.

pub mod core;
pub mod driver;

#[cfg(feature = "napi")]
mod binding;

#[cfg(test)]
mod tests;
