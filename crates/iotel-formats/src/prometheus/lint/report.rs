//! What a lint finds: findings, family descriptors, the report and its
//! JSON.

use iotel_model::MetricType;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The input is not valid in its format.
    Error,
    /// Valid, but against a naming or modelling convention.
    Warning,
    /// Something about the lint itself, such as a limit reached.
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub severity: Severity,
    /// Stable, for scripts and suppressions: `syntax`, `no-help`, …
    pub code: &'static str,
    /// The family it is about, if it is about one.
    pub family: Option<String>,
    pub message: String,
}

/// What is known of a family at the end: its descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyDescriptor {
    pub name: String,
    pub description: Option<String>,
    pub unit: Option<String>,
    pub kind: MetricType,
    /// From the signal-class rules.
    pub class: String,
    /// Samples of the family in the exposition.
    pub samples: u64,
    /// Where the family starts.
    pub line: usize,
}

/// The outcome: findings in line order, descriptors in order of appearance.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Findings past [`Limits::max_findings`], counted but not kept.
    pub findings_not_kept: u64,
    pub errors: u64,
    pub warnings: u64,
    pub families: Vec<FamilyDescriptor>,
    pub lines: usize,
    pub bytes: u64,
    pub samples: u64,
}

impl Report {
    /// 2 if the input is not valid in its format, 1 for convention findings
    /// only, 0 if clean.
    pub fn exit_code(&self) -> u8 {
        if self.errors > 0 {
            2
        } else if self.warnings > 0 {
            1
        } else {
            0
        }
    }
}

impl Report {
    /// The report as JSON: `summary`, `findings` and `families` (one
    /// descriptor per family).
    pub fn to_json(&self, input: &str) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "file": input,
                    "line": f.line,
                    "column": f.column,
                    "severity": f.severity.as_str(),
                    "code": f.code,
                    "family": f.family,
                    "message": f.message,
                })
            })
            .collect();
        let families: Vec<serde_json::Value> = self
            .families
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "description": f.description,
                    "unit": f.unit,
                    "type": f.kind.as_str(),
                    "class": f.class,
                    "samples": f.samples,
                    "line": f.line,
                })
            })
            .collect();
        serde_json::json!({
            "summary": {
                "input": input,
                "exit_code": self.exit_code(),
                "errors": self.errors,
                "warnings": self.warnings,
                "findings_not_kept": self.findings_not_kept,
                "lines": self.lines,
                "bytes": self.bytes,
                "samples": self.samples,
                "families": self.families.len(),
            },
            "findings": findings,
            "families": families,
        })
    }
}
