//! The status page (`GET /`): one server-rendered HTML document with inline CSS and SVG, no
//! script and no external asset. Every value that came from an event (ids, keys, styles, error
//! text, dead-letter reasons) goes through [`escape_html`].

use super::jobs::{BoardSnapshot, FinishedJob, JobInProgress, MINUTES};

/// `s` as HTML text or attribute value (in double or single quotes).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border-bottom:1px solid #ddd;padding:.25em .75em;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#176f2c}.bad{color:#b3261e}\
progress{width:12em}\
svg{background:#fafafa;border:1px solid #ddd}";

/// The whole page for `snap`, with the service's health (`/healthz`) and readiness (`/readyz`).
pub fn render_status_page(snap: &BoardSnapshot, health: &Result<(), String>, readiness: &Result<(), String>) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"refresh\" content=\"5\">");
    h.push_str("<title>stylestream status</title>");
    h.push_str(&format!("<style>{STYLE}</style></head><body>\n<h1>stylestream</h1>\n"));
    h.push_str(&state_line("health", health));
    h.push_str(&state_line("readiness", readiness));
    h.push_str(&in_progress(&snap.in_progress));
    h.push_str(&chart(&snap.fps_per_minute));
    h.push_str(&recent(&snap.recent));
    h.push_str(&failed(&snap.recent));
    h.push_str(&dead_letters(&snap.dead_letters));
    h.push_str("</body></html>\n");
    h
}

fn state_line(what: &str, state: &Result<(), String>) -> String {
    match state {
        Ok(()) => format!("<p id=\"{what}\">{what}: <span class=\"ok\">ok</span></p>\n"),
        Err(why) => format!("<p id=\"{what}\">{what}: <span class=\"bad\">{}</span></p>\n", escape_html(why)),
    }
}

fn in_progress(jobs: &[JobInProgress]) -> String {
    let mut h = format!("<h2>In progress ({})</h2>\n", jobs.len());
    if jobs.is_empty() {
        h.push_str("<p>No job in progress.</p>\n");
        return h;
    }
    h.push_str("<table id=\"in-progress\"><tr><th>Job</th><th>Input</th><th>Style</th><th>Progress</th>");
    h.push_str("<th>Frames</th><th>fps</th><th>Running</th></tr>\n");
    for j in jobs {
        let (bar, frames) = match j.total_frames {
            Some(total) => (
                format!("<progress value=\"{}\" max=\"{total}\"></progress>", j.frames_done.min(total)),
                format!("{} / {total}", j.frames_done),
            ),
            None => ("<progress></progress>".to_string(), j.frames_done.to_string()),
        };
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{bar}</td><td class=\"n\">{frames}</td>\
             <td class=\"n\">{:.2}</td><td class=\"n\">{}</td></tr>\n",
            escape_html(&j.id),
            escape_html(&j.input),
            escape_html(&j.style),
            j.fps,
            duration(j.seconds),
        ));
    }
    h.push_str("</table>\n");
    h
}

/// A bar chart of frames per second, one bar a minute, the current minute on the right.
fn chart(fps_per_minute: &[f64]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let max = fps_per_minute.iter().copied().fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { (H - 20.0) / max } else { 0.0 };
    let bar = W / MINUTES as f64;
    let mut h = "<h2>Frames per second, last hour</h2>\n".to_string();
    h.push_str(&format!(
        "<svg id=\"fps-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"frames per second per minute\">\n"
    ));
    let n = fps_per_minute.len();
    for (i, v) in fps_per_minute.iter().enumerate() {
        let height = v * scale;
        h.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#3b6fb6\">\
             <title>{} min ago: {v:.2} fps</title></rect>\n",
            i as f64 * bar,
            H - height,
            bar - 1.0,
            n - 1 - i,
        ));
    }
    h.push_str(&format!(
        "<text x=\"4\" y=\"14\" font-size=\"12\">max {max:.2} fps</text>\
         <text x=\"{}\" y=\"14\" font-size=\"12\" text-anchor=\"end\">now</text></svg>\n",
        W - 4.0,
    ));
    h
}

fn recent(jobs: &[FinishedJob]) -> String {
    let mut h = format!("<h2>Last finished ({})</h2>\n", jobs.len());
    if jobs.is_empty() {
        h.push_str("<p>No job finished yet.</p>\n");
        return h;
    }
    h.push_str("<table id=\"recent\"><tr><th>Job</th><th>Outcome</th><th>Style</th><th>Ended</th>");
    h.push_str("<th>Took</th><th>Frames</th><th>fps</th></tr>\n");
    for j in jobs {
        let class = if j.is_failure() { "bad" } else { "ok" };
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{:.2}</td></tr>\n",
            escape_html(&j.id),
            escape_html(j.outcome.as_str()),
            escape_html(&j.style),
            j.ended_at.format("%Y-%m-%d %H:%M:%S UTC"),
            duration(j.seconds),
            j.frames,
            j.fps,
        ));
    }
    h.push_str("</table>\n");
    h
}

fn failed(jobs: &[FinishedJob]) -> String {
    let failed: Vec<&FinishedJob> = jobs.iter().filter(|j| j.is_failure()).collect();
    let mut h = format!("<h2>Failed ({})</h2>\n", failed.len());
    if failed.is_empty() {
        h.push_str("<p>No recent failure.</p>\n");
        return h;
    }
    h.push_str("<table id=\"failed\"><tr><th>Job</th><th>Outcome</th><th>Input</th><th>Ended</th>");
    h.push_str("<th>Took</th><th>Error</th></tr>\n");
    for j in failed {
        h.push_str(&format!(
            "<tr><td>{}</td><td class=\"bad\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
            escape_html(&j.id),
            escape_html(j.outcome.as_str()),
            escape_html(&j.input),
            j.ended_at.format("%Y-%m-%d %H:%M:%S UTC"),
            duration(j.seconds),
            escape_html(j.error.as_deref().unwrap_or("")),
        ));
    }
    h.push_str("</table>\n");
    h
}

fn dead_letters(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let mut h = "<h2>Dead letters</h2>\n".to_string();
    if counts.is_empty() {
        h.push_str("<p>None.</p>\n");
        return h;
    }
    h.push_str("<table id=\"dead-letters\"><tr><th>Reason</th><th>Messages</th></tr>\n");
    for (reason, n) in counts {
        let r = escape_html(reason);
        h.push_str(&format!("<tr data-reason=\"{r}\"><td>{r}</td><td class=\"n\">{n}</td></tr>\n"));
    }
    h.push_str("</table>\n");
    h
}

/// `seconds` as `1 h 02 min`, `3 min 05 s` or `4.2 s`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    let whole = s as u64;
    if whole >= 3600 {
        format!("{} h {:02} min", whole / 3600, whole % 3600 / 60)
    } else if whole >= 60 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::jobs::JobBoard;

    const NASTY: &str = "<script>alert(1)</script>&\"'";

    #[test]
    fn escaping_covers_text_and_both_attribute_quotes() {
        assert_eq!(escape_html(NASTY), "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;");
        assert_eq!(escape_html("plain-id_42/ü"), "plain-id_42/ü");
    }

    #[test]
    fn every_event_value_is_escaped_on_the_page() {
        let board = JobBoard::new();
        board.started(NASTY, NASTY, NASTY, NASTY, Some(10));
        board.progress(NASTY, 4);
        board.started("x", NASTY, NASTY, NASTY, None);
        board.finished("x", crate::job::OutcomeKind::Failed, Some(NASTY));
        board.dead_lettered(crate::job::PoisonCode::CorruptInput);
        let page = render_status_page(&board.snapshot(), &Err(NASTY.into()), &Ok(()));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("alert(1)</"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"), "{page}");
        assert!(page.contains("<progress value=\"4\" max=\"10\">"), "{page}");
        assert!(page.contains("<svg id=\"fps-chart\""), "{page}");
    }

    #[test]
    fn an_empty_board_renders_every_section() {
        let page = render_status_page(&JobBoard::new().snapshot(), &Ok(()), &Err("broker: not consuming".into()));
        for s in ["No job in progress.", "No job finished yet.", "No recent failure.", "<svg", "broker: not consuming"]
        {
            assert!(page.contains(s), "{s}: {page}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(4.2), "4.2 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
    }
}
