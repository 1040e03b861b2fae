//! vodkms key management service.
//!
//! Layers, top-down: [`crypto`] (pure) → [`store`] (SQL only) → [`service`]
//! (rules, no HTTP) → [`http`] (extract, call the service, map the error).

pub mod crypto;
