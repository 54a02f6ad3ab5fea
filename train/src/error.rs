//! The error every public entry point of the crate can be converted into.

use crate::config::ConfigError;
use crate::dataset::DatasetError;

/// Why a model could not be trained.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "the dataset has {rows} usable rows ({skipped} skipped for nulls); training needs at least {needed}"
    )]
    TooFewRows {
        rows: usize,
        skipped: u64,
        needed: usize,
    },
    #[error("the target {column:?} has the single class {class:?}; classification needs two")]
    SingleClass { column: String, class: String },
    #[error(
        "training diverged at epoch {epoch}: the loss is not finite; try an lr below {learning_rate}"
    )]
    Diverged { epoch: u32, learning_rate: f32 },
}

pub type TrainResult<T> = Result<T, TrainError>;
