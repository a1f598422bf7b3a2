//! The component graph, checked before anything starts: unknown and missing
//! inputs, cycles, signals a component cannot take, and two components
//! claiming the same port or directory.

use iotel_model::Signal;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Source,
    Transform,
    Sink,
}

impl ComponentKind {
    /// The config table this kind lives in: `sources`, `transforms`, `sinks`.
    pub fn table(self) -> &'static str {
        match self {
            ComponentKind::Source => "sources",
            ComponentKind::Transform => "transforms",
            ComponentKind::Sink => "sinks",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Transform => "transform",
            ComponentKind::Sink => "sink",
        }
    }
}

/// A set of signals.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SignalSet(u8);

impl SignalSet {
    pub const NONE: SignalSet = SignalSet(0);
    pub const METRICS: SignalSet = SignalSet(1);
    pub const LOGS: SignalSet = SignalSet(2);
    pub const TRACES: SignalSet = SignalSet(4);
    pub const ALL: SignalSet = SignalSet(7);

    pub fn of(s: Signal) -> Self {
        match s {
            Signal::Metrics => Self::METRICS,
            Signal::Logs => Self::LOGS,
            Signal::Traces => Self::TRACES,
        }
    }

    pub fn contains(self, s: Signal) -> bool {
        self.0 & Self::of(s).0 != 0
    }

    pub fn union(self, o: SignalSet) -> SignalSet {
        SignalSet(self.0 | o.0)
    }

    pub fn intersect(self, o: SignalSet) -> SignalSet {
        SignalSet(self.0 & o.0)
    }

    pub fn minus(self, o: SignalSet) -> SignalSet {
        SignalSet(self.0 & !o.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Signal::as_str).collect();
        if names.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// What the graph check needs to know of one component.
#[derive(Debug, Clone)]
pub struct NodeDecl {
    pub id: String,
    pub kind: ComponentKind,
    pub type_name: String,
    pub inputs: Vec<String>,
    /// Sources: the signals they emit. Transforms and sinks: what they take.
    pub signals: SignalSet,
    /// Ports and directories this component claims, e.g. `port 127.0.0.1:9598`.
    pub claims: Vec<String>,
    /// Named outputs besides the default one (a transform's `dead_letter`):
    /// others take them as input `<id>.<name>`.
    pub outputs: Vec<String>,
    /// The signals a named output carries when they are not what the
    /// component's default output carries (the `anomaly` transform takes
    /// metrics and sends the anomaly events it makes of them, logs, to its
    /// output `anomalies`). A named output not listed carries what the
    /// default output does.
    pub output_signals: Vec<(String, SignalSet)>,
}

/// The signal an input's suffix selects: `metrics`, `logs` or `traces`.
pub fn signal_named(name: &str) -> Option<Signal> {
    match name {
        "metrics" => Some(Signal::Metrics),
        "logs" => Some(Signal::Logs),
        "traces" => Some(Signal::Traces),
        _ => None,
    }
}

/// Splits an input `id.metrics` (`.logs`, `.traces`) into the producer's id
/// and the one signal it takes from it; `None` for any other input. These
/// three names are never a transform's named output.
pub fn signal_input(input: &str) -> Option<(&str, Signal)> {
    let (id, suffix) = input.rsplit_once('.')?;
    Some((id, signal_named(suffix)?))
}

/// The component an input names: `id`, `id.output` for a named output, or
/// `id.metrics` / `id.logs` / `id.traces` for one signal of it.
fn producer<'a>(by_id: &BTreeMap<&str, &'a NodeDecl>, input: &str) -> Option<&'a NodeDecl> {
    if let Some(n) = by_id.get(input) {
        return Some(n);
    }
    let (id, output) = input.rsplit_once('.')?;
    by_id
        .get(id)
        .filter(|n| signal_named(output).is_some() || n.outputs.iter().any(|o| o == output))
        .copied()
}

/// The signals an input can carry from its producer, which emits `emits`.
fn carried(input: &str, producer: &NodeDecl, emits: SignalSet) -> SignalSet {
    match input
        .strip_prefix(producer.id.as_str())
        .and_then(|rest| rest.strip_prefix('.'))
    {
        Some(output) => match signal_named(output) {
            Some(s) => emits.intersect(SignalSet::of(s)),
            None => producer
                .output_signals
                .iter()
                .find(|(name, _)| name == output)
                .map_or(emits, |(_, signals)| *signals),
        },
        None => emits,
    }
}

/// A graph mistake, located by the component's key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// e.g. `sinks.prom.inputs`
    pub path: String,
    pub message: String,
}

/// Checks the graph and returns the components in an order where every
/// component comes after its inputs.
///
/// # Errors
/// Every problem found, not just the first.
fn unknown_input(by_id: &BTreeMap<&str, &NodeDecl>, input: &str) -> String {
    if let Some((id, output)) = input.rsplit_once('.')
        && let Some(n) = by_id.get(id)
    {
        let has = if n.outputs.is_empty() {
            "none".to_string()
        } else {
            n.outputs.join(", ")
        };
        return format!(
            "unknown input \"{input}\": {} \"{id}\" has no output \"{output}\" (named outputs: \
             {has}; or one signal of it: \"{id}.metrics\", \"{id}.logs\", \"{id}.traces\")",
            n.type_name
        );
    }
    format!("unknown input \"{input}\": no source or transform has that id")
}

pub fn check(nodes: &[NodeDecl]) -> Result<Vec<String>, Vec<GraphError>> {
    let mut errors = Vec::new();
    let by_id: BTreeMap<&str, &NodeDecl> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut seen_ids = BTreeSet::new();
    for n in nodes {
        if !seen_ids.insert(n.id.as_str()) {
            errors.push(GraphError {
                path: format!("{}.{}", n.kind.table(), n.id),
                message: format!("component id \"{}\" is used more than once; ids must be unique across sources, transforms and sinks", n.id),
            });
        }
        let path = format!("{}.{}.inputs", n.kind.table(), n.id);
        match n.kind {
            ComponentKind::Source => {}
            _ if n.inputs.is_empty() => errors.push(GraphError {
                path,
                message: "expected at least one input (the id of a source or transform)".into(),
            }),
            _ => {
                for i in &n.inputs {
                    match producer(&by_id, i) {
                        None => errors.push(GraphError {
                            path: path.clone(),
                            message: unknown_input(&by_id, i),
                        }),
                        Some(up) if up.kind == ComponentKind::Sink => errors.push(GraphError {
                            path: path.clone(),
                            message: format!(
                                "input \"{i}\" is a sink; only sources and transforms can be inputs"
                            ),
                        }),
                        Some(_) => {}
                    }
                }
            }
        }
    }

    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for n in nodes {
        for c in &n.claims {
            if let Some(other) = claimed.insert(c.as_str(), n.id.as_str()) {
                errors.push(GraphError {
                    path: format!("{}.{}", n.kind.table(), n.id),
                    message: format!("{c} is already claimed by component \"{other}\""),
                });
            }
        }
    }

    // Kahn's algorithm; what is left over sits on a cycle.
    let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
    let mut downstream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for n in nodes {
        let ups: Vec<&str> = n
            .inputs
            .iter()
            .filter_map(|i| producer(&by_id, i))
            .map(|up| up.id.as_str())
            .collect();
        indegree.insert(&n.id, ups.len());
        for up in ups {
            downstream.entry(up).or_default().push(&n.id);
        }
    }
    let mut queue: VecDeque<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut order = Vec::new();
    while let Some(id) = queue.pop_front() {
        order.push(id.to_string());
        for d in downstream.get(id).into_iter().flatten() {
            if let Some(deg) = indegree.get_mut(d) {
                *deg -= 1;
                if *deg == 0 {
                    queue.push_back(d);
                }
            }
        }
    }
    if order.len() < indegree.len() {
        let on_cycle: Vec<&str> = indegree
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(id, _)| *id)
            .collect();
        errors.push(GraphError {
            path: "transforms".into(),
            message: format!("the graph has a cycle through: {}", on_cycle.join(", ")),
        });
    }

    // Signals flow in topological order: a node emits what its inputs emit
    // (for transforms, limited to what they take).
    let mut emits: BTreeMap<&str, SignalSet> = BTreeMap::new();
    for id in &order {
        let n = by_id[id.as_str()];
        let emitted = |i: &String| {
            producer(&by_id, i).and_then(|up| emits.get(up.id.as_str()).map(|e| carried(i, up, *e)))
        };
        let incoming = n
            .inputs
            .iter()
            .filter_map(emitted)
            .fold(SignalSet::NONE, |a, b| a.union(b));
        for i in &n.inputs {
            if let (Some((_, signal)), Some(up)) = (signal_input(i), producer(&by_id, i))
                && let Some(e) = emits.get(up.id.as_str())
                && !e.contains(signal)
            {
                errors.push(GraphError {
                    path: format!("{}.{}.inputs", n.kind.table(), n.id),
                    message: format!(
                        "input \"{i}\" carries nothing: {} \"{}\" sends {e}",
                        up.type_name, up.id
                    ),
                });
            }
        }
        let out = match n.kind {
            ComponentKind::Source => n.signals,
            _ => {
                let refused = incoming.minus(n.signals);
                if !refused.is_empty() {
                    let from: Vec<&str> = n
                        .inputs
                        .iter()
                        .filter(|i| emitted(i).is_some_and(|s| !s.intersect(refused).is_empty()))
                        .map(String::as_str)
                        .collect();
                    errors.push(GraphError {
                        path: format!("{}.{}.inputs", n.kind.table(), n.id),
                        message: format!(
                            "{} \"{}\" takes {} but input {} sends {}",
                            n.type_name,
                            n.id,
                            n.signals,
                            from.iter()
                                .map(|f| format!("\"{f}\""))
                                .collect::<Vec<_>>()
                                .join(", "),
                            refused
                        ),
                    });
                }
                incoming.intersect(n.signals)
            }
        };
        emits.insert(&n.id, out);
    }

    if errors.is_empty() {
        Ok(order)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_can_take_one_signal_of_a_component_that_sends_several() {
        let both = SignalSet::METRICS.union(SignalSet::LOGS);
        let ok = check(&[
            node("src", ComponentKind::Source, &[], both),
            node(
                "m",
                ComponentKind::Sink,
                &["src.metrics"],
                SignalSet::METRICS,
            ),
            node("l", ComponentKind::Sink, &["src.logs"], SignalSet::LOGS),
        ]);
        assert!(ok.is_ok(), "{ok:?}");
        let errors = check(&[
            node("src", ComponentKind::Source, &[], both),
            node("m", ComponentKind::Sink, &["src"], SignalSet::METRICS),
            node("t", ComponentKind::Sink, &["src.traces"], SignalSet::ALL),
        ])
        .unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "sink_type \"m\" takes metrics but input \"src\" sends logs",
                "input \"src.traces\" carries nothing: source_type \"src\" sends metrics, logs",
            ]
        );
    }

    fn node(id: &str, kind: ComponentKind, inputs: &[&str], signals: SignalSet) -> NodeDecl {
        NodeDecl {
            id: id.into(),
            kind,
            type_name: format!("{}_type", kind.as_str()),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            signals,
            claims: vec![],
            outputs: vec![],
            output_signals: vec![],
        }
    }

    #[test]
    fn a_named_output_carries_the_signals_it_declares_not_those_of_the_default_output() {
        let mut detector = node("a", ComponentKind::Transform, &["src"], SignalSet::METRICS);
        detector.outputs = vec!["anomalies".into()];
        detector.output_signals = vec![("anomalies".into(), SignalSet::LOGS)];
        let ok = check(&[
            node("src", ComponentKind::Source, &[], SignalSet::METRICS),
            detector.clone(),
            node("m", ComponentKind::Sink, &["a"], SignalSet::METRICS),
            node("l", ComponentKind::Sink, &["a.anomalies"], SignalSet::LOGS),
        ]);
        assert!(ok.is_ok(), "{ok:?}");
        let errors = check(&[
            node("src", ComponentKind::Source, &[], SignalSet::METRICS),
            detector,
            node(
                "m",
                ComponentKind::Sink,
                &["a.anomalies"],
                SignalSet::METRICS,
            ),
        ])
        .unwrap_err();
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            vec!["sink_type \"m\" takes metrics but input \"a.anomalies\" sends logs"]
        );
    }

    #[test]
    fn orders_components_after_their_inputs() {
        let order = check(&[
            node("out", ComponentKind::Sink, &["t"], SignalSet::METRICS),
            node("t", ComponentKind::Transform, &["src"], SignalSet::ALL),
            node("src", ComponentKind::Source, &[], SignalSet::METRICS),
        ])
        .unwrap();
        assert_eq!(order, ["src", "t", "out"]);
    }

    #[test]
    fn reports_unknown_missing_and_sink_inputs_together() {
        let errs = check(&[
            node("src", ComponentKind::Source, &[], SignalSet::METRICS),
            node("a", ComponentKind::Sink, &["nope"], SignalSet::ALL),
            node("b", ComponentKind::Sink, &[], SignalSet::ALL),
            node("c", ComponentKind::Sink, &["a"], SignalSet::ALL),
        ])
        .unwrap_err();
        let msgs: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert_eq!(
            msgs,
            [
                "sinks.a.inputs: unknown input \"nope\": no source or transform has that id",
                "sinks.b.inputs: expected at least one input (the id of a source or transform)",
                "sinks.c.inputs: input \"a\" is a sink; only sources and transforms can be inputs",
            ]
        );
    }

    #[test]
    fn finds_a_cycle_between_transforms() {
        let errs = check(&[
            node("src", ComponentKind::Source, &[], SignalSet::METRICS),
            node("x", ComponentKind::Transform, &["src", "y"], SignalSet::ALL),
            node("y", ComponentKind::Transform, &["x"], SignalSet::ALL),
        ])
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].message, "the graph has a cycle through: x, y");
    }

    #[test]
    fn refuses_a_sink_fed_a_signal_it_cannot_take() {
        let errs = check(&[
            node("logs", ComponentKind::Source, &[], SignalSet::LOGS),
            node("rw", ComponentKind::Sink, &["logs"], SignalSet::METRICS),
        ])
        .unwrap_err();
        assert_eq!(errs[0].path, "sinks.rw.inputs");
        assert_eq!(
            errs[0].message,
            "sink_type \"rw\" takes metrics but input \"logs\" sends logs"
        );
    }

    #[test]
    fn refuses_two_components_claiming_one_port() {
        let mut a = node("a", ComponentKind::Sink, &["s"], SignalSet::ALL);
        a.claims = vec!["port 127.0.0.1:9598".into()];
        let mut b = node("b", ComponentKind::Sink, &["s"], SignalSet::ALL);
        b.claims = vec!["port 127.0.0.1:9598".into()];
        let errs = check(&[
            node("s", ComponentKind::Source, &[], SignalSet::METRICS),
            a,
            b,
        ])
        .unwrap_err();
        assert_eq!(
            errs[0].message,
            "port 127.0.0.1:9598 is already claimed by component \"a\""
        );
    }

    #[test]
    fn a_named_output_is_an_input_of_its_own_and_unknown_ones_are_named() {
        let mut t = node("check", ComponentKind::Transform, &["src"], SignalSet::LOGS);
        t.outputs = vec!["dead_letter".into()];
        let order = check(&[
            node("src", ComponentKind::Source, &[], SignalSet::LOGS),
            t.clone(),
            node("good", ComponentKind::Sink, &["check"], SignalSet::LOGS),
            node(
                "bad",
                ComponentKind::Sink,
                &["check.dead_letter"],
                SignalSet::LOGS,
            ),
        ])
        .unwrap();
        assert_eq!(order, ["src", "check", "good", "bad"]);

        let errs = check(&[
            node("src", ComponentKind::Source, &[], SignalSet::LOGS),
            t,
            node("bad", ComponentKind::Sink, &["check.dead"], SignalSet::LOGS),
            node(
                "worse",
                ComponentKind::Sink,
                &["src.dead_letter"],
                SignalSet::LOGS,
            ),
        ])
        .unwrap_err();
        let messages: Vec<_> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unknown input \"check.dead\": transform_type \"check\" has no output \"dead\" (named outputs: dead_letter; or one signal of it: \"check.metrics\", \"check.logs\", \"check.traces\")",
                "unknown input \"src.dead_letter\": source_type \"src\" has no output \"dead_letter\" (named outputs: none; or one signal of it: \"src.metrics\", \"src.logs\", \"src.traces\")",
            ]
        );
    }
}
