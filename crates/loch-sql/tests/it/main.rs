//! SQL over keyed tables through DataFusion: queries of the merged rows equal a model of the
//! table, and filters push down into the scan, pruning files of other buckets and partitions.

#![allow(clippy::unwrap_used, missing_docs)]

mod keyed;
