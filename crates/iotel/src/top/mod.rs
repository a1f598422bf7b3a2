//! `iotel top --api ADDR`: a live terminal view of a running node, read
//! from its `/api/v1/components` every `--interval`: each component with
//! events in and out per second, errors, drops, buffer depth, fill and
//! age, and a sink's added latency. Keys sort, filter and select; the
//! selected component's errors and drops are listed by code and reason.
//!
//! A node that is down, or an address that is not an iotel node, is said
//! in the title bar (red) and read again at the next interval; the view
//! keeps the last good reading. `--batch N` prints N plain tables instead,
//! for scripts and logs.

mod model;
mod view;

#[cfg(test)]
mod tests;

use crate::api_client::ApiClient;
use model::{Reading, SortKey};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The node API: host:port or http(s)://host:port.
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub api: String,
    /// Time between readings, e.g. 1s, 500ms.
    #[arg(long, default_value = "1s")]
    pub interval: iotel_engine::config::Duration,
    /// Show only components whose id, kind or type contain this.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// The column to sort by.
    #[arg(long, value_enum, default_value_t = SortKey::Graph)]
    pub sort: SortKey,
    /// Print N plain tables, one per interval, instead of the live view.
    #[arg(long, value_name = "N")]
    pub batch: Option<u32>,
    #[command(flatten)]
    pub tls: crate::api_client::TlsArgs,
}

pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&args.api, &args.tls).map_err(anyhow::Error::msg)?;
    let interval = args.interval.get().max(Duration::from_millis(100));
    if let Some(n) = args.batch {
        return batch(&client, &args, interval, n);
    }
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("iotel top needs a terminal; --batch N prints plain tables instead");
    }
    live(client, args, interval)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `--batch N`: a table per reading on stdout, problems on stderr. Exit 1
/// when the last reading failed.
fn batch(
    client: &ApiClient,
    args: &TopArgs,
    interval: Duration,
    n: u32,
) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let mut before: Option<Reading> = None;
    let mut ok = false;
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(interval);
        }
        match rt.block_on(client.get_json::<Reading>("/api/v1/components")) {
            Ok(now) => {
                let rows = model::arrange(
                    model::rows(before.as_ref(), &now),
                    &args.filter,
                    args.sort,
                    false,
                );
                print!(
                    "{}",
                    view::plain(&view::title(client.base(), Some(&now), None), &rows)
                );
                before = Some(now);
                ok = true;
            }
            Err(e) => {
                eprintln!("{e}; reading again in {interval:?}");
                ok = false;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Restores the terminal however the view ends.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn live(client: ApiClient, args: TopArgs, interval: Duration) -> anyhow::Result<ExitCode> {
    // Readings come from a thread of their own, so a slow node never
    // freezes the keys.
    let (tx, rx) = mpsc::channel::<Result<Reading, String>>();
    let reader = client.clone();
    std::thread::spawn(move || {
        let Ok(rt) = runtime() else {
            return;
        };
        loop {
            let reading = rt.block_on(reader.get_json::<Reading>("/api/v1/components"));
            if tx.send(reading).is_err() {
                return;
            }
            std::thread::sleep(interval);
        }
    });

    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let mut before: Option<Reading> = None;
    let mut now: Option<Reading> = None;
    let mut problem: Option<String> = Some("connecting…".into());
    let mut sort = args.sort;
    let mut reverse = false;
    let mut filter = args.filter.clone();
    let mut editing = false;
    let mut selected = 0usize;
    loop {
        while let Ok(reading) = rx.try_recv() {
            match reading {
                Ok(r) => {
                    before = now.take();
                    now = Some(r);
                    problem = None;
                }
                Err(e) => problem = Some(format!("{e}; retrying every {interval:?}")),
            }
        }
        let rows = now.as_ref().map_or_else(Vec::new, |n| {
            model::arrange(model::rows(before.as_ref(), n), &filter, sort, reverse)
        });
        selected = selected.min(rows.len().saturating_sub(1));
        let screen = view::Screen {
            title: view::title(client.base(), now.as_ref(), problem.as_deref()),
            problem: problem.is_some(),
            rows: &rows,
            selected,
            sort,
            reverse,
            filter: &filter,
            editing,
        };
        terminal.draw(|f| view::draw(f, &screen))?;

        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            break;
        }
        if editing {
            match key.code {
                KeyCode::Enter => editing = false,
                KeyCode::Esc => {
                    editing = false;
                    filter.clear();
                }
                KeyCode::Backspace => {
                    filter.pop();
                }
                KeyCode::Char(c) => filter.push(c),
                _ => {}
            }
            continue;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => break,
            KeyCode::Char('s') => sort = sort.next(),
            KeyCode::Char('r') => reverse = !reverse,
            KeyCode::Char('/') => editing = true,
            KeyCode::Up | KeyCode::Char('k') => selected = selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => selected += 1,
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
