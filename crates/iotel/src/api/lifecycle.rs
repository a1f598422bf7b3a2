//! Retiring and enabling metric families through the node API, and keeping
//! the retired ones across restarts.
//!
//! # The file
//!
//! `retired_metric_families.json` in the node's data dir:
//! `{"retired":[{"name":"…","type":"gauge","help":…,"unit":…,"components":[…]}]}`,
//! one entry per retired family, in name order. It is rewritten whole on
//! every change (temp file, fsync, rename, fsync of the directory), before
//! the change takes effect: a change the node could not keep is refused
//! (500) and nothing changes. A node starts with the families the file
//! retires; a file that cannot be read or parsed is reported and the node
//! starts with none retired (the next change rewrites it).

use iotel_engine::families::{FamilyInfo, MetricFamilies, RetiredFamily, UnknownFamily};
use iotel_model::MetricType;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file's name in the data dir.
pub const FILE_NAME: &str = "retired_metric_families.json";

/// Why a change did not happen.
#[derive(Debug)]
pub enum ChangeError {
    Unknown(UnknownFamily),
    NotKept { path: String, message: String },
}

impl From<UnknownFamily> for ChangeError {
    fn from(e: UnknownFamily) -> Self {
        ChangeError::Unknown(e)
    }
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Unknown(e) => e.fmt(f),
            ChangeError::NotKept { path, message } => {
                write!(
                    f,
                    "cannot keep the change across restarts in {path}: {message}"
                )
            }
        }
    }
}

/// The node's metric families with the file that keeps the retired ones.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    families: MetricFamilies,
    file: PathBuf,
    /// One change at a time: each writes the whole file.
    changing: Arc<Mutex<()>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    retired: Vec<RetiredEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiredEntry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    help: Option<String>,
    unit: Option<String>,
    components: Vec<String>,
}

impl From<&RetiredFamily> for RetiredEntry {
    fn from(f: &RetiredFamily) -> Self {
        RetiredEntry {
            name: f.name.clone(),
            kind: f.kind.as_str().to_string(),
            help: f.help.clone(),
            unit: f.unit.clone(),
            components: f.components.clone(),
        }
    }
}

impl From<RetiredEntry> for RetiredFamily {
    fn from(e: RetiredEntry) -> Self {
        RetiredFamily {
            name: e.name,
            kind: MetricType::parse(&e.kind).unwrap_or_default(),
            help: e.help,
            unit: e.unit,
            components: e.components,
        }
    }
}

impl Lifecycle {
    /// The families of a node whose data dir is `data_dir`, with what the
    /// file there retires restored.
    pub fn open(families: MetricFamilies, data_dir: &Path) -> Lifecycle {
        let file = data_dir.join(FILE_NAME);
        match read(&file) {
            Ok(retired) if retired.is_empty() => {}
            Ok(retired) => {
                let names: Vec<&str> = retired.iter().map(|f| f.name.as_str()).collect();
                tracing::info!(
                    file = %file.display(),
                    "metric families retired: {}",
                    names.join(", ")
                );
                families.restore(retired);
            }
            Err(e) => tracing::error!(
                "{e}; starting with no metric family retired (the next change rewrites the file)"
            ),
        }
        Lifecycle {
            families,
            file,
            changing: Arc::new(Mutex::new(())),
        }
    }

    pub fn families(&self) -> &MetricFamilies {
        &self.families
    }

    /// Retires `name`, once the file says so.
    ///
    /// # Errors
    /// The family is unknown, or the file could not be written.
    pub fn retire(&self, name: &str) -> Result<FamilyInfo, ChangeError> {
        let _one = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let family = self.families.describe_for_retirement(name)?;
        let mut retired = self.families.retired_families();
        retired.retain(|f| f.name != name);
        retired.push(family.clone());
        self.write(&retired)?;
        self.families.restore([family]);
        Ok(self
            .families
            .get(name)
            .ok_or_else(|| UnknownFamily(name.to_string()))?)
    }

    /// Enables `name` again, once the file says so.
    ///
    /// # Errors
    /// The family is unknown, or the file could not be written.
    pub fn enable(&self, name: &str) -> Result<FamilyInfo, ChangeError> {
        let _one = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut retired = self.families.retired_families();
        let before = retired.len();
        retired.retain(|f| f.name != name);
        if retired.len() < before {
            self.write(&retired)?;
        }
        Ok(self.families.enable(name)?)
    }

    fn write(&self, retired: &[RetiredFamily]) -> Result<(), ChangeError> {
        let mut state = StateFile {
            retired: retired.iter().map(RetiredEntry::from).collect(),
        };
        state.retired.sort_by(|a, b| a.name.cmp(&b.name));
        iotel_components::state_file::replace_json(&self.file, &state).map_err(|message| {
            ChangeError::NotKept {
                path: self.file.display().to_string(),
                message,
            }
        })
    }
}

/// The retired families the file holds; none when there is no file.
fn read(file: &Path) -> Result<Vec<RetiredFamily>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let state: StateFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: line {}: not a list of retired metric families ({e})",
            file.display(),
            e.line()
        )
    })?;
    Ok(state.retired.into_iter().map(RetiredFamily::from).collect())
}
