//! vodkms key broker: turns an EDK from a playlist into the 16 raw key bytes,
//! only for a viewer who may watch that video.
//!
//! Layers, top-down: [`token`] and [`password`] (pure) → [`store`] (SQL only)
//! → [`service`] (rules, no HTTP) → [`http`] (extract, call, map the error).

pub mod api;
pub mod dash;
pub mod http;
pub mod model;
pub mod page_origin;
pub mod password;
pub mod service;
pub mod store;
pub mod token;
