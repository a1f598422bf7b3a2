//! Signal classes: which part of a fleet a metric family speaks of
//! (`device`, `sensor`, `network`, `application`, or a class a rules file
//! names), decided from the family's name by patterns.
//!
//! A pattern is a glob on the whole family name: `*` stands for any run of
//! characters (none included), everything else for itself. `device_*` is a
//! prefix, `*_celsius` a suffix, `*rssi*` a substring. Rules are tried in
//! order, and the first class with a matching pattern wins; a name no rule
//! matches gets the fallback class.

/// The class of a name no rule matches, unless the rules say otherwise.
pub const DEFAULT_FALLBACK: &str = "application";

/// The built-in rules, in the order they are tried.
pub const DEFAULT_RULES: &[(&str, &[&str])] = &[
    ("device", &["device_*", "*_device_*", "node_*", "process_*"]),
    (
        "network",
        &[
            "*_rx_*",
            "*_tx_*",
            "*_rx",
            "*_tx",
            "*rssi*",
            "*snr*",
            "*packets*",
            "network_*",
            "net_*",
            "*_network_*",
            "lora_*",
            "mqtt_*",
        ],
    ),
    (
        "sensor",
        &[
            "sensor_*",
            "*_sensor_*",
            "*_celsius",
            "*_celsius_*",
            "*_kelvin",
            "*_volts",
            "*_volts_*",
            "*_amperes",
            "*_amperes_*",
            "*_watts",
            "*_joules",
            "*_joules_*",
            "*_ratio",
            "*_percent",
            "*_pascals",
            "*_lux",
            "*_meters",
            "*_hertz",
            "*humidity*",
            "*temperature*",
        ],
    ),
];

/// Ordered class rules and the fallback class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalClasses {
    rules: Vec<(String, Vec<String>)>,
    fallback: String,
}

impl Default for SignalClasses {
    fn default() -> Self {
        Self {
            rules: DEFAULT_RULES
                .iter()
                .map(|(class, patterns)| {
                    (
                        (*class).to_string(),
                        patterns.iter().map(|p| (*p).to_string()).collect(),
                    )
                })
                .collect(),
            fallback: DEFAULT_FALLBACK.to_string(),
        }
    }
}

impl SignalClasses {
    /// Rules tried in order, then `fallback`.
    pub fn new(rules: Vec<(String, Vec<String>)>, fallback: String) -> Self {
        Self { rules, fallback }
    }

    /// The class of a family name.
    pub fn classify(&self, name: &str) -> &str {
        self.rules
            .iter()
            .find(|(_, patterns)| patterns.iter().any(|p| glob_matches(p, name)))
            .map_or(self.fallback.as_str(), |(class, _)| class.as_str())
    }
}

/// Whether `name` matches the glob `pattern` (`*` only), in time linear in
/// their lengths times the number of `*`s.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return name.is_empty();
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the pattern is the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
