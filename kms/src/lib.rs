//! vodkms key management service: the server only.
//!
//! Layers, top-down: [`crypto`] (pure) → [`store`] (SQL only) → [`service`]
//! (rules, no HTTP) → [`http`] (extract, call the service, map the error).
//! What callers need (request types, the blob header, the client) is the
//! wire contract's, `kms-api`; `api` and `client` re-export it here.

pub use kms_api::{api, client};
pub mod crypto;
pub mod http;
pub mod model;
pub mod service;
pub mod store;
