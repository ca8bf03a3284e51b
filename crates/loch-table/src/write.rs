//! Writer settings from table properties (`write.parquet.*`), with Iceberg Java's defaults
//! (zstd), since iceberg-rust 0.10 only maps content-defined chunking.

use std::collections::HashMap;

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{WriterProperties, WriterVersion};

use crate::error::{Result, TableError};

/// `write.parquet.compression-codec`, default `zstd`.
pub const COMPRESSION_CODEC: &str = "write.parquet.compression-codec";
/// `write.parquet.compression-level`.
pub const COMPRESSION_LEVEL: &str = "write.parquet.compression-level";
/// `write.parquet.page-size-bytes`, default 1 MiB.
pub const PAGE_SIZE: &str = "write.parquet.page-size-bytes";
/// `write.parquet.row-group-size-bytes`, default 128 MiB.
pub const ROW_GROUP_SIZE: &str = "write.parquet.row-group-size-bytes";

/// Parquet writer properties for a table.
pub fn parquet_writer_properties(props: &HashMap<String, String>) -> Result<WriterProperties> {
    let level =
        props.get(COMPRESSION_LEVEL).map(|l| l.parse::<i32>()).transpose().map_err(|_| invalid(COMPRESSION_LEVEL))?;
    let compression = match props.get(COMPRESSION_CODEC).map(|c| c.to_ascii_lowercase()).as_deref().unwrap_or("zstd") {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(level.unwrap_or(3)).map_err(|_| invalid(COMPRESSION_LEVEL))?),
        "snappy" => Compression::SNAPPY,
        "gzip" => {
            Compression::GZIP(GzipLevel::try_new(level.unwrap_or(6) as u32).map_err(|_| invalid(COMPRESSION_LEVEL))?)
        }
        "lz4" => Compression::LZ4_RAW,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => return Err(TableError::Invalid(format!("unsupported {COMPRESSION_CODEC} {other:?}"))),
    };
    let number = |key: &str, default: usize| -> Result<usize> {
        props.get(key).map(|v| v.parse::<usize>()).transpose().map_err(|_| invalid(key)).map(|v| v.unwrap_or(default))
    };
    let page_size = number(PAGE_SIZE, 1 << 20)?;
    let row_group_bytes = number(ROW_GROUP_SIZE, 128 << 20)?;
    Ok(WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(compression)
        .set_data_page_size_limit(page_size)
        .set_max_row_group_bytes(Some(row_group_bytes))
        .build())
}

fn invalid(key: &str) -> TableError {
    TableError::Invalid(format!("invalid value of {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let p = parquet_writer_properties(&HashMap::new()).unwrap();
        assert!(matches!(p.compression(&"x".into()), Compression::ZSTD(_)));
        let props = HashMap::from([(COMPRESSION_CODEC.to_string(), "snappy".to_string())]);
        assert_eq!(parquet_writer_properties(&props).unwrap().compression(&"x".into()), Compression::SNAPPY);
        let bad = HashMap::from([(COMPRESSION_CODEC.to_string(), "brotli9000".to_string())]);
        assert!(parquet_writer_properties(&bad).is_err());
    }
}
