//! `headers = { … }`: extra request headers an HTTP sink is configured
//! with (`Authorization`, a tenant header), checked once when the config is
//! validated and merged with the headers the sink's protocol sets.

use crate::Problem;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;

/// Extra request headers by name. Values stay out of `Debug` output: they
/// may be credentials (`Authorization`).
#[derive(Clone, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Headers(pub BTreeMap<String, String>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "***")))
            .finish()
    }
}

/// Headers of the connection, which no sink lets a user set.
const CONNECTION_HEADERS: &[&str] = &["connection", "content-length", "host", "transfer-encoding"];

/// Every header of a request: the `protocol`'s, then the `configured` ones
/// (their values marked sensitive, so they stay out of logs). A configured
/// header may not replace one the protocol or the connection sets, nor one
/// of `reserved`, given with the problem to report (`("x-scope-orgid", "set
/// tenant_id instead")`).
///
/// # Errors
/// Every problem, under the key `headers.<name>`.
pub(crate) fn request_headers(
    mut protocol: HeaderMap,
    configured: &Headers,
    reserved: &[(&str, &str)],
) -> Result<HeaderMap, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut extra = Vec::new();
    for (name, value) in &configured.0 {
        let key = format!("headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.push(Problem::new(key, "invalid header name"));
            continue;
        };
        if let Some((_, why)) = reserved.iter().find(|(n, _)| *n == header.as_str()) {
            problems.push(Problem::new(
                key,
                format!("{name} cannot be configured here: {why}"),
            ));
            continue;
        }
        if protocol.contains_key(&header) || CONNECTION_HEADERS.contains(&header.as_str()) {
            problems.push(Problem::new(
                key,
                format!("{name} is set by the sink itself and cannot be configured"),
            ));
            continue;
        }
        let Ok(mut v) = HeaderValue::from_str(value) else {
            problems.push(Problem::new(
                key,
                "invalid header value: expected visible ASCII characters and spaces",
            ));
            continue;
        };
        v.set_sensitive(true);
        extra.push((header, v));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for (k, v) in extra {
        protocol.insert(k, v);
    }
    Ok(protocol)
}
