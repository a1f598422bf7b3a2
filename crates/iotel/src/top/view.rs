//! Drawing `iotel top`: the live view (ratatui) and the plain table of
//! `--batch`, from the same cells.

use super::model::{Reading, Row, SortKey, age, short};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState};

pub const HEADER: [&str; 11] = [
    "COMPONENT",
    "KIND",
    "TYPE",
    "IN/s",
    "OUT/s",
    "ERR/s",
    "ERRORS",
    "DROPS",
    "BUFFER",
    "AGE",
    "P99",
];

/// A certificate this close to its end is named in the title.
const CERT_WARNING_SECONDS: f64 = 14.0 * 86_400.0;

const WIDTHS: [u16; 11] = [22, 9, 22, 8, 8, 7, 8, 8, 14, 7, 7];

/// The cells of one row, as both views print them.
pub fn cells(r: &Row) -> [String; 11] {
    let (buffer, age_text) = match r.buffer {
        Some((events, oldest, fill)) => (
            format!("{} {:.0}%", short(events as f64), fill * 100.0),
            age(oldest),
        ),
        None => ("-".into(), "-".into()),
    };
    [
        r.id.clone(),
        r.kind.clone(),
        r.type_name.clone(),
        short(r.in_rate),
        short(r.out_rate),
        short(r.error_rate),
        short(r.errors as f64),
        short(r.discarded as f64),
        buffer,
        age_text,
        r.p99_seconds
            .map_or_else(|| "-".into(), |s| format!("{:.0}ms", s * 1000.0)),
    ]
}

/// The plain table of `--batch`: a title line, the header and a line per
/// row, columns padded.
pub fn plain(title: &str, rows: &[Row]) -> String {
    let mut out = format!("{title}\n");
    let line = |cols: &[String]| {
        cols.iter()
            .zip(WIDTHS)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < 3 {
                    format!("{c:<w$}", w = w as usize)
                } else {
                    format!("{c:>w$}", w = w as usize)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_string()
    };
    out.push_str(&line(&HEADER.map(String::from)));
    out.push('\n');
    for r in rows {
        out.push_str(&line(&cells(r)));
        out.push('\n');
    }
    out
}

/// The title: which node, how long up, and whether the last reading
/// worked.
pub fn title(api: &str, reading: Option<&Reading>, problem: Option<&str>) -> String {
    let node = reading.map_or_else(String::new, |r| {
        // The certificate that ends first, when that is within two weeks.
        let cert = r
            .tls
            .iter()
            .filter(|c| c.expires_in_seconds < CERT_WARNING_SECONDS)
            .min_by(|a, b| a.expires_in_seconds.total_cmp(&b.expires_in_seconds))
            .map_or_else(String::new, |c| {
                format!(
                    " · {} {} expires in {}",
                    c.component_id,
                    c.file,
                    age(c.expires_in_seconds)
                )
            });
        format!(
            " · {} · v{} · up {}{cert}",
            r.node.config,
            r.node.version,
            age((r.now_unix_ms - r.node.started_unix_ms) as f64 / 1000.0)
        )
    });
    match problem {
        Some(p) => format!("iotel top · {api}{node} · {p}"),
        None => format!("iotel top · {api}{node}"),
    }
}

/// What the live view is showing.
pub struct Screen<'a> {
    pub title: String,
    pub problem: bool,
    pub rows: &'a [Row],
    pub selected: usize,
    pub sort: SortKey,
    pub reverse: bool,
    pub filter: &'a str,
    pub editing: bool,
}

pub fn draw(f: &mut Frame<'_>, s: &Screen<'_>) {
    let [top, table, detail, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let title_style = if s.problem {
        Style::new().fg(Color::White).bg(Color::Red)
    } else {
        Style::new().fg(Color::Black).bg(Color::Cyan)
    };
    f.render_widget(Paragraph::new(s.title.as_str()).style(title_style), top);

    let header = TableRow::new(HEADER.iter().enumerate().map(|(i, h)| {
        let sorted = sort_column(s.sort) == Some(i);
        let text = if sorted {
            format!("{h}{}", if s.reverse { "▲" } else { "▼" })
        } else {
            (*h).to_string()
        };
        Cell::from(text)
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    let body = s.rows.iter().map(|r| {
        let style = if r.failed || r.error_rate > 0.0 {
            Style::new().fg(Color::Red)
        } else if r.drop_rate > 0.0 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        TableRow::new(cells(r).map(Cell::from)).style(style)
    });
    let widths = WIDTHS.map(Constraint::Length);
    let t = Table::new(body, widths)
        .header(header)
        .block(Block::new().borders(Borders::TOP | Borders::BOTTOM))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected((!s.rows.is_empty()).then_some(s.selected));
    f.render_stateful_widget(t, table, &mut state);

    let why = s
        .rows
        .get(s.selected)
        .map(|r| {
            if r.why.is_empty() {
                format!("{}: no errors, nothing discarded", r.id)
            } else {
                format!("{}: {}", r.id, r.why)
            }
        })
        .unwrap_or_default();
    f.render_widget(Paragraph::new(why), detail);

    let filter = if s.editing {
        Span::styled(
            format!(" filter: {}█ ", s.filter),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    } else if s.filter.is_empty() {
        Span::raw("")
    } else {
        Span::raw(format!(" filter: {:?} ", s.filter))
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(format!(
                "q quit · s sort ({}) · r reverse · / filter · ↑↓ select",
                s.sort.name()
            )),
            filter,
        ])),
        keys,
    );
}

/// The header column a sort key orders.
fn sort_column(k: SortKey) -> Option<usize> {
    match k {
        SortKey::Graph => None,
        SortKey::Id => Some(0),
        SortKey::In => Some(3),
        SortKey::Out => Some(4),
        SortKey::Errors => Some(5),
        SortKey::Drops => Some(7),
        SortKey::Buffer => Some(8),
    }
}
