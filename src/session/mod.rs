//! Sessions and protocol eras: legacy session ids and their node-local state, the results of
//! `initialize` and `server/discover`, the streams that carry list changes to clients, the
//! resource subscriptions sessions share through an upstream, and sealed task ids.

pub mod hub;
pub mod lifecycle;
pub mod link;
pub mod registry;
pub mod subscriptions;
pub mod task_id;
pub mod token;
