//! Plan-time choice of the matmul variant for each (layout, M, N, K), and of the
//! convolution variant for each (pass, geometry), on the current adapter.
//!
//! Autotune: every variant the shape allows (`MatmulVariant::candidates`) is built and timed
//! on scratch buffers of the shape (median of a few runs after a warm-up, `gpu::timing`), and
//! the fastest is kept. Choices are cached per adapter (name, driver, backend) and shape: in
//! memory for the process, and in a JSON file (`$XDG_CACHE_HOME/gradscope/autotune.json` or
//! `~/.cache/gradscope/autotune.json`) so a later run on the same machine skips the timing.
//! An unreadable or corrupt cache file is ignored with a warning, never an error; a failed
//! write only warns.
//!
//! `GRADSCOPE_AUTOTUNE` = `0`/`off` turns the timing off (a heuristic picks, and the file is
//! neither read nor written), `1`/`on` forces it on; unset, it runs on hardware adapters and
//! not on software ones (lavapipe's timings say nothing about a GPU, and timing would slow
//! every test). `GRADSCOPE_AUTOTUNE_CACHE` names another cache file.
//!
//! Every variant sums each element of C in ascending k (see shaders/matmul_tiled.wgsl), so
//! the choice changes the speed, not the result.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::GpuContext;
use super::kernels::conv2d::{ConvPass, ConvVariant, conv_heuristic};
use super::kernels::matmul::{Epilogue, MatmulVariant, matmul_with};
use super::timing;
use crate::error::Result;
use crate::ops::{Conv2dShape, MatmulLayout, MatmulShape};

/// The environment variable that turns the autotune off (`0`, `off`) or on (`1`, `on`).
pub const AUTOTUNE_ENV: &str = "GRADSCOPE_AUTOTUNE";
/// The environment variable naming the cache file.
pub const CACHE_ENV: &str = "GRADSCOPE_AUTOTUNE_CACHE";

/// Whether variants are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Time on hardware adapters, use the heuristic on software ones.
    Auto,
    /// Always time (and use the cache file).
    On,
    /// Never time: the heuristic picks; the cache file is not touched.
    Off,
}

/// The mode `GRADSCOPE_AUTOTUNE` asks for (Auto when unset or unrecognized).
pub fn env_mode() -> Mode {
    match std::env::var(AUTOTUNE_ENV)
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "0" | "off" | "false" | "no" => Mode::Off,
        "1" | "on" | "true" | "yes" => Mode::On,
        _ => Mode::Auto,
    }
}

static MODE_OVERRIDE: Mutex<Option<Mode>> = Mutex::new(None);

/// Sets the mode for this process, over the environment (a command-line flag's hook).
pub fn set_mode(mode: Option<Mode>) {
    if let Ok(mut m) = MODE_OVERRIDE.lock() {
        *m = mode;
    }
}

fn mode() -> Mode {
    MODE_OVERRIDE
        .lock()
        .ok()
        .and_then(|m| *m)
        .unwrap_or_else(env_mode)
}

/// The cache file: `GRADSCOPE_AUTOTUNE_CACHE`, else under `$XDG_CACHE_HOME`, else under
/// `~/.cache`; None when neither is known.
pub fn cache_path() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = nonempty(CACHE_ENV) {
        return Some(PathBuf::from(p));
    }
    let base = nonempty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("gradscope").join("autotune.json"))
}

/// The adapter part of a cache key: what identifies the code the shaders compile to.
pub fn adapter_key(ctx: &GpuContext) -> String {
    let a = &ctx.adapter;
    format!(
        "{} | {} {} | {}",
        a.name,
        a.driver,
        a.driver_info.trim(),
        a.backend
    )
}

/// The shape part of a cache key, e.g. `nt 128x256x784` (layout, M, N, K).
pub fn shape_key(layout: MatmulLayout, s: MatmulShape) -> String {
    format!(
        "{} {}x{}x{}",
        format!("{layout:?}").to_ascii_lowercase(),
        s.m,
        s.n,
        s.k
    )
}

/// The cache file's content: adapter key → shape key → variant name.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheFile {
    pub version: u32,
    pub adapters: BTreeMap<String, BTreeMap<String, String>>,
}

/// Bumped whenever the kernels or their compilation change, so that choices timed on older
/// code are ignored (with a warning) and timed again. 2: shaders compiled without loop
/// bounding. 3: strided input gradients split by stride phase. 4: the tiled GEMMs'
/// register blocks indexed by constants only. 5: the matmul epilogue chosen by override
/// constants. 6: the staged slices' rows padded against workgroup-memory bank conflicts, and
/// each warp's invocations on 4 × 8 register blocks (`shaders/gemm_invocation.wgsl`).
pub const CACHE_VERSION: u32 = 6;

/// Reads a cache file; a missing file is empty, an unreadable or corrupt one is empty with
/// a warning (returned, for the caller to log).
pub fn read_cache(path: &Path) -> (CacheFile, Option<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (CacheFile::default(), None);
        }
        Err(e) => {
            return (
                CacheFile::default(),
                Some(format!(
                    "cannot read autotune cache {}: {e}; ignoring it",
                    path.display()
                )),
            );
        }
    };
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(c) if c.version == CACHE_VERSION => (c, None),
        Ok(c) => (
            CacheFile::default(),
            Some(format!(
                "autotune cache {} has version {} (expected {CACHE_VERSION}); ignoring it",
                path.display(),
                c.version
            )),
        ),
        Err(e) => (
            CacheFile::default(),
            Some(format!(
                "autotune cache {} is corrupt ({e}); ignoring it",
                path.display()
            )),
        ),
    }
}

/// Writes a cache file atomically (temporary file in the same directory, then rename).
pub fn write_cache(path: &Path, cache: &CacheFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(cache).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The process's choices: (adapter key, shape key) → variant; and whether the file has
/// been merged in.
#[derive(Default)]
struct Memory {
    choices: HashMap<(String, String), String>,
    file_loaded: bool,
}

fn memory() -> &'static Mutex<Memory> {
    static M: OnceLock<Mutex<Memory>> = OnceLock::new();
    M.get_or_init(Default::default)
}

/// Whether this adapter times variants (the mode, with Auto resolved).
fn timing_on(ctx: &GpuContext) -> bool {
    match mode() {
        Mode::Off => false,
        Mode::On => true,
        Mode::Auto => !ctx.adapter.is_software(),
    }
}

/// The core of every choice: the cached name for (adapter, `key`), else `tune()` (the
/// fastest candidate's name), recorded in memory and in the cache file. `valid` says
/// whether a cached name still names a usable variant.
fn cached_or_tuned(
    ctx: &GpuContext,
    key: String,
    valid: impl Fn(&str) -> bool,
    tune: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let key = (adapter_key(ctx), key);
    let path = cache_path();
    {
        let mut mem = memory().lock().unwrap_or_else(|e| e.into_inner());
        if !mem.file_loaded {
            mem.file_loaded = true;
            if let Some(path) = &path {
                let (file, warning) = read_cache(path);
                if let Some(w) = warning {
                    log::warn!("{w}");
                }
                for (adapter, shapes) in file.adapters {
                    for (shape, name) in shapes {
                        mem.choices.insert((adapter.clone(), shape), name);
                    }
                }
            }
        }
        if let Some(name) = mem.choices.get(&key)
            && valid(name)
        {
            return Ok(name.clone());
        }
    }
    let best = tune()?;
    let mut mem = memory().lock().unwrap_or_else(|e| e.into_inner());
    mem.choices.insert(key.clone(), best.clone());
    if let Some(path) = path {
        // Merge with what is on disk now (another process may have added entries).
        let (mut file, _) = read_cache(&path);
        file.version = CACHE_VERSION;
        file.adapters
            .entry(key.0)
            .or_default()
            .insert(key.1, best.clone());
        if let Err(e) = write_cache(&path, &file) {
            log::warn!("cannot write autotune cache {}: {e}", path.display());
        }
    }
    Ok(best)
}

/// The matmul variant for `shape` in `layout` on this adapter: cached, else timed
/// (autotune on), else the heuristic.
pub fn matmul_variant(
    ctx: &GpuContext,
    layout: MatmulLayout,
    shape: MatmulShape,
) -> Result<MatmulVariant> {
    if !timing_on(ctx) {
        return Ok(heuristic(layout, shape));
    }
    let valid = |name: &str| {
        MatmulVariant::from_name(name).is_some_and(|v| v.allowed(layout, shape) && v.fits(ctx))
    };
    let name = cached_or_tuned(ctx, shape_key(layout, shape), valid, || {
        Ok(tune(ctx, layout, shape)?.0.name())
    })?;
    Ok(MatmulVariant::from_name(&name).unwrap_or_else(|| heuristic(layout, shape)))
}

/// The convolution variant for one pass of `s` on this adapter: cached, else timed with
/// `time` (seconds of one run of a variant), else the heuristic.
pub fn conv_variant(
    ctx: &GpuContext,
    pass: ConvPass,
    s: &Conv2dShape,
    time: impl Fn(ConvVariant) -> Result<f64>,
) -> Result<ConvVariant> {
    if !timing_on(ctx) {
        return Ok(conv_heuristic(pass, s));
    }
    let valid = |name: &str| ConvVariant::from_name(name).is_some_and(|v| v.fits(ctx));
    let key = format!(
        "conv {} n{} c{} {}x{} o{} k{}x{} s{}x{} p{}x{} d{}x{} g{}",
        pass.name(),
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.kh,
        s.kw,
        s.stride[0],
        s.stride[1],
        s.pad[0],
        s.pad[1],
        s.dilation[0],
        s.dilation[1],
        s.groups
    );
    let name = cached_or_tuned(ctx, key, valid, || {
        let mut best: Option<(ConvVariant, f64)> = None;
        for v in ConvVariant::candidates(ctx) {
            let t = time(v)?;
            if best.is_none_or(|(_, bt)| t < bt) {
                best = Some((v, t));
            }
        }
        Ok(best.map_or(ConvVariant::Simple, |b| b.0).name())
    })?;
    Ok(ConvVariant::from_name(&name).unwrap_or_else(|| conv_heuristic(pass, s)))
}

/// Times every candidate variant of `shape` on scratch buffers (inputs zero: the time of a
/// GEMM does not depend on its values), returning the fastest and every (variant, seconds).
pub fn tune(
    ctx: &GpuContext,
    layout: MatmulLayout,
    shape: MatmulShape,
) -> Result<(MatmulVariant, Vec<(MatmulVariant, f64)>)> {
    let (m, n, k) = (shape.m as u64, shape.n as u64, shape.k as u64);
    let a = ctx.storage_buffer("autotune A", (m * k).max(4) * 4)?;
    let b = ctx.storage_buffer("autotune B", (k * n).max(4) * 4)?;
    let c = ctx.storage_buffer("autotune C", (m * n).max(4) * 4)?;
    // About 2 ms of work per timed pass, 3 passes: a few tens of ms per variant.
    let mut times = Vec::new();
    for v in MatmulVariant::candidates(layout, shape)
        .into_iter()
        .filter(|v| v.fits(ctx))
    {
        let d = matmul_with(
            ctx,
            v,
            layout,
            shape,
            &a,
            &b,
            &c,
            false,
            Epilogue::default(),
        )?;
        let t = timing::median_time(ctx, &[&d], 1, 3, 2e-3)?;
        times.push((v, t));
    }
    let best = times
        .iter()
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .map(|x| x.0)
        .unwrap_or(MatmulVariant::Simple);
    Ok((best, times))
}

/// The choice without timing: the largest tile that still gives the device enough
/// workgroups (at least 96, the order of a large GPU's multiprocessors), vec4 loads where
/// the shape allows them.
pub fn heuristic(layout: MatmulLayout, shape: MatmulShape) -> MatmulVariant {
    let vec4 = super::kernels::matmul::vec4_allowed(layout, shape);
    let tiles = |bm: usize, bn: usize| shape.m.div_ceil(bm) * shape.n.div_ceil(bn);
    let (bm, bn, bk) = if tiles(128, 128) >= 96 {
        (128, 128, 8)
    } else if tiles(128, 64) >= 96 {
        if shape.m >= shape.n {
            (128, 64, 8)
        } else {
            (64, 128, 8)
        }
    } else {
        (64, 64, 16)
    };
    MatmulVariant::Tiled {
        bm,
        bn,
        bk,
        vec4,
        prefetch: false,
    }
}
