//! The safetensors encoding of a checkpoint, and its hostile-input reader.
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype", "shape", "data_offsets"}, …, "__metadata__": {string: string}}`),
//! then the tensors' bytes, contiguous, in offset order. The `safetensors` crate checks the
//! length against the buffer (and a 100 MB cap), UTF-8, the offsets' contiguity and that
//! each tensor's byte span matches its dtype × shape. It does not see duplicate names
//! (serde keeps the last), so [`decode`] reads the header's keys itself first.
//!
//! Reading never allocates from a length field: the whole file is read (its size is what
//! the file system says, not what the header claims), and every slice is bounds-checked by
//! the crate before we copy out of it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde::Deserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};

use crate::error::{Error, Result};

/// One tensor as stored: name, dtype, shape and its little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl StoredTensor {
    /// An f32 tensor (stored little-endian, whatever the host).
    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        StoredTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values of an f32 tensor; `None` for any other dtype.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == Dtype::F32).then(|| {
            self.bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

/// A decoded file: its tensors in file (offset) order and its string metadata.
#[derive(Clone, Debug)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: Vec<StoredTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    pub fn get(&self, name: &str) -> Option<&StoredTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A metadata entry, or an error naming the missing key.
    pub fn meta(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::checkpoint(&self.path, format!("metadata has no `{key}` entry")))
    }
}

/// Encodes tensors (in the given order) and metadata as safetensors bytes.
pub fn encode(
    path: &Path,
    tensors: &[StoredTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
            .map_err(|e| Error::checkpoint(path, format!("tensor `{}`: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::checkpoint(path, format!("encoding: {e}")))
}

/// Decodes safetensors bytes read from `path`, refusing malformed input with an error that
/// names the file and the fault.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<TensorFile> {
    let fault = |reason: String| Error::checkpoint(path, reason);
    // Header bounds first (the crate checks them too, but our messages say more).
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(fault(format!(
            "truncated: {} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    };
    let declared = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
    let available = bytes.len() as u64 - 8;
    if declared > available {
        return Err(fault(format!(
            "truncated or corrupt: the header declares {declared} bytes but only {available} \
             follow the length field"
        )));
    }
    let header = &bytes[8..8 + declared as usize];
    let header_text =
        std::str::from_utf8(header).map_err(|e| fault(format!("the header is not UTF-8: {e}")))?;
    if let Some(dup) = duplicate_key(header_text)
        .map_err(|e| fault(format!("the header is not a valid JSON object: {e}")))?
    {
        return Err(fault(format!("tensor name `{dup}` appears more than once")));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| fault(describe(e)))?;
    let mut tensors: Vec<StoredTensor> = st
        .iter()
        .map(|(name, view)| StoredTensor {
            name: name.to_string(),
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            bytes: view.data().to_vec(),
        })
        .collect();
    // File order (the offsets), so a file reads back in the order it was written.
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| fault(describe(e)))?;
    let offset = |name: &str| meta.info(name).map(|i| i.data_offsets.0).unwrap_or(0);
    tensors.sort_by_key(|t| offset(&t.name));
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(TensorFile {
        path: path.to_path_buf(),
        tensors,
        metadata,
    })
}

/// Reads and decodes a file.
pub fn read(path: &Path) -> Result<TensorFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(path, &bytes)
}

fn describe(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::HeaderTooLarge => {
            "the declared header length exceeds the 100 MB limit".into()
        }
        SafeTensorError::HeaderTooSmall => "truncated: no header length".into(),
        SafeTensorError::InvalidHeaderLength => {
            "truncated or corrupt: the declared header length runs past the end of the file".into()
        }
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            format!("the header is not valid safetensors JSON: {e}")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "truncated or corrupt: the data section's length does not match the header's \
             tensors"
                .into()
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor `{name}`: its data offsets are not contiguous with the previous one")
        }
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's byte span does not match its dtype and shape".into()
        }
        other => other.to_string(),
    }
}

/// The first key of the header's top-level JSON object that occurs twice, if any.
fn duplicate_key(header: &str) -> std::result::Result<Option<String>, serde_json::Error> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut dup = None;
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if dup.is_none() && !seen.insert(key.clone()) {
                    dup = Some(key);
                }
            }
            Ok(dup)
        }
    }
    let mut de = serde_json::Deserializer::from_str(header);
    de.deserialize_map(Keys)
}
