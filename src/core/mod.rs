//! The sans-IO core: every input arrives as a call with the current time, every effect
//! leaves as an [`cluster::Output`]. Nothing here touches a socket, a clock or a global RNG,
//! so the same code runs under the tokio driver and under a deterministic simulation.
#![forbid(unsafe_code)]

pub mod beacon;
pub mod beacon_schedule;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod detector;
pub mod discovery;
pub mod election;
pub mod error;
pub mod link;
pub mod membership;
pub mod message;
pub mod node;
pub mod output;
pub mod subscriptions;
pub mod wire;
