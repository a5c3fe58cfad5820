//! `gradscope report`: pictures and report.html from a short CPU run, every file the page
//! references exists, findings from summary.json are shown, and a malformed run directory
//! gives an error naming the file and line.

use std::path::Path;
use std::process::Command;

use gradscope::config::{DeviceChoice, TrainConfig};
use gradscope::report::generate;
use gradscope::train::{Silent, train};

fn short_run(dir: &Path) {
    let config = TrainConfig {
        depth: 2,
        width: 16,
        max_steps: 8,
        epochs: 1,
        device: DeviceChoice::Cpu,
        tensorboard: false,
        run_dir: Some(dir.to_path_buf()),
        ..TrainConfig::default()
    };
    train(&config, "report-test", &mut Silent).unwrap();
}

/// Every `href="…"` and `src="…"` of the page.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn report_from_a_short_run() {
    let tmp = tempfile::tempdir().unwrap();
    short_run(tmp.path());
    // A finding as the diagnosis writes them into summary.json.
    let spath = tmp.path().join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spath).unwrap()).unwrap();
    summary["findings"] = serde_json::json!([{
        "kind": "vanishing_gradient",
        "layers": ["hidden1"],
        "evidence": "‖∇W‖ ratio 1e-9 <planted>",
        "remedy": "use ReLU",
    }]);
    std::fs::write(&spath, summary.to_string()).unwrap();

    let report = generate(tmp.path()).unwrap();
    let stems: Vec<&str> = report.pictures.iter().map(|p| p.stem.as_str()).collect();
    assert_eq!(
        stems,
        [
            "gradient_flow",
            "grad_norms",
            "update_ratios",
            "grad_histograms",
            "loss_accuracy"
        ]
    );
    for p in &report.pictures {
        let png = std::fs::read(&p.png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", p.png.display());
        assert!(
            png.len() > 10_000,
            "{} is only {} bytes",
            p.png.display(),
            png.len()
        );
        let svg = std::fs::read_to_string(&p.svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("</svg>"),
            "{}",
            p.svg.display()
        );
        assert!(
            svg.matches("<text").count() > 10,
            "{} has no labels",
            p.svg.display()
        );
    }
    let flow = std::fs::read_to_string(report.dir.join("gradient_flow.svg")).unwrap();
    assert!(
        flow.contains("⚠ hidden1 (16, relu)"),
        "the finding's layer is marked"
    );
    assert!(
        !flow.contains("⚠ hidden2"),
        "only the finding's layer is marked"
    );
    for name in [
        "hidden1 (16, relu)",
        "hidden2 (16, relu)",
        "output (10)",
        "training step",
    ] {
        assert!(
            flow.contains(name),
            "gradient flow lacks the label `{name}`"
        );
    }

    let html = std::fs::read_to_string(&report.html).unwrap();
    let refs = references(&html);
    assert_eq!(refs.len(), 10, "two links per picture: {refs:?}");
    for r in &refs {
        assert!(
            !r.contains("://") && !r.starts_with('/'),
            "not relative: {r}"
        );
        assert!(
            report.dir.join(r).is_file(),
            "report.html references missing {r}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 5, "every SVG inlined");
    assert!(html.contains("vanishing_gradient") && html.contains("use ReLU"));
    assert!(html.contains("&lt;planted&gt;"), "finding text is escaped");
    assert_eq!(report.findings, 1);
}

#[test]
fn findings_absent_show_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    short_run(tmp.path());
    let report = generate(tmp.path()).unwrap();
    let html = std::fs::read_to_string(&report.html).unwrap();
    assert!(!html.contains("class=\"findings\""));
    assert_eq!(report.findings, 0);
}

#[test]
fn missing_metrics_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = generate(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl"), "{err}");
    assert!(err.contains("is not a run directory"), "{err}");
}

#[test]
fn corrupt_line_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    short_run(tmp.path());
    let path = tmp.path().join("metrics.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let half = lines[2].len() / 2;
    lines[2].truncate(half);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = generate(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("metrics.jsonl") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn binary_reports_and_fails_clearly() {
    let bin = env!("CARGO_BIN_EXE_gradscope");
    let tmp = tempfile::tempdir().unwrap();
    short_run(tmp.path());
    let out = Command::new(bin)
        .arg("report")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html"));
    assert!(tmp.path().join("report/report.html").is_file());

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .arg("report")
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.jsonl"), "{err}");
}

/// The log axes' ticks cover the whole range in whole decades, at most a dozen of them:
/// a recurrent net's 25-decade gradient curve gets labels to both ends (plotters' own key
/// points stopped at 1e-14 there).
#[test]
fn log_axis_ticks_reach_both_ends_of_wide_ranges() {
    use gradscope::report::canvas::decade_ticks;
    let t = decade_ticks(1e-25, 1.0);
    assert_eq!(t.first(), Some(&1e-24));
    assert_eq!(t.last(), Some(&1.0));
    assert!(t.len() <= 12 && t.len() >= 8, "{t:?}");
    assert_eq!(decade_ticks(1e-3, 1.0), vec![1e-3, 1e-2, 1e-1, 1.0]);
    assert_eq!(decade_ticks(1.0, 1e2), vec![1.0, 10.0, 100.0]);
    // Exact powers of ten, ascending, whatever the span.
    for (lo, hi) in [(1e-40, 1e30), (1e-7, 1e-6), (1e5, 1e9)] {
        let t = decade_ticks(lo, hi);
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        assert!(t.iter().all(|v| *v >= lo && *v <= hi), "{t:?}");
        assert!(t.len() <= 12, "{t:?}");
    }
}
