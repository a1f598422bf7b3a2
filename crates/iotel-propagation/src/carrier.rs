//! Where headers live: the two small traits every format reads and writes
//! through, and their implementations for plain key/value lists.
//!
//! The adapters (`http`, `tonic`, `rumqttc` features) implement these for
//! their header types; anything else (a CoAP option list, a custom frame)
//! needs only these two methods.

/// A carrier to read propagation fields from.
pub trait Extract {
    /// Every value of field `name`, in order. `name` is lowercase; HTTP-like
    /// carriers match it case-insensitively.
    fn get_all(&self, name: &str) -> Vec<&str>;
}

/// A carrier to write propagation fields into.
pub trait Inject {
    /// Sets field `name` (lowercase) to `value`, replacing earlier values.
    fn set(&mut self, name: &str, value: String);
}

/// MQTT v5 user properties and other ordered pair lists: names match
/// exactly, as the W3C MQTT binding names its properties in lowercase.
impl Extract for [(String, String)] {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Extract for Vec<(String, String)> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.as_slice().get_all(name)
    }
}

impl Inject for Vec<(String, String)> {
    fn set(&mut self, name: &str, value: String) {
        self.retain(|(k, _)| k != name);
        self.push((name.to_owned(), value));
    }
}

/// Case-insensitive names, as HTTP headers are.
impl Extract for std::collections::HashMap<String, String> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Inject for std::collections::HashMap<String, String> {
    fn set(&mut self, name: &str, value: String) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.insert(name.to_owned(), value);
    }
}
