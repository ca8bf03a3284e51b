//! Java's hash of a primary key, as Amoro buckets rows: `Math.abs(Arrays.hashCode(values))`
//! (with `Integer.MIN_VALUE` read as `Integer.MAX_VALUE`) over the key's values in Iceberg's
//! Java representation — `Integer` for int and date, `Long` for long, time and timestamps,
//! `String` for strings, `BigDecimal` for decimals, `ByteBuffer` for binary and fixed. A row
//! lands in the same bucket whichever engine wrote it only if every hash matches Java's bit for
//! bit, so each is spelled out here with Java's arithmetic (wrapping 32-bit ints).

/// One key value as Iceberg's Java code holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum JavaValue {
    /// `null` (hashes to 0).
    Null,
    /// `Boolean`.
    Boolean(bool),
    /// `Integer`: int, and date as days since the epoch.
    Int(i32),
    /// `Long`: long, time and timestamps in microseconds.
    Long(i64),
    /// `Float`.
    Float(f32),
    /// `Double`.
    Double(f64),
    /// `String` (hashed over its UTF-16 code units).
    String(String),
    /// `BigDecimal` of `unscaled × 10^-scale`.
    Decimal {
        /// The unscaled value.
        unscaled: i128,
        /// The scale.
        scale: i32,
    },
    /// `ByteBuffer`: binary and fixed.
    Bytes(Vec<u8>),
    /// `UUID`, as its 16 bytes (most significant first).
    Uuid([u8; 16]),
}

/// Java's `hashCode()` of one value.
pub fn java_hash_code(value: &JavaValue) -> i32 {
    match value {
        JavaValue::Null => 0,
        JavaValue::Boolean(b) => {
            if *b {
                1231
            } else {
                1237
            }
        }
        JavaValue::Int(v) => *v,
        JavaValue::Long(v) => long_hash(*v),
        // floatToIntBits: every NaN is the canonical one.
        JavaValue::Float(v) => {
            if v.is_nan() {
                0x7fc0_0000
            } else {
                v.to_bits() as i32
            }
        }
        JavaValue::Double(v) => {
            let bits = if v.is_nan() { 0x7ff8_0000_0000_0000u64 } else { v.to_bits() };
            long_hash(bits as i64)
        }
        JavaValue::String(s) => s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit))),
        JavaValue::Decimal { unscaled, scale } => big_integer_hash(*unscaled).wrapping_mul(31).wrapping_add(*scale),
        // ByteBuffer.hashCode: from the last remaining byte to the first, bytes signed.
        JavaValue::Bytes(bytes) => {
            bytes.iter().rev().fold(1i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(*b as i8)))
        }
        JavaValue::Uuid(bytes) => {
            let (hi, lo) = bytes.split_at(8);
            let most = i64::from_be_bytes(hi.try_into().unwrap_or_default());
            let least = i64::from_be_bytes(lo.try_into().unwrap_or_default());
            let hilo = most ^ least;
            ((hilo >> 32) as i32) ^ (hilo as i32)
        }
    }
}

/// `Long.hashCode`: the two halves xor-ed.
fn long_hash(v: i64) -> i32 {
    (v ^ ((v as u64) >> 32) as i64) as i32
}

/// `BigInteger.hashCode`: over the magnitude's 32-bit words, most significant first, then
/// times the sign.
fn big_integer_hash(v: i128) -> i32 {
    let magnitude = v.unsigned_abs();
    let mut words: Vec<u32> = (0..4).rev().map(|i| (magnitude >> (32 * i)) as u32).collect();
    while words.first() == Some(&0) {
        words.remove(0);
    }
    let hash = words.iter().fold(0i32, |h, w| h.wrapping_mul(31).wrapping_add(*w as i32));
    hash.wrapping_mul(v.signum() as i32)
}

/// `java.util.Arrays.hashCode(values)`.
pub fn arrays_hash_code(values: &[JavaValue]) -> i32 {
    values.iter().fold(1i32, |h, v| h.wrapping_mul(31).wrapping_add(java_hash_code(v)))
}

/// The hash Amoro buckets a key by (`PrimaryKeyData.hashCode`): never negative.
pub fn key_hash(values: &[JavaValue]) -> i32 {
    match arrays_hash_code(values) {
        i32::MIN => i32::MAX,
        h => h.abs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_java_hashes() {
        assert_eq!(java_hash_code(&JavaValue::String("hello".into())), 99_162_322);
        assert_eq!(java_hash_code(&JavaValue::Long(-1)), 0);
        assert_eq!(java_hash_code(&JavaValue::Long(1 << 32)), 1);
        assert_eq!(java_hash_code(&JavaValue::Boolean(true)), 1231);
        assert_eq!(java_hash_code(&JavaValue::Double(1.0)), 1_072_693_248);
        // new BigDecimal("1.5").hashCode() == 31 * 15 + 1
        assert_eq!(java_hash_code(&JavaValue::Decimal { unscaled: 15, scale: 1 }), 466);
        assert_eq!(java_hash_code(&JavaValue::Decimal { unscaled: -15, scale: 1 }), -464);
        assert_eq!(arrays_hash_code(&[]), 1);
        assert_eq!(arrays_hash_code(&[JavaValue::Int(1), JavaValue::Null]), (31 + 1) * 31);
        assert_eq!(key_hash(&[JavaValue::Int(i32::MIN.wrapping_sub(31))]), i32::MAX, "abs(MIN) is read as MAX");
        assert_eq!(key_hash(&[JavaValue::Int(-32)]), 1);
    }
}
