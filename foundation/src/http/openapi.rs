//! OpenAPI 3.0 documents, generated from the code: each API lists its
//! operations next to its router, and the request and response bodies are the
//! JSON Schemas of the very types the handlers (de)serialize (schemars). A
//! test checks that every route of the routers is in the document.

use schemars::gen::{SchemaGenerator, SchemaSettings};
use schemars::schema::Schema;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credential.
    None,
    /// An API client token of the KMS (`Authorization: Bearer`).
    ApiClient,
    /// A playback token: query `token`/`MtsHlsUriToken`, Bearer, or cookie.
    Playback,
}

pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`, as a reference into `components/schemas`.
pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What a successful call answers.
#[derive(Clone, Copy)]
pub enum Answer {
    Json(u16, SchemaFn),
    Empty(u16),
    /// Raw bytes of this media type (the 16 key bytes, a playlist, a page).
    Bytes(u16, &'static str),
}

/// What a query parameter holds, as its schema says.
#[derive(Debug, Clone, Copy)]
pub enum Param {
    /// Any text, at least one character.
    Text,
    Uuid,
    /// RFC 3339.
    DateTime,
    Integer {
        min: i64,
        max: i64,
    },
    OneOf(&'static [&'static str]),
    /// Text matching this regular expression.
    Pattern(&'static str),
}

impl Param {
    fn schema(self) -> Value {
        match self {
            Self::Text => json!({ "type": "string", "minLength": 1 }),
            Self::Uuid => json!({ "type": "string", "format": "uuid" }),
            Self::DateTime => json!({ "type": "string", "format": "date-time" }),
            Self::Integer { min, max } => {
                json!({ "type": "integer", "minimum": min, "maximum": max })
            }
            Self::OneOf(values) => json!({ "type": "string", "enum": values }),
            Self::Pattern(p) => json!({ "type": "string", "pattern": p }),
        }
    }
}

/// Audit pages' `NextToken`: the sequence number to continue below.
pub const NEXT_TOKEN_PATTERN: &str = "^[0-9]{1,18}$";

/// A query parameter: (name, required, description, what it holds).
pub type QueryParam = (&'static str, bool, &'static str, Param);

#[derive(Clone, Copy)]
pub struct Op {
    pub method: &'static str,
    /// The axum route (`/v1/keys/{key_id}`, `/v1/hls/playlist/{*path}`).
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub body: Option<SchemaFn>,
    pub answer: Answer,
    pub query: &'static [QueryParam],
    /// What path parameters hold, where more than any text.
    pub path_params: &'static [(&'static str, Param)],
}

impl Op {
    pub const fn new(
        method: &'static str,
        path: &'static str,
        summary: &'static str,
        auth: Auth,
        body: Option<SchemaFn>,
        answer: Answer,
    ) -> Self {
        Self {
            method,
            path,
            summary,
            auth,
            body,
            answer,
            query: &[],
            path_params: &[],
        }
    }

    pub const fn with_query(mut self, query: &'static [QueryParam]) -> Self {
        self.query = query;
        self
    }

    pub const fn with_path_params(mut self, params: &'static [(&'static str, Param)]) -> Self {
        self.path_params = params;
        self
    }
}

/// What both servers answer besides their API: liveness, readiness, metrics
/// and this document. `document` lists them for every server.
fn service_ops() -> [Op; 4] {
    let any = Answer::Json(200, schema::<Value>);
    [
        Op::new(
            "GET",
            "/healthz",
            "The process is up",
            Auth::None,
            None,
            any,
        ),
        Op::new(
            "GET",
            "/readyz",
            "The database answers",
            Auth::None,
            None,
            any,
        ),
        Op::new(
            "GET",
            "/metrics",
            "Prometheus metrics",
            Auth::None,
            None,
            Answer::Bytes(200, "text/plain"),
        ),
        Op::new(
            "GET",
            "/openapi.json",
            "This document",
            Auth::None,
            None,
            any,
        ),
    ]
}

/// `{*path}` (axum) → `{path}` (OpenAPI), with the parameter names.
fn openapi_path(route: &str) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let path = route
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*').to_owned();
                    let out = format!("{{{name}}}");
                    names.push(name);
                    out
                }
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    (path, names)
}

/// The document for `ops` (and the service routes every server has).
/// `error` is the schema of every error body.
pub fn document(title: &str, description: &str, ops: &[Op], error: SchemaFn) -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error_ref = serde_json::to_value(error(&mut g)).unwrap_or(Value::Null);
    let mut paths = Map::new();
    for op in service_ops().iter().chain(ops) {
        let (path, params) = openapi_path(op.path);
        let mut parameters: Vec<Value> = params
            .iter()
            .map(|name| {
                let schema = op
                    .path_params
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or_else(|| json!({ "type": "string" }), |(_, p)| p.schema());
                json!({ "name": name, "in": "path", "required": true, "schema": schema })
            })
            .collect();
        parameters.extend(op.query.iter().map(|(name, required, description, param)| {
            json!({ "name": name, "in": "query", "required": required, "description": description, "schema": param.schema() })
        }));
        let mut responses = Map::new();
        match op.answer {
            Answer::Json(status, f) => {
                let s = serde_json::to_value(f(&mut g)).unwrap_or(Value::Null);
                responses.insert(
                    status.to_string(),
                    json!({ "description": "Success", "content": { "application/json": { "schema": s } } }),
                );
            }
            Answer::Empty(status) => {
                responses.insert(
                    status.to_string(),
                    json!({ "description": "Success, no body" }),
                );
            }
            Answer::Bytes(status, media) => {
                responses.insert(
                    status.to_string(),
                    json!({ "description": "Success", "content": { media: { "schema": { "type": "string", "format": "binary" } } } }),
                );
            }
        }
        responses.insert(
            "default".into(),
            json!({ "description": "Refused: a stable Code, a Message and the RequestId", "content": { "application/json": { "schema": error_ref } } }),
        );
        let mut operation = json!({
            "summary": op.summary,
            "operationId": operation_id(op.method, op.path),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(f) = op.body {
            let body = f(&mut g);
            // An empty body reads as `{}` (JsonBody): required only when
            // `{}` would not do.
            let required = needs_fields(&g, &body);
            let s = serde_json::to_value(body).unwrap_or(Value::Null);
            operation["requestBody"] =
                json!({ "required": required, "content": { "application/json": { "schema": s } } });
        }
        operation["security"] = match op.auth {
            Auth::None => json!([]),
            Auth::ApiClient => json!([{ "apiClient": [] }]),
            Auth::Playback => {
                json!([{ "playbackQuery": [] }, { "playbackBearer": [] }, { "playbackCookie": [] }])
            }
        };
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = operation;
    }
    let schemas = serde_json::to_value(g.take_definitions()).unwrap_or(Value::Null);
    let mut paths = Value::Object(paths);
    let mut schemas = schemas;
    fix_paths(&mut paths);
    if let Value::Object(all) = &mut schemas {
        all.values_mut().for_each(fix_schema);
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": title, "version": env!("CARGO_PKG_VERSION"), "description": description },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiClient": { "type": "http", "scheme": "bearer", "description": "An API client token of the KMS (vkms_...)" },
                "playbackBearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "playbackQuery": { "type": "apiKey", "in": "query", "name": "token" },
                "playbackCookie": { "type": "apiKey", "in": "cookie", "name": "vodkms_token" },
            },
        },
    })
}

/// Whether a body schema (or the definition it refers to) has required
/// properties. "Anything" (`true`) has none.
fn needs_fields(g: &SchemaGenerator, schema: &Schema) -> bool {
    let Schema::Object(object) = schema else {
        return false;
    };
    let target = match &object.reference {
        Some(reference) => match reference
            .rsplit('/')
            .next()
            .and_then(|name| g.definitions().get(name))
        {
            Some(Schema::Object(t)) => t,
            _ => return true,
        },
        None => object,
    };
    target
        .object
        .as_ref()
        .is_some_and(|o| !o.required.is_empty())
}

/// JSON Schema allows `true` for "anything" (schemars writes it for
/// `serde_json::Value`); OpenAPI 3.0 wants `{}`. Fixes one schema and the
/// schemas inside it.
fn fix_schema(v: &mut Value) {
    if *v == Value::Bool(true) {
        *v = json!({});
        return;
    }
    let Value::Object(map) = v else { return };
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Value::Object(props) = child {
                    props.values_mut().for_each(fix_schema);
                }
            }
            "items" | "not" => fix_schema(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(list) = child {
                    list.iter_mut().for_each(fix_schema);
                }
            }
            "additionalProperties" if child.is_object() => fix_schema(child),
            _ => {}
        }
    }
}

/// Fixes every `schema` found in the paths.
fn fix_paths(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "schema" {
                    fix_schema(child);
                } else {
                    fix_paths(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(fix_paths),
        _ => {}
    }
}

/// `POST /v1/keys/{key_id}/{action}` → `post_v1_keys_key_id_action`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for part in path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
    {
        id.push('_');
        id.push_str(part);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids() {
        assert_eq!(
            openapi_path("/v1/keys/{key_id}/{action}").0,
            "/v1/keys/{key_id}/{action}"
        );
        let (p, names) = openapi_path("/v1/hls/playlist/{*path}");
        assert_eq!(
            (p.as_str(), names),
            ("/v1/hls/playlist/{path}", vec!["path".to_owned()])
        );
        assert_eq!(
            operation_id("GET", "/v1/keys/{key_id}"),
            "get_v1_keys_key_id"
        );
    }
}
