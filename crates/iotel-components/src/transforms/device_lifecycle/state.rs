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
use std::fs::File;
use std::io::Write;
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
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let saved: Saved = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a device list: {e}", self.path.display()))?;
        if saved.version != VERSION {
            return Err(format!(
                "{} has format version {}; this build reads version {VERSION}",
                self.path.display(),
                saved.version
            ));
        }
        Ok(Some(saved))
    }

    /// Replaces the file: temp → fsync → rename → fsync the directory.
    ///
    /// # Errors
    /// Any step failed, with the path; the old file is then still in place.
    pub fn save(&self, saved: &Saved) -> Result<(), String> {
        let fail =
            |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| fail("create", dir, e))?;
        let mut doc = saved.clone();
        doc.version = VERSION;
        let text = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(|e| fail("create", &tmp, e))?;
        f.write_all(&text).map_err(|e| fail("write", &tmp, e))?;
        f.sync_all().map_err(|e| fail("fsync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| fail("rename", &tmp, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("fsync", dir, e))
    }
}
