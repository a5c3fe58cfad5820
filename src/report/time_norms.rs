//! The vanishing gradient over time: ‖∂L/∂h_t‖ against the time step t for every
//! recurrent layer, at the first and at the last training step that logged it (dashed and
//! solid). A plain tanh RNN's line falls by orders of magnitude towards t = 0; an LSTM's
//! stays within a decade or two.

use plotters::prelude::RGBColor;

use super::colour::layer as layer_colour;
use super::history::{HiddenNormsPoint, History};
use super::lines::{LogLines, Series};

pub fn hidden_grad_over_time(h: &History) -> LogLines {
    let mut series = Vec::new();
    let snapshots: Vec<(bool, &HiddenNormsPoint)> = match h.hidden_norms.as_slice() {
        [] => Vec::new(),
        [only] => vec![(false, only)],
        [first, .., last] => vec![(true, first), (false, last)],
    };
    let layers = snapshots.first().map_or(0, |s| s.1.1.len());
    for (dashed, (step, per_layer)) in snapshots {
        for (l, (name, norms)) in per_layer.iter().enumerate() {
            series.push(Series {
                name: format!("{name} @ step {step}"),
                colour: layer_colour(l, layers.max(1)),
                width: if dashed { 1 } else { 2 },
                dashed,
                points: norms
                    .iter()
                    .enumerate()
                    .map(|(t, &v)| (t as f64, v))
                    .collect(),
            });
        }
    }
    if series.is_empty() {
        series.push(Series {
            name: "no recurrent layer".into(),
            colour: RGBColor(0, 0, 0),
            width: 1,
            dashed: false,
            points: Vec::new(),
        });
    }
    LogLines {
        title: "Hidden-state gradient ‖∂L/∂h_t‖ against time step (log scale)".into(),
        x_desc: "time step t",
        y_desc: "‖∂L/∂h_t‖ over the batch".into(),
        series,
    }
}
