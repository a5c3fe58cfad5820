//! STUDY_DIR/report/report.html: the summary sentences first, then the pictures (PNG
//! shown, SVG linked), a table of every run, and each run's gradient-flow heat map taken
//! from its own run report. Every reference is relative to the page, and only files that
//! exist are referenced.

use std::fmt::Write;
use std::path::Path;

use super::{Figure, StudyPage};
use crate::report::html::escape;
use crate::study::measure::RunResult;
use crate::study::sentences::{num, power_of_ten};

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;\
color:#222}h1{margin-bottom:.2em}.question{color:#444}.summary{background:#f4f7fb;\
border-left:4px solid #1f77b4;padding:.6em 1.2em}.summary li{margin:.3em 0}\
figure{margin:1.5em 0}img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;\
font-size:.9em}table{border-collapse:collapse;font-size:.85em;width:100%}\
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}td.l,th.l{text-align:left}\
tr.bad td{background:#fdecea}.grid{display:grid;grid-template-columns:repeat(auto-fill,\
minmax(320px,1fr));gap:1em}.grid figure{margin:0}";

/// How to read a picture, by the start of its file stem.
fn caption(stem: &str) -> &'static str {
    let known: [(&str, &str); 9] = [
        (
            "hidden_time_init",
            "Norm over the batch of the gradient with respect to the first recurrent layer's \
             hidden state at each time step, at initialization, one line per run. Back-propagation \
             through time runs from the right (the last step, where the loss is) to the left: a \
             line falling towards t = 0 is the vanishing gradient through time.",
        ),
        (
            "hidden_time_end",
            "The same at the last step with statistics, after training.",
        ),
        (
            "profile_init",
            "RMS of each weight layer's gradient at the first step (the gradient at \
             initialization), one line per run. A line falling towards layer 1 is a vanishing \
             gradient, one rising an exploding gradient; a level line is healthy.",
        ),
        (
            "backprop_init",
            "RMS of the gradient with respect to each layer's output at initialization: the \
             signal back-propagation carries. It shows vanishing that the weight gradient can \
             hide (in a ReLU net with weights too small, the forward signal shrinks as much).",
        ),
        (
            "profile_end",
            "The same weight-gradient profile at the last step with statistics.",
        ),
        (
            "ratio_vs_x",
            "The first layer's gradient RMS over the last layer's at initialization, against \
             the study's numeric axis: a line falling with depth is the vanishing gradient.",
        ),
        (
            "loss",
            "Training loss of every batch (log scale); a line that ends early stopped at a NaN or Inf.",
        ),
        ("accuracy", "Training accuracy of every batch."),
        (
            "time_per_step",
            "Milliseconds per training step of each run (statistics included, evaluation \
             excluded), on the executor named above.",
        ),
    ];
    known
        .iter()
        .find(|(k, _)| stem.starts_with(k))
        .map_or("", |(_, c)| c)
}

/// A ratio for the table: "10^-8.2", or the number itself near 1.
fn ratio_cell(r: f64) -> String {
    if !r.is_finite() || r <= 0.0 {
        "—".into()
    } else if (0.01..=100.0).contains(&r) {
        num(r)
    } else {
        power_of_ten(r)
    }
}

fn row(r: &RunResult, out: &Path, recurrent: bool) -> String {
    let bad = !r.finite || r.error.is_some();
    let diag = if let Some(e) = &r.error {
        format!("stopped: {e}")
    } else if r.findings.is_empty() {
        "—".into()
    } else {
        r.findings.join("; ")
    };
    let through_time = if recurrent {
        format!(
            "<td>{}</td><td>{}</td>",
            ratio_cell(r.init_hidden_ratio),
            ratio_cell(r.end_hidden_ratio)
        )
    } else {
        String::new()
    };
    format!(
        "<tr{}><td class=l>{label}</td><td>{}</td>\
         <td>{}</td>{through_time}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=l>{}</td></tr>\n",
        if bad { " class=bad" } else { "" },
        ratio_cell(r.init_ratio),
        ratio_cell(r.end_ratio),
        num(r.first_loss),
        num(r.final_loss),
        r.val_loss.map_or("—".into(), num),
        r.val_accuracy
            .map_or("—".into(), |a| format!("{:.1} %", 100.0 * a)),
        r.ms_per_step.map_or("—".into(), num),
        r.steps,
        escape(&diag),
        label = {
            let rel = format!("../{}/report/report.html", r.id);
            if out.join(&rel).is_file() {
                format!("<a href=\"{}\">{}</a>", escape(&rel), escape(&r.label()))
            } else {
                escape(&r.label())
            }
        },
    )
}

/// The page; `out` is the directory it is written into (references are checked there).
pub fn page(p: &StudyPage, figures: &[Figure], out: &Path) -> crate::error::Result<String> {
    let mut s = String::new();
    let title = escape(&p.spec.title);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>Study: {title}</title>\
         <style>{STYLE}</style></head><body>\n<h1>Study: {title}</h1>\n<p class=question>{}</p>\n",
        escape(&p.spec.question)
    );
    let _ = writeln!(s, "<div class=summary><h2>What the runs show</h2><ul>");
    for line in p.summary {
        let _ = writeln!(s, "<li>{}</li>", escape(line));
    }
    let _ = writeln!(s, "</ul></div>");
    let unfinished = p.planned.saturating_sub(p.runs.len());
    let _ = writeln!(
        s,
        "<p>{} runs{} · data: {} · {}</p>",
        p.runs.len(),
        if unfinished > 0 {
            format!(" finished, {unfinished} not yet (run the same command again to continue)")
        } else {
            String::new()
        },
        escape(&p.data),
        escape(&p.executor)
    );
    let mut section = "";
    for f in figures {
        if f.section != section {
            section = f.section;
            let _ = writeln!(s, "<h2>{}</h2>", escape(section));
        }
        let png = f
            .saved
            .png
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let svg = f
            .saved
            .svg
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        let _ = writeln!(
            s,
            "<figure><img src=\"{png}\" alt=\"{stem}\"><figcaption>{text} <a href=\"{png}\">PNG</a> \
             · <a href=\"{svg}\">SVG</a></figcaption></figure>",
            png = escape(&png),
            svg = escape(&svg),
            stem = escape(&f.saved.stem),
            text = escape(caption(&f.saved.stem))
        );
    }
    let recurrent = p.runs.iter().any(|r| !r.init_hidden_norms.is_empty());
    let (time_note, time_heads) = if recurrent {
        (
            " The through-time ratios are ‖∂L/∂h_0‖ / ‖∂L/∂h_{T−1}‖ of the first recurrent layer.",
            "<th>h_0/h_T at init</th><th>h_0/h_T at end</th>",
        )
    } else {
        ("", "")
    };
    let _ = writeln!(
        s,
        "<h2>Runs</h2>\n<p>Ratios compare the root mean square of the first weight layer's \
         gradient elements (‖∇W‖/√elements) with the last layer's, so that a wide input layer \
         does not count its size as gradient.{time_note} Final loss is the mean over the last tenth of the steps. Each name links to the run's \
         own report.</p>\n<table><tr><th class=l>run</th><th>ratio at init</th>\
         <th>ratio at end</th>{time_heads}<th>first loss</th><th>final loss</th><th>val. loss</th>\
         <th>val. accuracy</th><th>ms / step</th><th>steps</th><th class=l>diagnosis</th></tr>"
    );
    for r in p.runs {
        s.push_str(&row(r, out, recurrent));
    }
    let _ = writeln!(s, "</table>");
    let _ = writeln!(
        s,
        "<h2>Gradient flow of each run</h2>\n<p>log10 ‖∇W‖ of each layer (rows, input at the \
         top) at each step with statistics (columns).</p>\n<div class=grid>"
    );
    for r in p.runs {
        let rel = format!("../{}/report/gradient_flow.png", r.id);
        if out.join(&rel).is_file() {
            let _ = writeln!(
                s,
                "<figure><img src=\"{}\" alt=\"gradient flow\"><figcaption>{}</figcaption></figure>",
                escape(&rel),
                escape(&r.label())
            );
        }
    }
    let _ = writeln!(s, "</div>\n</body></html>");
    Ok(s)
}
