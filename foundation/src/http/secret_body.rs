//! Response bodies that hold key material, wiped once the server has sent
//! them (security review L7): `Bytes::from_owner` keeps our buffer, so no
//! copy outlives the response unwiped. Request bodies and the TLS layer's
//! own buffers are out of our reach.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// A buffer that wipes itself when the response body is dropped.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Key bytes shared with a cache: the response holds a reference, no copy.
struct Shared(std::sync::Arc<SecretBytes>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

/// JSON whose text carries a plaintext key (`Plaintext`), serialized into a
/// buffer that is wiped after sending.
pub struct SecretJson<T>(pub T);

impl<T: Serialize> IntoResponse for SecretJson<T> {
    fn into_response(self) -> Response {
        let mut buf = Zeroizing::new(Vec::with_capacity(256));
        if let Err(e) = serde_json::to_writer(&mut *buf, &self.0) {
            return super::HttpError::internal(e);
        }
        let mut resp = Body::from(Bytes::from_owner(Wiped(buf))).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Raw key bytes as a body, without copying them out of `key`.
pub fn key_body(key: std::sync::Arc<SecretBytes>) -> Body {
    Body::from(Bytes::from_owner(Shared(key)))
}
