//! A minimal protobuf encoder for TensorBoard's `Event`, `Summary`, `Summary.Value` and
//! `HistogramProto` (tensorflow/core/util/event.proto, framework/summary.proto), and just
//! enough of a decoder to read our own events back in tests.
//!
//! Field numbers used: Event {wall_time = 1 (double), step = 2 (int64), file_version = 3
//! (string), summary = 5}; Summary {value = 1 (repeated)}; Value {tag = 1, simple_value = 2
//! (float), histo = 5}; HistogramProto {min = 1, max = 2, num = 3, sum = 4, sum_squares = 5
//! (doubles), bucket_limit = 6, bucket = 7 (packed repeated doubles)}.

/// Protobuf wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn double(out: &mut Vec<u8>, field: u64, v: f64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn packed_doubles(out: &mut Vec<u8>, field: u64, vs: &[f64]) {
    let mut b = Vec::with_capacity(vs.len() * 8);
    for v in vs {
        b.extend_from_slice(&v.to_le_bytes());
    }
    bytes(out, field, &b);
}

/// TensorBoard's HistogramProto: `bucket[i]` counts values in
/// (`bucket_limit[i-1]`, `bucket_limit[i]`]; the first bucket starts at `min`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub bucket_limit: Vec<f64>,
    pub bucket: Vec<f64>,
}

/// One summary value: a scalar or a histogram under a tag.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(String, f32),
    Histogram(String, Histogram),
}

impl Value {
    pub fn tag(&self) -> &str {
        match self {
            Value::Scalar(t, _) | Value::Histogram(t, _) => t,
        }
    }
}

fn encode_histogram(h: &Histogram) -> Vec<u8> {
    let mut out = Vec::new();
    double(&mut out, 1, h.min);
    double(&mut out, 2, h.max);
    double(&mut out, 3, h.num);
    double(&mut out, 4, h.sum);
    double(&mut out, 5, h.sum_squares);
    packed_doubles(&mut out, 6, &h.bucket_limit);
    packed_doubles(&mut out, 7, &h.bucket);
    out
}

fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(&mut out, 1, v.tag().as_bytes());
    match v {
        Value::Scalar(_, x) => {
            key(&mut out, 2, FIXED32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Histogram(_, h) => bytes(&mut out, 5, &encode_histogram(h)),
    }
    out
}

/// The event that opens every file: `file_version = "brain.Event:2"`.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = Vec::new();
    double(&mut out, 1, wall_time);
    bytes(&mut out, 3, b"brain.Event:2");
    out
}

/// An event carrying a summary of `values` at `step`.
pub fn summary_event(wall_time: f64, step: i64, values: &[Value]) -> Vec<u8> {
    let mut summary = Vec::new();
    for v in values {
        bytes(&mut summary, 1, &encode_value(v));
    }
    let mut out = Vec::new();
    double(&mut out, 1, wall_time);
    key(&mut out, 2, VARINT);
    varint(&mut out, step as u64);
    bytes(&mut out, 5, &summary);
    out
}

/// A decoded event (only the fields we write).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub values: Vec<Value>,
}

/// A field read off the wire: (number, payload).
enum Field<'a> {
    Varint(u64, u64),
    Fixed64(u64, [u8; 8]),
    Fixed32(u64, [u8; 4]),
    Bytes(u64, &'a [u8]),
}

fn read_varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn fields(b: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = b.get(*at..*at + n).ok_or("truncated field")?;
        *at += n;
        Ok(s)
    };
    while at < b.len() {
        let k = read_varint(b, &mut at)?;
        let (num, wire) = (k >> 3, k & 7);
        out.push(match wire {
            VARINT => Field::Varint(num, read_varint(b, &mut at)?),
            FIXED64 => Field::Fixed64(num, take(&mut at, 8)?.try_into().unwrap_or([0; 8])),
            FIXED32 => Field::Fixed32(num, take(&mut at, 4)?.try_into().unwrap_or([0; 4])),
            LEN => {
                let n = read_varint(b, &mut at)? as usize;
                Field::Bytes(num, take(&mut at, n)?)
            }
            w => return Err(format!("unsupported wire type {w} in field {num}")),
        });
    }
    Ok(out)
}

fn doubles(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

fn decode_histogram(b: &[u8]) -> Result<Histogram, String> {
    let mut h = Histogram {
        min: 0.0,
        max: 0.0,
        num: 0.0,
        sum: 0.0,
        sum_squares: 0.0,
        bucket_limit: Vec::new(),
        bucket: Vec::new(),
    };
    for f in fields(b)? {
        match f {
            Field::Fixed64(1, v) => h.min = f64::from_le_bytes(v),
            Field::Fixed64(2, v) => h.max = f64::from_le_bytes(v),
            Field::Fixed64(3, v) => h.num = f64::from_le_bytes(v),
            Field::Fixed64(4, v) => h.sum = f64::from_le_bytes(v),
            Field::Fixed64(5, v) => h.sum_squares = f64::from_le_bytes(v),
            Field::Bytes(6, v) => h.bucket_limit.extend(doubles(v)),
            Field::Bytes(7, v) => h.bucket.extend(doubles(v)),
            _ => {}
        }
    }
    Ok(h)
}

fn decode_value(b: &[u8]) -> Result<Option<Value>, String> {
    let mut tag = String::new();
    let mut value = None;
    for f in fields(b)? {
        match f {
            Field::Bytes(1, t) => tag = String::from_utf8_lossy(t).into_owned(),
            Field::Fixed32(2, v) => value = Some(Ok(f32::from_le_bytes(v))),
            Field::Bytes(5, h) => value = Some(Err(decode_histogram(h)?)),
            _ => {}
        }
    }
    Ok(value.map(|v| match v {
        Ok(x) => Value::Scalar(tag, x),
        Err(h) => Value::Histogram(tag, h),
    }))
}

/// Decodes one event payload (the fields this module writes; others are skipped).
pub fn decode_event(b: &[u8]) -> Result<Event, String> {
    let mut e = Event::default();
    for f in fields(b)? {
        match f {
            Field::Fixed64(1, v) => e.wall_time = f64::from_le_bytes(v),
            Field::Varint(2, v) => e.step = v as i64,
            Field::Bytes(3, v) => e.file_version = Some(String::from_utf8_lossy(v).into_owned()),
            Field::Bytes(5, s) => {
                for f in fields(s)? {
                    if let Field::Bytes(1, v) = f {
                        e.values.extend(decode_value(v)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_encoding_matches_protobuf_spec() {
        // 300 = 0b1_0010_1100 → 0xAC 0x02 (the example of the protobuf encoding guide).
        let mut b = Vec::new();
        varint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    #[test]
    fn event_round_trips() {
        let h = Histogram {
            min: -3.0,
            max: 5.0,
            num: 4.0,
            sum: 2.0,
            sum_squares: 40.0,
            bucket_limit: vec![0.0, 10.0],
            bucket: vec![1.0, 3.0],
        };
        let values = vec![
            Value::Scalar("loss".into(), 0.25),
            Value::Histogram("h".into(), h),
        ];
        let e = decode_event(&summary_event(12.5, 300, &values)).unwrap();
        assert_eq!(e.step, 300);
        assert_eq!(e.wall_time, 12.5);
        assert_eq!(e.values, values);
    }
}
