//! What the transform remembers across restarts of its node, in
//! `<data_dir>/device_lifecycle/<component id>/devices.json`: each device's
//! last firmware and the upgrades under way, with their deadlines (wall
//! clock, so a restart does not reset them).
//!
//! Written when the node stops cleanly (the transform's flush), temp →
//! fsync → rename → fsync the directory; a node that crashes starts from
//! the last clean stop. A file that cannot be read is reported and the
//! transform starts empty.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const VERSION: u32 = 1;

/// Do not rename fields: they are the file's format.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    pub devices: Vec<SavedDevice>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedDevice {
    pub id: String,
    pub firmware: Option<String>,
    pub reports_changes: bool,
    pub ended_trace: Option<String>,
    pub upgrade: Option<SavedUpgrade>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedUpgrade {
    pub deadline_unix_ms: i64,
    pub from: Option<String>,
    pub to: Option<String>,
    pub trace_id: Option<String>,
    /// The labels of the event that started it, as (name, value) pairs.
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join("devices.json"),
        }
    }

    /// What was saved; `Ok(None)` when nothing was.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not of this version.
    pub fn load(&self) -> Result<Option<Saved>, String> {
        let Some(saved) = crate::state_file::read_json::<Saved>(&self.path, "a device list")?
        else {
            return Ok(None);
        };
        if saved.version != VERSION {
            return Err(format!(
                "{} has format version {}; this build reads version {VERSION}",
                self.path.display(),
                saved.version
            ));
        }
        Ok(Some(saved))
    }

    /// Replaces the file (see `crate::state_file`).
    ///
    /// # Errors
    /// Any step failed, with the path; the old file is then still in place.
    pub fn save(&self, saved: &Saved) -> Result<(), String> {
        let mut doc = saved.clone();
        doc.version = VERSION;
        crate::state_file::replace_json(&self.path, &doc)
    }
}
