//! Reader for the IDX format of MNIST and its successors (Fashion-MNIST, KMNIST, EMNIST),
//! plain or gzip-compressed.
//!
//! The format (LeCun, <http://yann.lecun.com/exdb/mnist/>) is a 4-byte magic
//! `00 00 <type> <ndims>`, then `ndims` big-endian u32 sizes, then the payload in
//! row-major order. We read two kinds, both with element type 0x08 (unsigned byte):
//!
//! - labels: magic 0x00000801, one size `n`, then `n` bytes;
//! - images: magic 0x00000803, sizes `n, rows, cols`, then `n·rows·cols` bytes.
//!
//! Input is treated as hostile: a size field is only trusted after it has been checked
//! against the bytes actually present, so a 20-byte file that claims four billion images
//! costs nothing, and the payload must match the header exactly (a truncated download
//! and a file with trailing bytes are both refused rather than half-read). Compression is
//! detected from the gzip magic `1f 8b`, not from the file name, and decompression stops
//! at [`MAX_IDX_BYTES`]. Every error is [`Error::Data`] naming the file.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// Largest file, compressed or decompressed, that we read: 2 GiB. The largest IDX set in
/// use (EMNIST ByClass, 697 932 images of 28×28) is about 550 MB, so this only stops
/// corrupt or malicious input such as a gzip bomb.
pub const MAX_IDX_BYTES: u64 = 2 << 30;

/// Magic of an IDX1 file of unsigned bytes (labels).
pub const MAGIC_LABELS_U8: u32 = 0x0000_0801;
/// Magic of an IDX3 file of unsigned bytes (images).
pub const MAGIC_IMAGES_U8: u32 = 0x0000_0803;

/// The two leading bytes of every gzip stream (RFC 1952, ID1 ID2).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An IDX3 image file: `n` images of `rows × cols` bytes, row-major, image after image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    /// `n · rows · cols` bytes, 0 = background.
    pub pixels: Vec<u8>,
}

/// Reads a whole file, refusing one larger than [`MAX_IDX_BYTES`], and decompresses it if
/// it starts with the gzip magic.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_IDX_BYTES {
        return Err(Error::data(
            path,
            format!(
                "file is {len} bytes, more than the {MAX_IDX_BYTES}-byte limit for an IDX file"
            ),
        ));
    }
    // `take` guards against the file growing between `metadata` and the read; the capacity
    // comes from the file system, which we bounded just above.
    let mut raw = Vec::with_capacity(len as usize);
    file.take(MAX_IDX_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(path, e))?;
    if raw.len() as u64 > MAX_IDX_BYTES {
        return Err(Error::data(
            path,
            format!("file grew past the {MAX_IDX_BYTES}-byte limit while being read"),
        ));
    }
    match maybe_gunzip(&raw, path)? {
        Cow::Borrowed(_) => Ok(raw),
        Cow::Owned(plain) => Ok(plain),
    }
}

/// Returns `bytes` decompressed if they start with the gzip magic, else `bytes` as they are.
/// `path` only names the source in errors (it may be a made-up name such as
/// `<bundled>/t10k-labels-idx1-ubyte.gz`).
pub fn maybe_gunzip<'a>(bytes: &'a [u8], path: &Path) -> Result<Cow<'a, [u8]>> {
    if bytes.starts_with(&GZIP_MAGIC) {
        gunzip_limited(bytes, path, MAX_IDX_BYTES).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(bytes))
    }
}

/// Decompresses a gzip stream (all members, as `gzip -d` does), refusing more than `limit`
/// decompressed bytes. The size in the gzip trailer is not trusted: the output buffer
/// grows with the data actually produced.
pub fn gunzip_limited(bytes: &[u8], path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(limit.saturating_add(1));
    decoder
        .read_to_end(&mut out)
        .map_err(|e| Error::data(path, format!("corrupt gzip stream: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::data(
            path,
            format!("gzip stream decompresses to more than the {limit}-byte limit"),
        ));
    }
    Ok(out)
}

/// Reads an IDX1 label file (plain or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    parse_labels(&read_file(path)?, path)
}

/// Reads an IDX3 image file (plain or gzip).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    parse_images(&read_file(path)?, path)
}

/// Parses decompressed IDX1 label bytes.
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    let dims = parse_header(bytes, path, MAGIC_LABELS_U8)?;
    let n = dims[0];
    let payload = &bytes[header_len(1)..];
    check_payload(path, payload.len(), n, || format!("{n} labels"))?;
    Ok(payload.to_vec())
}

/// Parses decompressed IDX3 image bytes.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages> {
    let dims = parse_header(bytes, path, MAGIC_IMAGES_U8)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(Error::data(
            path,
            format!("header says images of {rows}x{cols} pixels; both sides must be at least 1"),
        ));
    }
    // Three u32 factors fit in u128; the comparison with the payload below bounds them.
    let want = n as u128 * rows as u128 * cols as u128;
    let payload = &bytes[header_len(3)..];
    check_payload(path, payload.len(), want, || {
        format!("{n} images of {rows}x{cols}")
    })?;
    Ok(IdxImages {
        n: n as usize,
        rows: rows as usize,
        cols: cols as usize,
        pixels: payload.to_vec(),
    })
}

/// Length of the header of an IDX file with `ndims` dimensions: magic plus one u32 each.
fn header_len(ndims: usize) -> usize {
    4 + 4 * ndims
}

/// Checks the magic against `want_magic` and returns the dimension sizes.
fn parse_header(bytes: &[u8], path: &Path, want_magic: u32) -> Result<Vec<u32>> {
    let want_dims = (want_magic & 0xff) as usize;
    let what = kind_name(want_magic);
    if bytes.len() < 4 {
        return Err(Error::data(
            path,
            format!(
                "truncated header: an {what} file starts with a 4-byte magic number, file has {} bytes",
                bytes.len()
            ),
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != want_magic {
        return Err(Error::data(path, bad_magic(magic, want_magic, bytes)));
    }
    let need = header_len(want_dims);
    if bytes.len() < need {
        return Err(Error::data(
            path,
            format!(
                "truncated header: an {what} header is {need} bytes, file has {}",
                bytes.len()
            ),
        ));
    }
    Ok((0..want_dims).map(|d| be_u32(bytes, 4 + 4 * d)).collect())
}

/// Compares the payload length with the size the header declares.
fn check_payload(
    path: &Path,
    have: usize,
    want: impl Into<u128>,
    declared: impl Fn() -> String,
) -> Result<()> {
    let want = want.into();
    let have128 = have as u128;
    if have128 < want {
        return Err(Error::data(
            path,
            format!(
                "truncated: header says {} = {want} bytes, file has {have} after the header",
                declared()
            ),
        ));
    }
    if have128 > want {
        return Err(Error::data(
            path,
            format!(
                "{} trailing bytes: header says {} = {want} bytes, file has {have} after the header",
                have128 - want,
                declared()
            ),
        ));
    }
    Ok(())
}

/// A reason for a wrong magic that says what the file looks like instead.
fn bad_magic(magic: u32, want: u32, bytes: &[u8]) -> String {
    let expected = format!("expected an {} (magic 0x{want:08x})", kind_name(want));
    if bytes.starts_with(&GZIP_MAGIC) {
        // Only reachable for bytes given directly to `parse_*` without `maybe_gunzip`.
        return format!("{expected}, found gzip-compressed data that was not decompressed");
    }
    if magic == MAGIC_LABELS_U8 || magic == MAGIC_IMAGES_U8 {
        return format!(
            "{expected}, found an {} (magic 0x{magic:08x}); are the image and label files swapped?",
            kind_name(magic)
        );
    }
    if magic >> 16 == 0 {
        let ty = (magic >> 8) & 0xff;
        let ndims = magic & 0xff;
        let ty_name = match ty {
            0x08 => "unsigned byte",
            0x09 => "signed byte",
            0x0B => "i16",
            0x0C => "i32",
            0x0D => "f32",
            0x0E => "f64",
            _ => "unknown type",
        };
        return format!(
            "{expected}, found an IDX file of {ty_name} (0x{ty:02x}) with {ndims} dimensions \
             (magic 0x{magic:08x}); only unsigned-byte labels (1 dimension) and images \
             (3 dimensions) are supported"
        );
    }
    format!("{expected}, found 0x{magic:08x}: this is not an IDX file")
}

fn kind_name(magic: u32) -> &'static str {
    match magic {
        MAGIC_LABELS_U8 => "IDX1 label file",
        MAGIC_IMAGES_U8 => "IDX3 image file",
        _ => "IDX file",
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
