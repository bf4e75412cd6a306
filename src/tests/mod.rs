//! Tests of the core driven without sockets: an in-memory network of many nodes under
//! virtual time and seeded randomness.

mod detection;
mod election;
mod events;
mod formation;
mod identity;
mod membership;
mod paused;
mod requests;
mod resend;
mod seeds;
pub mod sim;
mod sticky;
