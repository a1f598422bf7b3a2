//! Wire formats. Each converts between the model and bytes in one place and
//! knows nothing of sockets or files.

pub mod device_ids;
pub mod loki;
pub mod native;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod prometheus;
pub mod remote_write;
pub mod sparkplug;
#[cfg(test)]
mod strategies;
pub mod syslog;
