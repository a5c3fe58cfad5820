//! The bundled font: DejaVu Sans (assets/fonts/, Bitstream Vera licence with public-domain
//! DejaVu changes, see LICENSE-DejaVu.txt) compiled into the binary and registered with
//! plotters' ab_glyph renderer, so that drawing text needs no system font library at build
//! or run time.

use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::error::{Error, Result};

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name every picture asks for.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font once per process.
pub fn register() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "the bundled font assets/fonts/DejaVuSans.ttf could not be parsed",
        ))
    }
}
