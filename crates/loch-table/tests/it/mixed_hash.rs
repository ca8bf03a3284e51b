//! Primary-key hashing against real Java: a tiny Java program, compiled with the machine's JDK,
//! prints `Arrays.hashCode` of the same keys in Iceberg's Java representation (int, long,
//! string, decimal, date, timestamp, and keys of several columns), and the Rust hashes and the
//! buckets they choose must match it exactly.

use std::fmt::Write as _;
use std::process::Command;

use loch_table::mixed::key_hash::{JavaValue, arrays_hash_code, key_hash};
use loch_table::mixed::tree::TreeNode;

/// A Java expression building `value` boxed as Iceberg's Java code holds it.
fn java_literal(value: &JavaValue) -> String {
    match value {
        JavaValue::Null => "null".into(),
        JavaValue::Boolean(b) => format!("Boolean.valueOf({b})"),
        JavaValue::Int(v) => format!("Integer.valueOf({v})"),
        JavaValue::Long(v) => format!("Long.valueOf({v}L)"),
        JavaValue::Float(v) => format!("Float.valueOf(Float.intBitsToFloat({}))", v.to_bits() as i32),
        JavaValue::Double(v) => format!("Double.valueOf(Double.longBitsToDouble({}L))", v.to_bits() as i64),
        JavaValue::String(s) => {
            let mut out = String::from("\"");
            // Java reads \uXXXX escapes before it lexes, so ASCII is written plainly (a
            // `\u0022` would end the string); the rest as escapes.
            for unit in s.encode_utf16() {
                match char::from_u32(u32::from(unit)) {
                    Some('"') => out.push_str("\\\""),
                    Some('\\') => out.push_str("\\\\"),
                    Some(c) if c.is_ascii_graphic() || c == ' ' => out.push(c),
                    _ if unit < 0x80 => {
                        let _ = write!(out, "\\{unit:03o}");
                    }
                    _ => {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
            }
            out.push('"');
            out
        }
        JavaValue::Decimal { unscaled, scale } => {
            format!("new java.math.BigDecimal(new java.math.BigInteger(\"{unscaled}\"), {scale})")
        }
        JavaValue::Bytes(bytes) => {
            let items: Vec<String> = bytes.iter().map(|b| format!("(byte) {}", *b as i8)).collect();
            format!("java.nio.ByteBuffer.wrap(new byte[] {{{}}})", items.join(", "))
        }
        JavaValue::Uuid(bytes) => {
            let most = i64::from_be_bytes(bytes[..8].try_into().unwrap());
            let least = i64::from_be_bytes(bytes[8..].try_into().unwrap());
            format!("new java.util.UUID({most}L, {least}L)")
        }
    }
}

/// A small deterministic generator (the test must be reproducible without a seed file).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 ^ (self.0 >> 29)
    }
}

fn keys() -> Vec<Vec<JavaValue>> {
    let mut rng = Lcg(0x10c4);
    let mut keys: Vec<Vec<JavaValue>> = vec![
        vec![JavaValue::Int(0)],
        vec![JavaValue::Int(i32::MIN)],
        vec![JavaValue::Int(i32::MIN.wrapping_sub(31))],
        vec![JavaValue::Long(i64::MIN)],
        vec![JavaValue::Long(-1)],
        vec![JavaValue::String(String::new())],
        vec![JavaValue::String("héllo wörld ✓ 𝄞".into())],
        vec![JavaValue::Decimal { unscaled: 0, scale: 2 }],
        vec![JavaValue::Decimal { unscaled: -12_345_678_901_234_567_890_123_456_789, scale: 10 }],
        vec![JavaValue::Decimal { unscaled: i128::from(u64::MAX), scale: 0 }],
        vec![JavaValue::Null, JavaValue::Int(3)],
        vec![JavaValue::Boolean(true), JavaValue::Double(f64::NAN), JavaValue::Float(-0.0)],
        vec![JavaValue::Bytes(vec![0, 255, 128, 7]), JavaValue::Uuid([7; 16])],
    ];
    for i in 0..600 {
        let mut value = |kind: u64| match kind % 6 {
            0 => JavaValue::Int(rng.next() as i32),
            1 => JavaValue::Long(rng.next() as i64),
            2 => {
                let len = (rng.next() % 12) as usize;
                JavaValue::String(
                    (0..len).map(|_| char::from_u32((rng.next() % 0x2FF) as u32 + 32).unwrap_or('?')).collect(),
                )
            }
            3 => {
                let unscaled = (i128::from(rng.next() as i64) << 40) ^ i128::from(rng.next() as i64);
                JavaValue::Decimal { unscaled, scale: (rng.next() % 19) as i32 }
            }
            // Dates: days since the epoch, as Integer.
            4 => JavaValue::Int((rng.next() % 80_000) as i32 - 20_000),
            // Timestamps: microseconds since the epoch, as Long.
            _ => JavaValue::Long((rng.next() % 4_000_000_000_000_000) as i64 - 1_000_000_000_000_000),
        };
        let columns = 1 + i % 3;
        keys.push((0..columns).map(|c| value((i / 3 + c) as u64)).collect());
    }
    keys
}

#[test]
fn key_hashes_and_buckets_match_java() {
    let Ok(dir) = tempfile::tempdir() else { panic!("no temp dir") };
    let javac_works = Command::new("javac").arg("-version").output().is_ok_and(|o| o.status.success());
    if !javac_works {
        loch_testkit::unavailable("a JDK (javac)", "javac is not on PATH");
        return;
    }
    let keys = keys();
    let mut source = String::from("public class KeyHashes {\n  public static void main(String[] a) {\n");
    for key in &keys {
        let values: Vec<String> = key.iter().map(java_literal).collect();
        let _ = writeln!(
            source,
            "    System.out.println(java.util.Arrays.hashCode(new Object[] {{{}}}));",
            values.join(", ")
        );
    }
    source.push_str("  }\n}\n");
    // One method holds every line; Java's 64 KB method limit is far away at this count.
    std::fs::write(dir.path().join("KeyHashes.java"), source).unwrap();
    let compiled = Command::new("javac").arg("KeyHashes.java").current_dir(dir.path()).output().unwrap();
    assert!(compiled.status.success(), "javac: {}", String::from_utf8_lossy(&compiled.stderr));
    let run = Command::new("java").args(["-cp", ".", "KeyHashes"]).current_dir(dir.path()).output().unwrap();
    assert!(run.status.success(), "java: {}", String::from_utf8_lossy(&run.stderr));
    let java: Vec<i32> = String::from_utf8_lossy(&run.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(java.len(), keys.len());
    for (key, expected) in keys.iter().zip(&java) {
        assert_eq!(arrays_hash_code(key), *expected, "Arrays.hashCode of {key:?}");
        // PrimaryKeyData.hashCode, then the node of 4 and of 64 buckets.
        let java_key = if *expected == i32::MIN { i32::MAX } else { expected.abs() };
        assert_eq!(key_hash(key), java_key);
        for buckets in [4u32, 64] {
            let node = TreeNode::of_hash(key_hash(key), buckets).unwrap();
            assert_eq!(node.index(), (java_key as u64) & u64::from(buckets - 1));
        }
    }
}
