//! What the lifecycle source remembers across restarts of the agent, in
//! `<data_dir>/device_lifecycle/<component id>/state.json`.
//!
//! The file is written only when something in it changes — at start (the
//! `running` marker), at a boot, a firmware change and a clean stop — never
//! on every reading, so a device's flash is not worn by it. Each write is
//! temp → fsync → rename → fsync the directory: after a crash the file is
//! the old one or the new one, never a torn one. A file that cannot be read
//! (another version, garbage) is reported and replaced: the agent then
//! knows as little as on its first start.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's format; a file of another version is not read.
const VERSION: u32 = 1;

/// The remembered state. Do not rename fields: they are the file's format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The boot id of the last reading saved.
    pub boot_id: Option<String>,
    /// The uptime at `saved_at_unix_ms`.
    pub uptime_secs: Option<f64>,
    pub saved_at_unix_ms: i64,
    /// The firmware version last seen.
    pub firmware: Option<String>,
    /// `true` from an agent's start until it stops cleanly: found `true`
    /// at start, the previous run ended without stopping (a crash, a kill,
    /// a power loss).
    pub running: bool,
    pub boots_total: u64,
    pub firmware_changes_total: u64,
    pub agent_restarts_clean_total: u64,
    pub agent_restarts_crash_total: u64,
    /// An upgrade under way: the update tool's marker file was seen.
    #[serde(default)]
    pub upgrade: Option<Upgrade>,
}

/// An upgrade the agent saw start. Do not rename fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Upgrade {
    /// The firmware when it started.
    pub from: Option<String>,
    /// The version the marker named, if any.
    pub to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; `Ok(None)` when there is none yet.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not a state of this version.
    pub fn load(&self) -> Result<Option<State>, String> {
        let Some(state) = crate::state_file::read_json::<State>(&self.path, "a lifecycle state")?
        else {
            return Ok(None);
        };
        if state.version != VERSION {
            return Err(format!(
                "{} has format version {}; this build reads version {VERSION}",
                self.path.display(),
                state.version
            ));
        }
        Ok(Some(state))
    }

    /// Replaces the file with `state` (see `crate::state_file`). Creates
    /// the directory when missing.
    ///
    /// # Errors
    /// Any step failed, with the path; the old file is then still in place.
    pub fn save(&self, state: &State) -> Result<(), String> {
        let mut doc = state.clone();
        doc.version = VERSION;
        crate::state_file::replace_json(&self.path, &doc)
    }
}
