//! A tabular dataset read from CSV: numeric features and one target column.
//!
//! # Input
//! The CSV rules are the ones `shoal-drift` profiles with, so a dataset that profiles also
//! loads: the first line is the header; every row has as many cells as the header and every
//! cell is UTF-8, or the file is refused naming the line (lines count from 1, the header's
//! included, blank lines too). A leading UTF-8 byte order mark is ignored.
//!
//! # Nulls
//! After trimming ASCII whitespace, a cell is null when it is empty or one of `NA`, `N/A`,
//! `null`, `NaN` (any case). A feature cell that parses to an infinity counts as null too. A
//! row with a null in a feature or in the target is skipped and counted in
//! [`Dataset::rows_skipped`]: the trainers have no imputation, and silently inventing values
//! would train on data nobody has.
//!
//! # Target and task
//! The target's cells are kept as trimmed strings; which task they mean is decided when a
//! trainer asks ([`Dataset::targets`]), so one loaded dataset can serve both a classification
//! and a regression run. [`Task::Auto`] picks classification when the target is non-numeric,
//! or numeric with only integers and at most [`AUTO_CLASSIFICATION_MAX_CLASSES`] distinct
//! values; otherwise regression.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::str::FromStr;

use csv::ByteRecord;
use serde::{Deserialize, Serialize};
use shoal_drift::csv_lines::CsvLines;

use crate::error::TrainError;

/// Cell contents that mean "no value", compared case-insensitively after trimming (the same
/// tokens as `shoal-drift`'s profiles).
const NULL_TOKENS: [&str; 4] = ["NA", "N/A", "null", "NaN"];

/// A numeric integer target with at most this many distinct values is treated as class labels
/// under [`Task::Auto`]; more, and it is a quantity to regress.
pub const AUTO_CLASSIFICATION_MAX_CLASSES: usize = 50;

/// Above this many classes a softmax output is refused: it is almost always a continuous
/// target forced into classification by mistake, and the model would be mostly output layer.
pub const MAX_CLASSES: usize = 1000;

/// Which columns of the CSV to learn from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The column to predict.
    pub target: String,
    /// Feature columns in model input order; `None` takes every column except the target, in
    /// header order.
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

/// What the target asks the model to do, as requested by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Decide from the target column (see the module doc).
    #[default]
    Auto,
    Classification,
    Regression,
}

/// The task a model was actually trained for, once [`Task::Auto`] has been decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Softmax probabilities over [`Targets::Classes`], output `[N, classes]`.
    Classification,
    /// One value in target units, output `[N, 1]`.
    Regression,
}

/// The target column resolved for one task.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    Classes {
        /// Sorted distinct labels (numerically for numeric labels); index = model output.
        names: Vec<String>,
        /// Per row, the index of its label in `names`.
        labels: Vec<u32>,
    },
    /// Per row, the target value.
    Values(Vec<f64>),
}

/// A dataset that cannot be read or used as asked.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("could not read the csv input")]
    Read {
        #[source]
        source: std::io::Error,
    },
    #[error("the csv is empty: a header line is required")]
    Empty,
    #[error("line {line} has {found} cells, the header has {expected}")]
    Ragged {
        line: u64,
        expected: usize,
        found: usize,
    },
    #[error("line {line}, column {column}: cell is not valid utf-8")]
    Encoding {
        line: u64,
        /// 1-based position of the cell in its row.
        column: usize,
    },
    #[error("line {line}: csv parse error")]
    Csv {
        line: u64,
        #[source]
        source: csv::Error,
    },
    #[error("the header names column {name:?} twice")]
    DuplicateColumn { name: String },
    #[error("feature {name:?} is requested twice")]
    DuplicateFeature { name: String },
    #[error("column {name:?} is not in the csv; the csv has {available:?}")]
    UnknownColumn {
        name: String,
        available: Vec<String>,
    },
    #[error("the target {name:?} is also listed as a feature")]
    TargetIsFeature { name: String },
    #[error("no feature columns: the csv has only the target {target:?}")]
    NoFeatures { target: String },
    #[error("feature {column:?} is not numeric: line {line} has {value:?}")]
    NonNumericFeature {
        column: String,
        line: u64,
        value: String,
    },
    #[error("regression needs a numeric target, but {column:?} on line {line} is {value:?}")]
    NonNumericTarget {
        column: String,
        line: u64,
        value: String,
    },
    #[error(
        "the target {column:?} has {classes} distinct values; classification allows at most {max}"
    )]
    TooManyClasses {
        column: String,
        classes: usize,
        max: usize,
    },
}

/// Numeric feature rows and their target cells, after null rows were skipped.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Feature columns in model input order.
    feature_names: Vec<String>,
    target_name: String,
    /// `rows × feature_names.len()` values, row-major, so a minibatch is a contiguous copy.
    features: Vec<f32>,
    /// Trimmed target cell of every kept row.
    target_cells: Vec<String>,
    /// Every target cell parsed when all of them are numbers; otherwise the first that is
    /// not, with its line, to name it in errors.
    target_values: Result<Vec<f64>, NonNumericCell>,
    rows_skipped: u64,
}

/// A target cell that is not a number, and where it is.
#[derive(Debug, Clone)]
struct NonNumericCell {
    line: u64,
    value: String,
}

// === impl Task ===

impl FromStr for Task {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(Task::Auto),
            "classification" => Ok(Task::Classification),
            "regression" => Ok(Task::Regression),
            other => Err(format!(
                "unknown task {other:?}; expected auto, classification or regression"
            )),
        }
    }
}

// === impl Dataset ===

impl Dataset {
    /// Reads a CSV whole and keeps the columns `spec` names (see the module doc for the rules).
    ///
    /// # Errors
    /// [`TrainError::Dataset`] with [`DatasetError::Ragged`], [`DatasetError::Encoding`] or
    /// [`DatasetError::NonNumericFeature`] naming the first bad line, or a column selection
    /// error ([`DatasetError::UnknownColumn`] and friends) naming the column.
    pub fn from_csv(reader: impl Read, spec: &DataSpec) -> Result<Dataset, TrainError> {
        Ok(Dataset::read_csv(reader, spec)?)
    }

    fn read_csv(mut reader: impl Read, spec: &DataSpec) -> Result<Dataset, DatasetError> {
        let mut input = Vec::new();
        reader
            .read_to_end(&mut input)
            .map_err(|source| DatasetError::Read { source })?;
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&input);
        let mut lines = CsvLines::new(input);
        let mut csv_reader = csv::ReaderBuilder::new()
            .has_headers(true)
            // Row widths are checked below, so the error names the line in our terms.
            .flexible(true)
            .from_reader(input);
        let header_record = csv_reader
            .byte_headers()
            .map_err(|source| csv_error(source, &mut lines))?
            .clone();
        if header_record.is_empty() {
            return Err(DatasetError::Empty);
        }
        let header_line = lines.line_of(header_record.position());
        let header: Vec<String> = decode(&header_record, header_line)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let (target_index, feature_indices) = select_columns(&header, spec)?;
        let feature_names: Vec<String> = feature_indices
            .iter()
            .map(|index| header[*index].clone())
            .collect();

        let width = header.len();
        let mut features = Vec::new();
        let mut target_cells = Vec::new();
        let mut target_values = Ok(Vec::new());
        let mut rows_skipped = 0u64;
        let mut row_values = Vec::with_capacity(feature_indices.len());
        let mut record = ByteRecord::new();
        loop {
            let more = csv_reader
                .read_byte_record(&mut record)
                .map_err(|source| csv_error(source, &mut lines))?;
            if !more {
                break;
            }
            let line = lines.line_of(record.position());
            if record.len() != width {
                return Err(DatasetError::Ragged {
                    line,
                    expected: width,
                    found: record.len(),
                });
            }
            let cells = decode(&record, line)?;
            // Every feature cell is checked even when the row is skipped, so a text column is
            // refused at its first text cell rather than depending on where nulls fall.
            let mut has_null = false;
            row_values.clear();
            for (name, index) in feature_names.iter().zip(&feature_indices) {
                let cell = cells[*index].trim_ascii();
                if is_null(cell) {
                    has_null = true;
                    continue;
                }
                match cell.parse::<f64>() {
                    Ok(value) if value.is_finite() => row_values.push(value as f32),
                    Ok(_) => has_null = true,
                    Err(_) => {
                        return Err(DatasetError::NonNumericFeature {
                            column: name.clone(),
                            line,
                            value: cell.to_owned(),
                        })
                    }
                }
            }
            let target = cells[target_index].trim_ascii();
            if has_null || is_null(target) {
                rows_skipped += 1;
                continue;
            }
            features.extend_from_slice(&row_values);
            match target.parse::<f64>() {
                Ok(value) if value.is_finite() => {
                    if let Ok(values) = target_values.as_mut() {
                        values.push(value);
                    }
                }
                _ => {
                    if target_values.is_ok() {
                        target_values = Err(NonNumericCell {
                            line,
                            value: target.to_owned(),
                        });
                    }
                }
            }
            target_cells.push(target.to_owned());
        }
        Ok(Dataset {
            feature_names,
            target_name: header[target_index].clone(),
            features,
            target_cells,
            target_values,
            rows_skipped,
        })
    }

    /// Feature columns, in model input order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    pub fn target_name(&self) -> &str {
        &self.target_name
    }

    /// Rows kept for training (those without nulls).
    pub fn rows(&self) -> usize {
        self.target_cells.len()
    }

    /// Rows skipped because a feature or the target was null.
    pub fn rows_skipped(&self) -> u64 {
        self.rows_skipped
    }

    /// One kept row's features, in [`Dataset::feature_names`] order.
    pub fn row(&self, index: usize) -> &[f32] {
        let width = self.feature_names.len();
        &self.features[index * width..(index + 1) * width]
    }

    /// All kept rows' features, row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// The task [`Task::Auto`] resolves to for this target.
    pub fn inferred_task(&self) -> TaskKind {
        match &self.target_values {
            Err(_) => TaskKind::Classification,
            Ok(values) => {
                let integers = values.iter().all(|value| value.fract() == 0.0);
                if integers && distinct_sorted(values).len() <= AUTO_CLASSIFICATION_MAX_CLASSES {
                    TaskKind::Classification
                } else {
                    TaskKind::Regression
                }
            }
        }
    }

    /// Resolves the target column for `task`.
    ///
    /// # Errors
    /// [`DatasetError::NonNumericTarget`] for regression on a text target,
    /// [`DatasetError::TooManyClasses`] for classification with more than [`MAX_CLASSES`].
    pub fn targets(&self, task: Task) -> Result<(TaskKind, Targets), DatasetError> {
        let kind = match task {
            Task::Auto => self.inferred_task(),
            Task::Classification => TaskKind::Classification,
            Task::Regression => TaskKind::Regression,
        };
        let targets = match kind {
            TaskKind::Regression => match &self.target_values {
                Ok(values) => Targets::Values(values.clone()),
                Err(cell) => {
                    return Err(DatasetError::NonNumericTarget {
                        column: self.target_name.clone(),
                        line: cell.line,
                        value: cell.value.clone(),
                    })
                }
            },
            TaskKind::Classification => self.class_targets()?,
        };
        Ok((kind, targets))
    }

    fn class_targets(&self) -> Result<Targets, DatasetError> {
        let too_many = |classes: usize| DatasetError::TooManyClasses {
            column: self.target_name.clone(),
            classes,
            max: MAX_CLASSES,
        };
        match &self.target_values {
            Ok(values) => {
                let distinct = distinct_sorted(values);
                if distinct.len() > MAX_CLASSES {
                    return Err(too_many(distinct.len()));
                }
                let labels = values
                    .iter()
                    .map(|value| {
                        let index = distinct
                            .binary_search_by(|probe| probe.total_cmp(&normalize_zero(*value)))
                            .expect("every value is among the distinct values");
                        index as u32
                    })
                    .collect();
                let names = distinct.iter().map(|value| number_label(*value)).collect();
                Ok(Targets::Classes { names, labels })
            }
            Err(_) => {
                let distinct: BTreeSet<&str> =
                    self.target_cells.iter().map(String::as_str).collect();
                if distinct.len() > MAX_CLASSES {
                    return Err(too_many(distinct.len()));
                }
                let names: Vec<String> = distinct.into_iter().map(str::to_owned).collect();
                let labels = self
                    .target_cells
                    .iter()
                    .map(|cell| {
                        let index = names
                            .binary_search_by(|probe| probe.as_str().cmp(cell))
                            .expect("every cell is among the distinct cells");
                        index as u32
                    })
                    .collect();
                Ok(Targets::Classes { names, labels })
            }
        }
    }
}

/// `-0.0` and `0.0` are one label.
fn normalize_zero(value: f64) -> f64 {
    if value == 0.0 {
        0.0
    } else {
        value
    }
}

fn distinct_sorted(values: &[f64]) -> Vec<f64> {
    let mut distinct: Vec<f64> = values.iter().map(|value| normalize_zero(*value)).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    distinct
}

/// How a numeric class is named in the manifest: `3`, not `3.0`, for integers.
fn number_label(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn is_null(trimmed: &str) -> bool {
    trimmed.is_empty()
        || NULL_TOKENS
            .iter()
            .any(|token| trimmed.eq_ignore_ascii_case(token))
}

/// Returns the target's header index and the features' header indices in input order.
fn select_columns(header: &[String], spec: &DataSpec) -> Result<(usize, Vec<usize>), DatasetError> {
    let mut seen = HashSet::new();
    for name in header {
        if !seen.insert(name.as_str()) {
            return Err(DatasetError::DuplicateColumn { name: name.clone() });
        }
    }
    let position = |name: &String| {
        header
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| DatasetError::UnknownColumn {
                name: name.clone(),
                available: header.to_vec(),
            })
    };
    let target_index = position(&spec.target)?;
    let feature_indices = match &spec.features {
        None => (0..header.len())
            .filter(|index| *index != target_index)
            .collect(),
        Some(features) => {
            let mut requested = HashSet::new();
            let mut indices = Vec::with_capacity(features.len());
            for name in features {
                if !requested.insert(name.as_str()) {
                    return Err(DatasetError::DuplicateFeature { name: name.clone() });
                }
                if *name == spec.target {
                    return Err(DatasetError::TargetIsFeature { name: name.clone() });
                }
                indices.push(position(name)?);
            }
            indices
        }
    };
    if feature_indices.is_empty() {
        return Err(DatasetError::NoFeatures {
            target: spec.target.clone(),
        });
    }
    Ok((target_index, feature_indices))
}

/// Decodes every cell of a record as UTF-8, naming the first bad one.
fn decode(record: &ByteRecord, line: u64) -> Result<Vec<&str>, DatasetError> {
    shoal_drift::csv_lines::decode_record(record)
        .map_err(|column| DatasetError::Encoding { line, column })
}

fn csv_error(source: csv::Error, lines: &mut CsvLines<'_>) -> DatasetError {
    let line = lines.line_of(source.position());
    DatasetError::Csv { line, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str) -> DataSpec {
        DataSpec {
            target: target.into(),
            features: None,
        }
    }

    #[test]
    fn skips_null_rows_and_counts_them() {
        let csv = "a,b,label\n1,2,x\nNA,3,y\n4,,y\n5,6,null\n7,8,y\n";
        let dataset = Dataset::from_csv(csv.as_bytes(), &spec("label")).unwrap();
        assert_eq!(dataset.rows(), 2);
        assert_eq!(dataset.rows_skipped(), 3);
        assert_eq!(dataset.row(1), &[7.0, 8.0]);
        let (kind, targets) = dataset.targets(Task::Auto).unwrap();
        assert_eq!(kind, TaskKind::Classification);
        assert_eq!(
            targets,
            Targets::Classes {
                names: vec!["x".into(), "y".into()],
                labels: vec![0, 1]
            }
        );
    }

    #[test]
    fn numeric_labels_sort_numerically_and_auto_picks_the_task() {
        let csv = "a,label\n1,10\n2,9\n3,-1\n4,9.0\n";
        let dataset = Dataset::from_csv(csv.as_bytes(), &spec("label")).unwrap();
        let (kind, targets) = dataset.targets(Task::Auto).unwrap();
        assert_eq!(kind, TaskKind::Classification);
        assert_eq!(
            targets,
            Targets::Classes {
                names: vec!["-1".into(), "9".into(), "10".into()],
                labels: vec![2, 1, 0, 1]
            }
        );
        let (kind, _) = dataset.targets(Task::Regression).unwrap();
        assert_eq!(kind, TaskKind::Regression);

        let csv = "a,y\n1,0.5\n2,1.5\n";
        let dataset = Dataset::from_csv(csv.as_bytes(), &spec("y")).unwrap();
        assert_eq!(dataset.inferred_task(), TaskKind::Regression);
    }

    #[test]
    fn explicit_features_keep_their_order_and_refuse_the_target() {
        let csv = "a,b,c,y\n1,2,3,0\n";
        let chosen = DataSpec {
            target: "y".into(),
            features: Some(vec!["c".into(), "a".into()]),
        };
        let dataset = Dataset::from_csv(csv.as_bytes(), &chosen).unwrap();
        assert_eq!(dataset.feature_names(), ["c", "a"]);
        assert_eq!(dataset.row(0), &[3.0, 1.0]);
        let with_target = DataSpec {
            target: "y".into(),
            features: Some(vec!["y".into()]),
        };
        let error = Dataset::from_csv(csv.as_bytes(), &with_target).unwrap_err();
        assert!(
            matches!(
                error,
                TrainError::Dataset(DatasetError::TargetIsFeature { .. })
            ),
            "{error}"
        );
    }

    #[test]
    fn crlf_and_a_byte_order_mark_keep_line_numbers_right() {
        let csv = "\u{feff}a,label\r\n1,x\r\n\r\n2,y,extra\r\n";
        let error = Dataset::from_csv(csv.as_bytes(), &spec("label")).unwrap_err();
        assert_eq!(error.to_string(), "line 4 has 3 cells, the header has 2");
    }

    #[test]
    fn explicit_classification_of_a_fractional_target_names_classes_by_value() {
        let csv = "a,y\n1,0.5\n2,1.5\n3,0.5\n";
        let dataset = Dataset::from_csv(csv.as_bytes(), &spec("y")).unwrap();
        let (kind, targets) = dataset.targets(Task::Classification).unwrap();
        assert_eq!(kind, TaskKind::Classification);
        assert_eq!(
            targets,
            Targets::Classes {
                names: vec!["0.5".into(), "1.5".into()],
                labels: vec![0, 1, 0]
            }
        );
    }

    #[test]
    fn regression_on_text_names_the_first_text_cell() {
        let csv = "a,y\n1,2\n\n2,high\n";
        let dataset = Dataset::from_csv(csv.as_bytes(), &spec("y")).unwrap();
        let error = dataset.targets(Task::Regression).unwrap_err();
        assert_eq!(
            error.to_string(),
            "regression needs a numeric target, but \"y\" on line 4 is \"high\""
        );
    }
}
