//! The sans-IO core: every input arrives as a call with the current time, every effect
//! leaves as an [`cluster::Output`]. Nothing here touches a socket, a clock or a global RNG,
//! so the same code runs under the tokio driver and under a deterministic simulation.
//!
//! [`cluster::Cluster`] is the coordinator: it routes each input to the part it concerns
//! (a connection's `link`, `membership`, `subscriptions`, the `beacon_schedule`,
//! [`election`], [`discovery`]) and gathers their effects.
#![forbid(unsafe_code)]

pub mod beacon;
pub(crate) mod beacon_schedule;
pub mod calls;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod detector;
pub mod discovery;
mod due_map;
pub mod election;
pub mod error;
pub mod json;
mod link;
mod link_index;
mod membership;
pub mod message;
pub mod node;
pub mod output;
pub mod probe;
pub mod sessions;
pub mod subscriptions;
pub mod wire;
