//! Sessions and protocol eras: legacy session ids and their node-local state, the results of
//! `initialize` and `server/discover`, and the streams that carry list changes to clients.

pub mod hub;
pub mod lifecycle;
pub mod registry;
pub mod token;
