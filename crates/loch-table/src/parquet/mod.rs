//! Writing Parquet data files: a writer that encodes columns in parallel, and the Iceberg
//! metrics of a written file.

pub mod metrics;
pub mod writer;

pub use writer::{ParallelParquetWriter, ParallelParquetWriterBuilder};
