//! report.html: one self-contained page. Every picture's SVG is inlined (so the page alone
//! shows everything); beside each picture are links to its PNG and SVG files, relative to
//! the page, which exist next to it. The diagnosis findings of summary.json, when the run
//! has any, sit in a column beside the pictures.

use std::fmt::Write;

use super::canvas::Saved;
use super::history::History;
use crate::error::{Error, Result};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
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

/// How to read each picture, by file stem.
fn caption(stem: &str) -> (&'static str, &'static str) {
    match stem {
        "gradient_flow" => (
            "Gradient flow",
            "log10 of each layer's weight-gradient norm at every step with full statistics, input \
             layer at the top. Healthy flow is a roughly even colour down each column; a column \
             that darkens towards the top is a vanishing gradient, one that brightens an \
             exploding gradient.",
        ),
        "grad_norms" => (
            "Gradient norm per layer",
            "‖∇W‖ of each layer over training (log scale), and the total gradient norm over every \
             parameter (dashed). Lines several decades apart mean the layers learn at very \
             different speeds.",
        ),
        "update_ratios" => (
            "Update-to-weight ratio",
            "‖ΔW‖/‖W‖ of each layer's optimizer step. Around 1e-3 (dashed) is the classic \
             healthy value; far below, the layer barely moves (learning rate too low for it, or a \
             vanished gradient); far above, the steps are too large. A gap in a line is a step whose \
             update was exactly zero (a step too small to change an f32 weight) or not finite.",
        ),
        "grad_histograms" => (
            "Histograms of log2 |∇W|",
            "For each layer, how the magnitudes of its weight-gradient elements are distributed \
             (y, in powers of two) at each step (x). A band that slides down, or sits lower in \
             earlier layers, shows the gradient shrinking.",
        ),
        "loss_accuracy" => (
            "Loss and accuracy",
            "Training loss and accuracy of every batch, and the validation set at the end of \
             every epoch.",
        ),
        _ => ("", ""),
    }
}

/// An SVG file's markup, ready to inline (without an XML declaration).
fn inline_svg(saved: &Saved) -> Result<String> {
    let text = std::fs::read_to_string(&saved.svg).map_err(|e| Error::io(&saved.svg, e))?;
    let start = text
        .find("<svg")
        .ok_or_else(|| Error::data(&saved.svg, "not an SVG file (no <svg element)".to_string()))?;
    Ok(text[start..].to_string())
}

fn summary_table(h: &History) -> String {
    let Some(s) = &h.summary else {
        return String::new();
    };
    let rows = [
        ("executor", "executor"),
        ("data", "data"),
        ("params", "parameters"),
        ("steps", "steps"),
        ("epochs", "epochs"),
        ("final_train_loss", "final train loss"),
        ("final_train_accuracy", "final train accuracy"),
        ("final_val_loss", "final validation loss"),
        ("final_val_accuracy", "final validation accuracy"),
        ("test_accuracy", "test accuracy"),
        ("samples_per_second", "samples per second"),
    ];
    let mut out = String::from("<table class=\"summary\">\n");
    for (key, label) in rows {
        let Some(v) = s.get(key) else { continue };
        let text = match v {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) if n.is_f64() => format!("{x:.4}"),
                _ => n.to_string(),
            },
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(&text)
        );
    }
    out.push_str("</table>\n");
    out
}

fn findings(h: &History) -> String {
    if h.findings.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<aside class=\"findings\">\n<h2>Findings ({})</h2>\n",
        h.findings.len()
    );
    for f in &h.findings {
        let _ = writeln!(
            out,
            "<div class=\"finding\"><h3>{}</h3>{}{}{}</div>",
            escape(&f.kind),
            if f.layers.is_empty() {
                String::new()
            } else {
                format!("<p><b>layers:</b> {}</p>", escape(&f.layers.join(", ")))
            },
            if f.evidence.is_empty() {
                String::new()
            } else {
                format!("<p><b>evidence:</b> {}</p>", escape(&f.evidence))
            },
            if f.remedy.is_empty() {
                String::new()
            } else {
                format!("<p><b>remedy:</b> {}</p>", escape(&f.remedy))
            },
        );
    }
    out.push_str("</aside>\n");
    out
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:0;color:#222}\
header{padding:12px 24px;background:#f4f4f4;border-bottom:1px solid #ddd}\
.layout{display:flex;gap:24px;padding:16px 24px;align-items:flex-start}\
main{flex:1;min-width:0}\
figure{margin:0 0 32px 0}\
figure svg{max-width:100%;height:auto;border:1px solid #eee}\
figcaption{max-width:70em;margin:6px 0}\
.files a{margin-right:1em}\
.findings{width:26em;flex:none;position:sticky;top:8px}\
.finding{border-left:4px solid #d62728;background:#fff5f5;padding:6px 10px;margin-bottom:10px}\
.finding h3{margin:2px 0}\
.finding p{margin:4px 0}\
table.summary th{text-align:left;padding-right:1em;font-weight:normal;color:#555}";

/// The whole page.
pub fn page(h: &History, pictures: &[Saved]) -> Result<String> {
    let mut out = String::new();
    let title = format!("gradscope report: {}", h.name());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n\
         <p>run directory <code>{}</code>: {} steps logged, {} with per-layer statistics, \
         {} layers, {} evaluations.</p>\n{}</header>\n<div class=\"layout\">\n<main>\n",
        escape(&title),
        escape(&title),
        escape(&h.run_dir.display().to_string()),
        h.steps.len(),
        h.stats.len(),
        h.layers.len(),
        h.evals.len(),
        summary_table(h),
    );
    if h.stats.is_empty() {
        out.push_str(
            "<p>This run logged no per-layer statistics, so only the loss and accuracy are \
             shown; train with <code>--stats-every N</code> to record them.</p>\n",
        );
    }
    for p in pictures {
        let (name, text) = caption(&p.stem);
        let file = |path: &std::path::Path| {
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let _ = write!(
            out,
            "<figure id=\"{stem}\">\n<h2>{}</h2>\n{}\n<figcaption>{}</figcaption>\n\
             <p class=\"files\"><a href=\"{png}\">{png}</a><a href=\"{svg}\">{svg}</a></p>\n</figure>\n",
            escape(name),
            inline_svg(p)?,
            escape(text),
            stem = escape(&p.stem),
            png = escape(&file(&p.png)),
            svg = escape(&file(&p.svg)),
        );
    }
    out.push_str("</main>\n");
    out.push_str(&findings(h));
    out.push_str("</div>\n</body>\n</html>\n");
    Ok(out)
}
