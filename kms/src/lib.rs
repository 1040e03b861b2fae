//! vodkms key management service.
//!
//! Layers, top-down: [`crypto`] (pure) → [`store`] (SQL only) → [`service`]
//! (rules, no HTTP) → [`http`] (extract, call the service, map the error).

pub mod api;
pub mod client;
pub mod crypto;
pub mod http;
pub mod model;
pub mod service;
pub mod store;
