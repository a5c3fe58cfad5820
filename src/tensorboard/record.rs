//! TFRecord framing, as TensorFlow's `RecordWriter` writes it: a little-endian u64 length,
//! the masked CRC32C of those eight bytes, the payload, and the masked CRC32C of the payload.
//! The mask (rotate right by 15, add a constant) exists because a CRC of data that itself
//! contains CRCs is weak; readers check both sums.

use std::io::Write;

/// TensorFlow's masked CRC32C (Castagnoli): `((crc >> 15) | (crc << 17)) + 0xa282ead8`.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes one framed record.
pub fn write_record(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let len = (payload.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(payload)?;
    out.write_all(&masked_crc32c(payload).to_le_bytes())
}

/// Splits a whole event file back into its payloads, checking both CRCs of every record.
/// The error names the record's index and byte offset.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    while at < bytes.len() {
        let record = out.len();
        if bytes.len() - at < 12 {
            return Err(format!(
                "record {record} at byte {at}: truncated header ({} bytes left)",
                bytes.len() - at
            ));
        }
        let len_bytes = &bytes[at..at + 8];
        if u32_at(bytes, at + 8) != masked_crc32c(len_bytes) {
            return Err(format!("record {record} at byte {at}: length CRC mismatch"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8])) as usize;
        let start = at + 12;
        if bytes.len() - start < len + 4 {
            return Err(format!(
                "record {record} at byte {at}: payload of {len} bytes is truncated"
            ));
        }
        let payload = &bytes[start..start + len];
        if u32_at(bytes, start + len) != masked_crc32c(payload) {
            return Err(format!("record {record} at byte {at}: data CRC mismatch"));
        }
        out.push(payload.to_vec());
        at = start + len + 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_value() {
        // CRC32C("123456789") = 0xE3069283, the standard check value of Castagnoli's CRC.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn framing_round_trips_and_detects_corruption() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"hello").unwrap();
        write_record(&mut buf, b"").unwrap();
        assert_eq!(read_records(&buf).unwrap(), vec![b"hello".to_vec(), vec![]]);
        buf[13] ^= 1;
        assert!(read_records(&buf).unwrap_err().contains("data CRC"));
    }
}
