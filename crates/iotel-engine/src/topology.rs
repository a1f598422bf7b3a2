//! Running a checked graph: channels between components, one task each, and
//! shutdown in graph order.
//!
//! Shutdown: sources stop on the signal, which drops their [`Output`]s; a
//! transform sees its input close once all its inputs have stopped, flushes
//! and drops its own output; a sink drains what is left, flushes, and
//! returns. Sinks see the signal too, with the deadline of the grace period,
//! so one retrying a dead peer knows when to give up and count what is left.
//! Everything accepted before the signal reaches a sink unless the grace
//! period runs out, after which the rest is aborted.

use crate::component::{
    Batch, ComponentKey, Input, Output, Sink, SinkContext, Source, SourceContext, Transform,
};
use crate::graph::{ComponentKind, signal_input};
use crate::metrics::{ComponentMetrics, Registry};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use iotel_model::{Events, Signal};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A built component, ready to run.
pub enum BuiltComponent {
    Source(Box<dyn Source>),
    Transform(Box<dyn Transform>),
    Sink(Box<dyn Sink>),
}

impl std::fmt::Debug for BuiltComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuiltComponent::Source(_) => "Source",
            BuiltComponent::Transform(_) => "Transform",
            BuiltComponent::Sink(_) => "Sink",
        })
    }
}

impl BuiltComponent {
    fn kind(&self) -> ComponentKind {
        match self {
            BuiltComponent::Source(_) => ComponentKind::Source,
            BuiltComponent::Transform(_) => ComponentKind::Transform,
            BuiltComponent::Sink(_) => ComponentKind::Sink,
        }
    }
}

/// One node of the graph: its key, its inputs and the built component.
#[derive(Debug)]
pub struct BuiltNode {
    pub key: ComponentKey,
    pub inputs: Vec<String>,
    pub component: BuiltComponent,
}

#[derive(Debug, Clone)]
pub struct TopologyOptions {
    pub data_dir: PathBuf,
    /// Batches each component's input channel holds before senders wait.
    pub channel_capacity: usize,
}

/// Starts graphs.
#[derive(Debug)]
pub struct Topology;

/// A graph that is running.
#[derive(Debug)]
pub struct RunningTopology {
    trigger: ShutdownTrigger,
    tasks: JoinSet<()>,
    ready: Arc<AtomicBool>,
    registry: Registry,
}

impl Topology {
    /// Wires the nodes and spawns one task per component on the current
    /// runtime. `nodes` must have passed [`crate::graph::check`].
    pub fn start(
        nodes: Vec<BuiltNode>,
        registry: &Registry,
        opts: &TopologyOptions,
    ) -> RunningTopology {
        let (trigger, shutdown) = shutdown::channel();
        let capacity = opts.channel_capacity.max(1);

        // One input channel per consumer; every producer gets a sender to
        // each channel that lists it as an input.
        let mut receivers: BTreeMap<String, mpsc::Receiver<_>> = BTreeMap::new();
        let mut senders: BTreeMap<String, Vec<(mpsc::Sender<_>, Option<Signal>)>> = BTreeMap::new();
        // `id.metrics` (`.logs`, `.traces`) is one signal of `id`.
        let ids: std::collections::BTreeSet<&str> =
            nodes.iter().map(|n| n.key.id.as_str()).collect();
        for n in &nodes {
            if n.component.kind() == ComponentKind::Source {
                continue;
            }
            let (tx, rx) = mpsc::channel(capacity);
            receivers.insert(n.key.id.clone(), rx);
            for i in &n.inputs {
                let (producer, only) = match signal_input(i) {
                    Some((id, signal)) if ids.contains(id) => (id.to_string(), Some(signal)),
                    _ => (i.clone(), None),
                };
                senders
                    .entry(producer)
                    .or_default()
                    .push((tx.clone(), only));
            }
        }

        let mut tasks = JoinSet::new();
        let ready = Arc::new(AtomicBool::new(true));
        for n in nodes {
            let kind = n.component.kind();
            let metrics =
                ComponentMetrics::new(registry, &n.key.id, kind.as_str(), &n.key.type_name);
            let out = Output::filtered(
                senders.remove(&n.key.id).unwrap_or_default(),
                metrics.clone(),
            );
            let out = match kind {
                ComponentKind::Sink => out,
                _ => out.with_tap(registry.taps().point(&n.key.id)),
            };
            let key = n.key.clone();
            match n.component {
                BuiltComponent::Source(src) => {
                    let cx = SourceContext {
                        key: key.clone(),
                        out: out.with_gate(registry.families().gate(&key.id)),
                        shutdown: shutdown.clone(),
                        metrics,
                        data_dir: opts.data_dir.clone(),
                    };
                    tasks.spawn(report(key, src.run(cx), registry.clone(), ready.clone()));
                }
                BuiltComponent::Transform(t) => {
                    let input = take_input(&mut receivers, &key, &metrics);
                    let prefix = format!("{}.", key.id);
                    let named: Vec<String> = senders
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    let routes = named
                        .into_iter()
                        .filter_map(|k| {
                            let tx = senders.remove(&k)?;
                            let name = k[prefix.len()..].to_string();
                            let out = Output::filtered(tx, metrics.clone())
                                .with_tap(registry.taps().point(&k));
                            Some((name, out))
                        })
                        .collect();
                    tasks.spawn(run_transform(key, t, input, out, routes, metrics));
                }
                BuiltComponent::Sink(sink) => {
                    let cx = SinkContext {
                        key: key.clone(),
                        input: take_input(&mut receivers, &key, &metrics),
                        shutdown: shutdown.clone(),
                        metrics,
                        data_dir: opts.data_dir.clone(),
                    };
                    tasks.spawn(report(key, sink.run(cx), registry.clone(), ready.clone()));
                }
            }
        }
        RunningTopology {
            trigger,
            tasks,
            ready,
            registry: registry.clone(),
        }
    }
}

fn take_input(
    receivers: &mut BTreeMap<String, mpsc::Receiver<Batch>>,
    key: &ComponentKey,
    metrics: &ComponentMetrics,
) -> Input {
    let rx = receivers
        .remove(&key.id)
        .unwrap_or_else(|| mpsc::channel(1).1);
    Input::new(rx, metrics.clone())
}

/// Runs a component; a failure is logged, counted in
/// `iotel_component_failures_total` and makes the node not ready.
async fn report(
    key: ComponentKey,
    fut: crate::ComponentFuture,
    registry: Registry,
    ready: Arc<AtomicBool>,
) {
    if let Err(e) = fut.await {
        tracing::error!(component = %key.id, r#type = %key.type_name, "component failed: {e}");
        registry
            .counter(
                "iotel_component_failures_total",
                "Components that stopped with an error before shutdown.",
                &[
                    ("component_id", &key.id),
                    ("component_type", &key.type_name),
                ],
            )
            .inc();
        ready.store(false, Ordering::SeqCst);
    } else {
        tracing::debug!(component = %key.id, "component stopped");
    }
}

/// Named outputs of one transform, by name, each with its consumers.
type Routes = BTreeMap<String, Output>;

async fn run_transform(
    key: ComponentKey,
    mut t: Box<dyn Transform>,
    mut input: Input,
    out: Output,
    routes: Routes,
    metrics: ComponentMetrics,
) {
    let mut buf = Vec::new();
    let mut routed = Vec::new();
    let mut outputs = TransformOutputs {
        key,
        out,
        routes,
        metrics,
        unconnected_warned: false,
    };
    while let Some(Batch { events, ack }) = input.recv_batch().await {
        t.transform(events, &mut buf);
        t.routed(&mut routed);
        // What a batch becomes carries its acknowledgement on.
        outputs.send(&mut buf, &mut routed, Some(&ack)).await;
        ack.done();
    }
    t.flush(&mut buf);
    t.routed(&mut routed);
    outputs.send(&mut buf, &mut routed, None).await;
    tracing::debug!(component = %outputs.key.id, "transform stopped");
}

/// Where a transform's events go: its default output and its named ones.
struct TransformOutputs {
    key: ComponentKey,
    out: Output,
    routes: Routes,
    metrics: ComponentMetrics,
    /// Events went to a named output nobody takes, and that was logged.
    unconnected_warned: bool,
}

impl TransformOutputs {
    /// Sends what the transform made, `buf` to the default output and
    /// `routed` to the named ones, each batch carrying `ack` when given.
    async fn send(
        &mut self,
        buf: &mut Vec<Events>,
        routed: &mut Vec<(&'static str, Events)>,
        ack: Option<&crate::Ack>,
    ) {
        for ev in buf.drain(..) {
            send_to(&mut self.out, ev, ack).await;
        }
        for (name, ev) in routed.drain(..) {
            self.send_routed(name, ev, ack).await;
        }
    }

    /// Sends to a named output; with no consumer the events are counted as
    /// discarded (reason `unconnected_<name>`), never dropped silently.
    async fn send_routed(&mut self, name: &'static str, events: Events, ack: Option<&crate::Ack>) {
        match self.routes.get_mut(name) {
            Some(out) => send_to(out, events, ack).await,
            None => {
                if !self.unconnected_warned {
                    self.unconnected_warned = true;
                    tracing::warn!(
                        component = %self.key.id,
                        "events sent to output \"{name}\" are discarded: no component takes \"{}.{name}\" as input",
                        self.key.id
                    );
                }
                self.metrics
                    .discarded(&format!("unconnected_{name}"), events.len());
            }
        }
    }
}

/// Sends `events` to `out`, carrying `ack` on when given.
async fn send_to(out: &mut Output, events: Events, ack: Option<&crate::Ack>) {
    match ack {
        Some(a) => out.send_with(events, a.clone()).await,
        None => out.send(events).await,
    };
}

impl RunningTopology {
    /// True while every component is running and the node is not stopping.
    pub fn ready(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Waits until every component has stopped by itself (sources that ran
    /// dry) or `shutdown` fires, then stops the graph.
    ///
    /// Returns `true` when everything stopped within `grace`.
    pub async fn run_until(mut self, mut shutdown: Shutdown, grace: Duration) -> bool {
        tokio::select! {
            _ = shutdown.wait() => {}
            _ = async {
                while let Some(res) = self.tasks.join_next().await {
                    if let Err(e) = res {
                        tracing::error!("component task ended abnormally: {e}");
                        self.ready.store(false, Ordering::SeqCst);
                    }
                }
            } => {
                tracing::info!("every component has finished; stopping");
            }
        }
        self.stop(grace).await
    }

    /// Signals the sources and waits up to `grace` for everything to drain.
    ///
    /// Returns `true` when everything stopped in time; otherwise the rest is
    /// aborted and `false` returned.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.ready.store(false, Ordering::SeqCst);
        self.trigger
            .trigger_with_deadline(std::time::Instant::now() + grace);
        let drained = tokio::time::timeout(grace, async {
            while let Some(res) = self.tasks.join_next().await {
                if let Err(e) = res {
                    tracing::error!("component task ended abnormally: {e}");
                }
            }
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                remaining = self.tasks.len(),
                "shutdown grace period of {grace:?} ran out; aborting the components still running"
            );
            self.tasks.abort_all();
        }
        drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ComponentFuture, Registry};
    use iotel_model::{Events, LogRecord};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;

    /// Emits `count` single-log batches as fast as it may, numbering them.
    struct Counting {
        count: u64,
        emitted: Arc<AtomicU64>,
    }

    impl Source for Counting {
        fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
            Box::pin(async move {
                for i in 0..self.count {
                    if cx.shutdown.is_triggered() {
                        break;
                    }
                    cx.out
                        .send(Events::Logs(vec![LogRecord::new(i as i64, i.to_string())]))
                        .await;
                    self.emitted.fetch_add(1, Ordering::SeqCst);
                }
                // Runs until shutdown, as a real source does.
                cx.shutdown.wait().await;
                Ok(())
            })
        }
    }

    /// Doubles every log: the message, then the message again.
    struct Twice;

    impl Transform for Twice {
        fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
            out.push(events.clone());
            out.push(events);
        }
    }

    /// Collects messages; waits on `gate` before taking each batch.
    struct Collect {
        got: Arc<Mutex<Vec<String>>>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Sink for Collect {
        fn run(self: Box<Self>, mut cx: SinkContext) -> ComponentFuture {
            Box::pin(async move {
                loop {
                    let Ok(permit) = self.gate.acquire().await else {
                        break;
                    };
                    permit.forget();
                    let Some(Events::Logs(logs)) = cx.input.recv().await else {
                        break;
                    };
                    self.got
                        .lock()
                        .unwrap()
                        .extend(logs.into_iter().map(|l| l.message));
                }
                Ok(())
            })
        }
    }

    /// Sends one batch and waits for its acknowledgement, then records the
    /// outcome: 1 handled, 2 failed.
    struct AckedOnce {
        outcome: Arc<AtomicU64>,
    }

    impl Source for AckedOnce {
        fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
            Box::pin(async move {
                let batch = Events::Logs(vec![LogRecord::new(0, "a".to_string())]);
                let (open, acked) = cx.out.send_acked(batch).await;
                assert!(open);
                let ok = acked.wait().await;
                self.outcome.store(if ok { 1 } else { 2 }, Ordering::SeqCst);
                cx.shutdown.wait().await;
                Ok(())
            })
        }
    }

    /// Keeps every batch it receives, acknowledgement included.
    struct Hold(Arc<Mutex<Vec<Batch>>>);

    impl Sink for Hold {
        fn run(self: Box<Self>, mut cx: SinkContext) -> ComponentFuture {
            Box::pin(async move {
                while let Some(b) = cx.input.recv_batch().await {
                    self.0.lock().unwrap().push(b);
                }
                Ok(())
            })
        }
    }

    async fn wait_until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..2000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Runs source → twice → sink a, and source → sink b; returns the
    /// outcome cell and what each sink holds once a holds 2 and b 1.
    async fn acked_graph() -> (
        Arc<AtomicU64>,
        Arc<Mutex<Vec<Batch>>>,
        Arc<Mutex<Vec<Batch>>>,
        RunningTopology,
    ) {
        let outcome = Arc::new(AtomicU64::new(0));
        let held_a = Arc::new(Mutex::new(Vec::new()));
        let held_b = Arc::new(Mutex::new(Vec::new()));
        let nodes = vec![
            node(
                "src",
                &[],
                BuiltComponent::Source(Box::new(AckedOnce {
                    outcome: outcome.clone(),
                })),
            ),
            node(
                "twice",
                &["src"],
                BuiltComponent::Transform(Box::new(Twice)),
            ),
            node(
                "a",
                &["twice"],
                BuiltComponent::Sink(Box::new(Hold(held_a.clone()))),
            ),
            node(
                "b",
                &["src"],
                BuiltComponent::Sink(Box::new(Hold(held_b.clone()))),
            ),
        ];
        let running = Topology::start(nodes, &Registry::default(), &opts(4));
        wait_until("both sinks hold the batch", || {
            held_a.lock().unwrap().len() == 2 && held_b.lock().unwrap().len() == 1
        })
        .await;
        (outcome, held_a, held_b, running)
    }

    fn done_all(held: &Mutex<Vec<Batch>>) {
        for b in held.lock().unwrap().drain(..) {
            b.ack.done();
        }
    }

    #[tokio::test]
    async fn an_acknowledgement_completes_once_every_copy_downstream_is_handled() {
        let (outcome, held_a, held_b, running) = acked_graph().await;
        assert!(held_a.lock().unwrap().iter().all(|b| b.ack.is_awaited()));
        // One of the transform's two outputs handled: not done yet.
        held_a.lock().unwrap().pop().unwrap().ack.done();
        done_all(&held_b);
        tokio::task::yield_now().await;
        assert_eq!(outcome.load(Ordering::SeqCst), 0);
        done_all(&held_a);
        wait_until("the source saw the acknowledgement", || {
            outcome.load(Ordering::SeqCst) != 0
        })
        .await;
        assert_eq!(outcome.load(Ordering::SeqCst), 1, "handled");
        assert!(running.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn one_copy_dropped_unhandled_fails_the_acknowledgement() {
        let (outcome, held_a, held_b, running) = acked_graph().await;
        done_all(&held_a);
        // Sink b could not store its copy.
        held_b.lock().unwrap().clear();
        wait_until("the source saw the acknowledgement", || {
            outcome.load(Ordering::SeqCst) != 0
        })
        .await;
        assert_eq!(outcome.load(Ordering::SeqCst), 2, "failed");
        assert!(running.stop(Duration::from_secs(5)).await);
    }

    fn node(id: &str, inputs: &[&str], component: BuiltComponent) -> BuiltNode {
        BuiltNode {
            key: ComponentKey {
                id: id.into(),
                type_name: "test".into(),
            },
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            component,
        }
    }

    /// Sends odd-numbered messages to its `odd` output, the rest on.
    struct SplitOdd {
        odd: Vec<LogRecord>,
    }

    impl Transform for SplitOdd {
        fn transform(&mut self, events: Events, out: &mut Vec<Events>) {
            let Events::Logs(logs) = events else { return };
            let (odd, even): (Vec<_>, Vec<_>) = logs
                .into_iter()
                .partition(|l| l.message.parse::<u64>().unwrap() % 2 == 1);
            self.odd.extend(odd);
            out.push(Events::Logs(even));
        }

        fn routed(&mut self, out: &mut Vec<(&'static str, Events)>) {
            if !self.odd.is_empty() {
                out.push(("odd", Events::Logs(std::mem::take(&mut self.odd))));
            }
        }
    }

    type Collected = Arc<Mutex<Vec<String>>>;

    fn split_graph(odd_consumer: bool) -> (Vec<BuiltNode>, Collected, Collected) {
        let (even, odd) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let open = || Arc::new(tokio::sync::Semaphore::new(1000));
        let mut nodes = vec![
            node(
                "src",
                &[],
                BuiltComponent::Source(Box::new(Counting {
                    count: 10,
                    emitted: Arc::new(AtomicU64::new(0)),
                })),
            ),
            node(
                "split",
                &["src"],
                BuiltComponent::Transform(Box::new(SplitOdd { odd: vec![] })),
            ),
            node(
                "even",
                &["split"],
                BuiltComponent::Sink(Box::new(Collect {
                    got: even.clone(),
                    gate: open(),
                })),
            ),
        ];
        if odd_consumer {
            nodes.push(node(
                "odd",
                &["split.odd"],
                BuiltComponent::Sink(Box::new(Collect {
                    got: odd.clone(),
                    gate: open(),
                })),
            ));
        }
        (nodes, even, odd)
    }

    #[tokio::test]
    async fn a_named_output_reaches_the_components_that_take_it() {
        let (nodes, even, odd) = split_graph(true);
        let running = Topology::start(nodes, &Registry::default(), &opts(4));
        wait_until("all ten arrived", || {
            even.lock().unwrap().len() + odd.lock().unwrap().len() == 10
        })
        .await;
        assert_eq!(*even.lock().unwrap(), ["0", "2", "4", "6", "8"]);
        assert_eq!(*odd.lock().unwrap(), ["1", "3", "5", "7", "9"]);
        assert!(running.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_named_output_nothing_takes_is_counted_as_discarded() {
        let (nodes, even, _) = split_graph(false);
        let registry = Registry::default();
        let running = Topology::start(nodes, &registry, &opts(4));
        wait_until("the even ones arrived", || even.lock().unwrap().len() == 5).await;
        let discarded = ComponentMetrics::new(&registry, "split", "transform", "test")
            .discards("unconnected_odd");
        wait_until("the odd ones were counted", || discarded.get() == 5).await;
        assert!(running.stop(Duration::from_secs(5)).await);
    }

    /// Sends a log batch, then a metric batch, then waits for shutdown.
    struct Mixed;

    impl Source for Mixed {
        fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
            Box::pin(async move {
                cx.out
                    .send(Events::Logs(vec![LogRecord::new(0, "log".to_string())]))
                    .await;
                let m = iotel_model::Metric::new(
                    "m",
                    iotel_model::MetricType::Gauge,
                    iotel_model::Labels::empty(),
                    1.0,
                    0,
                );
                cx.out.send(Events::Metrics(vec![m])).await;
                cx.shutdown.wait().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn an_input_naming_one_signal_takes_only_that_signal() {
        let (logs, all) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let nodes = vec![
            node("src", &[], BuiltComponent::Source(Box::new(Mixed))),
            node(
                "only_logs",
                &["src.logs"],
                BuiltComponent::Sink(Box::new(Hold(logs.clone()))),
            ),
            node(
                "all",
                &["src"],
                BuiltComponent::Sink(Box::new(Hold(all.clone()))),
            ),
        ];
        let registry = Registry::default();
        let running = Topology::start(nodes, &registry, &opts(4));
        wait_until("the sink of everything has both", || {
            all.lock().unwrap().len() == 2
        })
        .await;
        let signals = |held: &Mutex<Vec<Batch>>| -> Vec<iotel_model::Signal> {
            held.lock()
                .unwrap()
                .iter()
                .map(|b| b.events.signal())
                .collect()
        };
        assert_eq!(signals(&logs), [iotel_model::Signal::Logs]);
        let sent = ComponentMetrics::new(&registry, "src", "source", "test");
        assert_eq!(sent.sent_total(), 2);
        assert!(running.stop(Duration::from_secs(5)).await);
    }

    /// Sends two metric batches, `gone` alone and then `gone` with `kept`,
    /// the first acknowledged; records the acknowledgement (1 handled).
    struct RetiredAndKept {
        outcome: Arc<AtomicU64>,
    }

    impl Source for RetiredAndKept {
        fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
            Box::pin(async move {
                let gauge = |name: &str| {
                    iotel_model::Metric::new(
                        name,
                        iotel_model::MetricType::Gauge,
                        iotel_model::Labels::empty(),
                        1.0,
                        0,
                    )
                };
                let (_, acked) = cx
                    .out
                    .send_acked(Events::Metrics(vec![gauge("gone")]))
                    .await;
                let ok = acked.wait().await;
                self.outcome.store(if ok { 1 } else { 2 }, Ordering::SeqCst);
                cx.out
                    .send(Events::Metrics(vec![gauge("gone"), gauge("kept")]))
                    .await;
                cx.shutdown.wait().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_retired_family_is_removed_at_the_source_and_counted() {
        let registry = Registry::default();
        registry
            .families()
            .restore([crate::families::RetiredFamily {
                name: "gone".into(),
                kind: iotel_model::MetricType::Gauge,
                help: None,
                unit: None,
                components: vec![],
            }]);
        let outcome = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let nodes = vec![
            node(
                "src",
                &[],
                BuiltComponent::Source(Box::new(RetiredAndKept {
                    outcome: outcome.clone(),
                })),
            ),
            node(
                "sink",
                &["src"],
                BuiltComponent::Sink(Box::new(Hold(held.clone()))),
            ),
        ];
        let running = Topology::start(nodes, &registry, &opts(4));
        wait_until("the second batch arrived", || {
            held.lock().unwrap().len() == 1
        })
        .await;
        // The first batch was all retired: dropped, yet handled.
        assert_eq!(outcome.load(Ordering::SeqCst), 1);
        let names: Vec<String> = match &held.lock().unwrap()[0].events {
            Events::Metrics(m) => m.iter().map(|m| m.name.to_string()).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(names, ["kept"]);
        let src = ComponentMetrics::new(&registry, "src", "source", "test");
        assert_eq!(src.discards("retired").get(), 2);
        assert_eq!(src.sent_total(), 1);
        let listed: Vec<String> = registry
            .families()
            .list()
            .into_iter()
            .map(|f| format!("{} {:?} {:?}", f.name, f.state, f.components))
            .collect();
        assert_eq!(listed, ["gone Retired []", "kept Active [\"src\"]"]);
        done_all(&held);
        assert!(running.stop(Duration::from_secs(5)).await);
    }

    fn opts(capacity: usize) -> TopologyOptions {
        TopologyOptions {
            data_dir: std::env::temp_dir(),
            channel_capacity: capacity,
        }
    }

    #[tokio::test]
    async fn a_slow_sink_holds_the_source_back_and_shutdown_delivers_everything() {
        let emitted = Arc::new(AtomicU64::new(0));
        let got = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let registry = Registry::default();
        let topo = Topology::start(
            vec![
                node(
                    "src",
                    &[],
                    BuiltComponent::Source(Box::new(Counting {
                        count: 100,
                        emitted: emitted.clone(),
                    })),
                ),
                node(
                    "twice",
                    &["src"],
                    BuiltComponent::Transform(Box::new(Twice)),
                ),
                node(
                    "out",
                    &["twice"],
                    BuiltComponent::Sink(Box::new(Collect {
                        got: got.clone(),
                        gate: gate.clone(),
                    })),
                ),
            ],
            &registry,
            &opts(1),
        );
        // The sink takes nothing yet: the source can fill the two channels
        // of capacity 1 and the transform's hands, and no more.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let held_back = emitted.load(Ordering::SeqCst);
        assert!(
            held_back <= 4,
            "the source ran ahead of a stalled sink: {held_back} batches"
        );

        // Let the sink go, wait for the source to finish, then stop.
        gate.add_permits(1000);
        tokio::time::timeout(Duration::from_secs(10), async {
            while emitted.load(Ordering::SeqCst) < 100 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the source finishes once the sink takes batches");
        assert!(topo.stop(Duration::from_secs(5)).await);
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 200);
        let expected: Vec<String> = (0..100)
            .flat_map(|i| [i.to_string(), i.to_string()])
            .collect();
        assert_eq!(*got, expected);

        let snap = registry.snapshot();
        let count = |name: &str, id: &str| {
            snap.iter()
                .find(|m| &*m.name == name && m.labels.get("component_id") == Some(id))
                .map(|m| m.value)
        };
        assert_eq!(
            count("iotel_component_sent_events_total", "src"),
            Some(100.0)
        );
        assert_eq!(
            count("iotel_component_received_events_total", "twice"),
            Some(100.0)
        );
        assert_eq!(
            count("iotel_component_sent_events_total", "twice"),
            Some(200.0)
        );
        assert_eq!(
            count("iotel_component_received_events_total", "out"),
            Some(200.0)
        );
    }

    #[tokio::test]
    async fn a_sink_that_never_finishes_is_aborted_after_the_grace_period() {
        struct Stuck;
        impl Sink for Stuck {
            fn run(self: Box<Self>, _cx: SinkContext) -> ComponentFuture {
                Box::pin(std::future::pending())
            }
        }
        let emitted = Arc::new(AtomicU64::new(0));
        let topo = Topology::start(
            vec![
                node(
                    "src",
                    &[],
                    BuiltComponent::Source(Box::new(Counting { count: 1, emitted })),
                ),
                node("stuck", &["src"], BuiltComponent::Sink(Box::new(Stuck))),
            ],
            &Registry::default(),
            &opts(4),
        );
        assert!(!topo.stop(Duration::from_millis(50)).await);
    }
}
