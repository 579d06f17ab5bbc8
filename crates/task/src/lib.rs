//! `stepforge-task` owns task files (DESIGN §8): the serde model, the loader (YAML via
//! serde-saphyr, every embedded code field parsed with the syntax crate's grammar, errors located
//! by file line and column), dimension values, and seeded data generation.
//!
//! It does no printing; file reading is confined to [`load_file`]-style entry points.

pub mod model;

pub use model::*;
