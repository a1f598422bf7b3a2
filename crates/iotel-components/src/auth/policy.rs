//! The RBAC policy file: who may do what, for which tenants and signals.
//!
//! ```toml
//! # Any token with role "device-writer" may write every signal for its own
//! # tenant (the token's tenant claim).
//! [[grant]]
//! role = "device-writer"
//! tenants = ["{tenant}"]
//! signals = ["*"]
//! actions = ["write"]
//!
//! # One subject may read two named tenants' metrics.
//! [[grant]]
//! subject = "dashboards"
//! tenants = ["acme", "globex"]
//! signals = ["metrics"]
//! actions = ["read"]
//! ```
//!
//! A request is allowed when some grant names its subject or one of its
//! roles, and lists its tenant, signal and action. Nothing else is
//! allowed: there is no default grant. A file that does not parse, an
//! unknown key (a typo), an unknown signal or action, a grant with neither
//! or both of `role` and `subject`, or an empty list is refused when the
//! node starts, with the file and the grant.

use iotel_model::Signal;
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Write,
    Read,
    Admin,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Write => "write",
            Action::Read => "read",
            Action::Admin => "admin",
        })
    }
}

/// The token's own tenant, in a grant's `tenants`.
pub const OWN_TENANT: &str = "{tenant}";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    role: Option<String>,
    subject: Option<String>,
    tenants: Vec<String>,
    signals: Vec<String>,
    actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Role(String),
    Subject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tenants {
    Any,
    Listed { own: bool, names: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    who: Who,
    tenants: Tenants,
    /// `None`: every signal.
    signals: Option<Vec<Signal>>,
    actions: Vec<Action>,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    grants: Vec<Grant>,
}

/// Who is asking, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    /// The tenant claim, when the token has one.
    pub tenant: Option<String>,
    pub roles: Vec<String>,
}

impl Policy {
    /// Reads and checks a policy file.
    ///
    /// # Errors
    /// The file, the grant and what is wrong, for a config error.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the policy file: {e}", path.display()))?;
        Policy::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a policy.
    ///
    /// # Errors
    /// Where and what is wrong.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let grants = file
            .grant
            .into_iter()
            .enumerate()
            .map(|(i, g)| grant(g).map_err(|e| format!("grant[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { grants })
    }

    /// Whether `who` may do `action` on `signal` for `tenant`.
    pub fn allows(&self, who: &Principal, tenant: &str, signal: Signal, action: Action) -> bool {
        self.grants.iter().any(|g| {
            let named = match &g.who {
                Who::Role(r) => who.roles.iter().any(|x| x == r),
                Who::Subject(s) => &who.subject == s,
            };
            let tenant_ok = match &g.tenants {
                Tenants::Any => true,
                Tenants::Listed { own, names } => {
                    (*own && who.tenant.as_deref() == Some(tenant))
                        || names.iter().any(|n| n == tenant)
                }
            };
            named
                && tenant_ok
                && g.signals.as_ref().is_none_or(|s| s.contains(&signal))
                && g.actions.contains(&action)
        })
    }
}

fn grant(g: RawGrant) -> Result<Grant, String> {
    let who = match (g.role, g.subject) {
        (Some(r), None) if !r.is_empty() => Who::Role(r),
        (None, Some(s)) if !s.is_empty() => Who::Subject(s),
        (Some(_), Some(_)) => {
            return Err("has both `role` and `subject`; a grant names one of them".into());
        }
        _ => return Err("needs a non-empty `role` or `subject`".into()),
    };
    for (key, list) in [
        ("tenants", &g.tenants),
        ("signals", &g.signals),
        ("actions", &g.actions),
    ] {
        if list.is_empty() {
            return Err(format!(
                "`{key}` is empty: the grant would allow nothing (remove it or list what it allows)"
            ));
        }
    }
    let tenants = if g.tenants.iter().any(|t| t == "*") {
        Tenants::Any
    } else {
        Tenants::Listed {
            own: g.tenants.iter().any(|t| t == OWN_TENANT),
            names: g.tenants.into_iter().filter(|t| t != OWN_TENANT).collect(),
        }
    };
    let signals = if g.signals.iter().any(|s| s == "*") {
        None
    } else {
        Some(
            g.signals
                .iter()
                .map(|s| match s.as_str() {
                    "metrics" => Ok(Signal::Metrics),
                    "logs" => Ok(Signal::Logs),
                    "traces" => Ok(Signal::Traces),
                    other => Err(format!(
                        "signals: unknown signal {other:?}; expected metrics, logs, traces or \"*\""
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let actions = g
        .actions
        .iter()
        .map(|a| match a.as_str() {
            "write" => Ok(Action::Write),
            "read" => Ok(Action::Read),
            "admin" => Ok(Action::Admin),
            other => Err(format!(
                "actions: unknown action {other:?}; expected write, read or admin"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Grant {
        who,
        tenants,
        signals,
        actions,
    })
}
