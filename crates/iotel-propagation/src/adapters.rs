//! Carriers from other crates, each behind its feature.

#[cfg(feature = "http")]
mod http_headers {
    use crate::{Extract, Inject};
    use http::{HeaderMap, HeaderName, HeaderValue};

    /// Header names are case-insensitive; values that are not visible ASCII
    /// are skipped (no propagation format uses other bytes).
    impl Extract for HeaderMap {
        fn get_all(&self, name: &str) -> Vec<&str> {
            HeaderMap::get_all(self, name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        }
    }

    impl Inject for HeaderMap {
        fn set(&mut self, name: &str, value: String) {
            // Our names and formatted values are always valid; a bad value
            // from a caller's own `Inject` use is dropped, not a panic.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.insert(name, value);
            }
        }
    }
}

#[cfg(feature = "tonic")]
pub mod tonic_metadata {
    //! gRPC metadata: the text formats as ASCII entries, and
    //! `grpc-trace-bin` as a binary entry.
    use crate::{Extract, Inject, ParseError, SpanContext, grpc_bin};
    use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

    impl Extract for MetadataMap {
        fn get_all(&self, name: &str) -> Vec<&str> {
            MetadataMap::get_all(self, name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        }
    }

    impl Inject for MetadataMap {
        fn set(&mut self, name: &str, value: String) {
            if let (Ok(key), Ok(value)) = (
                MetadataKey::from_bytes(name.as_bytes()),
                MetadataValue::try_from(value.as_str()),
            ) {
                self.insert(key, value);
            }
        }
    }

    /// Reads `grpc-trace-bin`.
    ///
    /// # Errors
    /// Missing, not base64, or as [`grpc_bin::decode`].
    pub fn extract_grpc_trace_bin(metadata: &MetadataMap) -> Result<SpanContext, ParseError> {
        let value = metadata
            .get_bin(grpc_bin::GRPC_TRACE_BIN)
            .ok_or(ParseError::Missing {
                header: grpc_bin::GRPC_TRACE_BIN,
            })?;
        let bytes = value.to_bytes().map_err(|_| ParseError::Binary {
            at: 0,
            reason: "not valid base64",
        })?;
        grpc_bin::decode(&bytes)
    }

    /// Writes `grpc-trace-bin`.
    pub fn inject_grpc_trace_bin(ctx: &SpanContext, metadata: &mut MetadataMap) {
        metadata.insert_bin(
            grpc_bin::GRPC_TRACE_BIN,
            MetadataValue::from_bytes(&grpc_bin::encode(ctx)),
        );
    }
}

#[cfg(feature = "rumqttc")]
mod rumqttc_properties {
    use crate::{Extract, Inject};
    use rumqttc::v5::mqttbytes::v5::PublishProperties;

    /// The W3C MQTT binding's user properties of a v5 PUBLISH.
    impl Extract for PublishProperties {
        fn get_all(&self, name: &str) -> Vec<&str> {
            self.user_properties.get_all(name)
        }
    }

    impl Inject for PublishProperties {
        fn set(&mut self, name: &str, value: String) {
            self.user_properties.set(name, value);
        }
    }
}
