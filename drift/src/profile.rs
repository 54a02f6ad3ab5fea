//! CSV profiling: the schema and per-column statistics of a dataset, which double as the
//! default drift baseline of a model trained on it.
//!
//! # Input
//! The first line is the header; every row must have as many cells as the header, and every
//! cell must be UTF-8. Anything else is refused with the line it was found on (lines count
//! from 1, the header's included, blank lines too; a line ends with LF or CRLF; a quoted cell
//! spanning lines reports the line its row starts on). A leading UTF-8 byte order mark is
//! ignored. Blank lines are skipped, so a one-column file must quote an empty cell (`""`).
//!
//! # Types and nulls
//! After trimming ASCII whitespace, a cell is null when it is empty or one of `NA`, `N/A`,
//! `null`, `NaN` (in any case). A column is numeric when every non-null cell parses as an
//! `f64` (Rust's syntax: `1`, `-2.5`, `1e3`, `inf`), otherwise categorical; a column of nulls
//! only is numeric, with no value. In a numeric column, cells that parse to an infinity are
//! counted as nulls too, so every statistic stays finite. Categorical values are kept verbatim
//! (untrimmed, case-sensitive), which is how devices will compare them.
//!
//! # Cost
//! The input is read into memory once and parsed twice: once to infer types and validate,
//! once to collect values. Numeric columns keep their values (8 bytes each) to sort them for
//! deciles; categorical columns keep a count per distinct value. Use
//! [`ProfileOptions::max_rows`] to profile a prefix of a large file.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use csv::ByteRecord;
use serde::{Deserialize, Serialize};

use crate::csv_lines::CsvLines;
use crate::{Baseline, CategoricalBaseline, FeatureBaseline, FeatureKind, NumericBaseline};

/// Default number of categorical values kept in a vocabulary; the rest is OTHER.
pub const DEFAULT_TOP_N: usize = 20;

/// Cell contents that mean "no value", compared case-insensitively after trimming.
const NULL_TOKENS: [&str; 4] = ["NA", "N/A", "null", "NaN"];

/// What to profile and how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileOptions {
    /// Columns to keep, in this order (a model's input order); `None` keeps every column in
    /// header order.
    pub features: Option<Vec<String>>,
    /// Categorical values kept by name in each vocabulary, most frequent first.
    pub top_n: usize,
    /// Stop after this many data rows; the rest of the input is neither read nor checked.
    pub max_rows: Option<u64>,
}

/// Schema and statistics of a CSV dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Data rows read (the header excluded).
    pub rows: u64,
    /// One profile per kept column, in [`ProfileOptions::features`] order.
    pub columns: Vec<ColumnProfile>,
}

/// Statistics of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// Header name.
    pub name: String,
    /// Non-null values (`rows = count + nulls`).
    pub count: u64,
    /// Null cells (see the module doc), infinities included for numeric columns.
    pub nulls: u64,
    /// Distinct non-null values.
    pub distinct: u64,
    /// Smallest value of a numeric column with values.
    pub min: Option<f64>,
    /// Largest value of a numeric column with values.
    pub max: Option<f64>,
    /// Mean of a numeric column with values.
    pub mean: Option<f64>,
    /// Population standard deviation (divided by n) of a numeric column with values.
    pub std: Option<f64>,
    /// The inferred type with its distribution: the decile histogram of a numeric column, the
    /// top categories of a categorical one. This is what the drift baseline reuses.
    pub kind: FeatureKind,
}

/// A CSV that cannot be profiled.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading the input failed.
    #[error("could not read the csv input")]
    Read {
        #[source]
        source: std::io::Error,
    },
    /// The input has no header line.
    #[error("the csv is empty: a header line is required")]
    Empty,
    /// The input has a header but no data row.
    #[error("the csv has a header but no data rows")]
    NoRows,
    /// A row has a different number of cells than the header.
    #[error("line {line} has {found} cells, the header has {expected}")]
    Ragged {
        line: u64,
        expected: usize,
        found: usize,
    },
    /// A cell is not valid UTF-8.
    #[error("line {line}, column {column}: cell is not valid utf-8")]
    Encoding {
        line: u64,
        /// 1-based position of the cell in its row.
        column: usize,
    },
    /// The header names a column twice, so features could not be told apart.
    #[error("the header names column {name:?} twice")]
    DuplicateColumn { name: String },
    /// The requested features name a column twice.
    #[error("feature {name:?} is requested twice")]
    DuplicateFeature { name: String },
    /// A requested feature is not a column of the csv.
    #[error("feature {name:?} is not a column; the csv has {available:?}")]
    UnknownFeature {
        name: String,
        available: Vec<String>,
    },
    /// The csv parser gave up (in practice only on I/O errors, which cannot happen on the
    /// in-memory copy).
    #[error("line {line}: csv parse error")]
    Csv {
        line: u64,
        #[source]
        source: csv::Error,
    },
}

// === impl ProfileOptions ===

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            features: None,
            top_n: DEFAULT_TOP_N,
            max_rows: None,
        }
    }
}

// === impl Profile ===

impl Profile {
    /// Returns the drift baseline of this profile: every column as a feature, no outputs.
    pub fn baseline(&self) -> Baseline {
        Baseline {
            rows: self.rows,
            features: self
                .columns
                .iter()
                .map(|column| FeatureBaseline {
                    name: column.name.clone(),
                    kind: column.kind.clone(),
                })
                .collect(),
            outputs: Vec::new(),
        }
    }
}

// === profile_csv ===

/// Profiles a CSV: infers each kept column's type, counts nulls, and computes the statistics
/// and the distribution described in the module doc.
///
/// # Errors
/// [`ProfileError::Read`] when the reader fails; [`ProfileError::Empty`] or
/// [`ProfileError::NoRows`] when there is no header or no data row;
/// [`ProfileError::DuplicateColumn`], [`ProfileError::DuplicateFeature`] or
/// [`ProfileError::UnknownFeature`] when the columns cannot be selected;
/// [`ProfileError::Ragged`] or [`ProfileError::Encoding`] naming the first bad line.
pub fn profile_csv(
    mut reader: impl Read,
    options: &ProfileOptions,
) -> Result<Profile, ProfileError> {
    let mut input = Vec::new();
    reader
        .read_to_end(&mut input)
        .map_err(|source| ProfileError::Read { source })?;
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&input);

    let mut lines = CsvLines::new(input);
    let (header, mut csv_reader) = open(input, &mut lines)?;
    let selected = select_columns(&header, options.features.as_deref())?;

    // Pass 1: validate every row and decide each kept column's type.
    let mut numeric = vec![true; selected.len()];
    let width = header.len();
    let rows = each_row(
        &mut csv_reader,
        &mut lines,
        width,
        options.max_rows,
        |cells| {
            for (is_numeric, index) in numeric.iter_mut().zip(&selected) {
                if *is_numeric {
                    let cell = cells[*index].trim_ascii();
                    *is_numeric = is_null(cell) || cell.parse::<f64>().is_ok();
                }
            }
        },
    )?;
    if rows == 0 {
        return Err(ProfileError::NoRows);
    }

    // Pass 2: collect the values of each kept column.
    let mut accumulators: Vec<Accumulator> = numeric
        .iter()
        .map(|is_numeric| Accumulator::new(*is_numeric))
        .collect();
    let mut lines = CsvLines::new(input);
    let (_, mut csv_reader) = open(input, &mut lines)?;
    each_row(
        &mut csv_reader,
        &mut lines,
        width,
        options.max_rows,
        |cells| {
            for (accumulator, index) in accumulators.iter_mut().zip(&selected) {
                accumulator.push(cells[*index]);
            }
        },
    )?;

    let columns = accumulators
        .into_iter()
        .zip(&selected)
        .map(|(accumulator, index)| accumulator.finish(header[*index].clone(), options.top_n))
        .collect();
    Ok(Profile { rows, columns })
}

/// Returns whether a trimmed cell means "no value".
fn is_null(trimmed: &str) -> bool {
    trimmed.is_empty()
        || NULL_TOKENS
            .iter()
            .any(|token| trimmed.eq_ignore_ascii_case(token))
}

/// Opens a CSV reader over `input` and reads its header.
fn open<'a>(
    input: &'a [u8],
    lines: &mut CsvLines<'_>,
) -> Result<(Vec<String>, csv::Reader<&'a [u8]>), ProfileError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // Row lengths are checked here, so that the error names the line in our terms.
        .flexible(true)
        .from_reader(input);
    let record = reader
        .byte_headers()
        .map_err(|source| csv_error(source, lines))?;
    if record.is_empty() {
        return Err(ProfileError::Empty);
    }
    let line = lines.line_of(record.position());
    let header = decode(record, line)?
        .into_iter()
        .map(str::to_owned)
        .collect();
    Ok((header, reader))
}

/// Returns the header indices of the kept columns, in the requested order.
fn select_columns(
    header: &[String],
    features: Option<&[String]>,
) -> Result<Vec<usize>, ProfileError> {
    let mut seen = HashSet::new();
    for name in header {
        if !seen.insert(name.as_str()) {
            return Err(ProfileError::DuplicateColumn { name: name.clone() });
        }
    }
    let Some(features) = features else {
        return Ok((0..header.len()).collect());
    };
    let mut requested = HashSet::new();
    let mut selected = Vec::with_capacity(features.len());
    for name in features {
        if !requested.insert(name.as_str()) {
            return Err(ProfileError::DuplicateFeature { name: name.clone() });
        }
        let Some(index) = header.iter().position(|column| column == name) else {
            return Err(ProfileError::UnknownFeature {
                name: name.clone(),
                available: header.to_vec(),
            });
        };
        selected.push(index);
    }
    Ok(selected)
}

/// Reads up to `max_rows` data rows, checks their width and encoding, and hands each one's
/// cells to `visit`. Returns the number of rows read.
fn each_row(
    reader: &mut csv::Reader<&[u8]>,
    lines: &mut CsvLines<'_>,
    width: usize,
    max_rows: Option<u64>,
    mut visit: impl FnMut(&[&str]),
) -> Result<u64, ProfileError> {
    let mut record = ByteRecord::new();
    let mut rows = 0u64;
    while max_rows.is_none_or(|max_rows| rows < max_rows) {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|source| csv_error(source, lines))?;
        if !more {
            break;
        }
        let line = lines.line_of(record.position());
        if record.len() != width {
            return Err(ProfileError::Ragged {
                line,
                expected: width,
                found: record.len(),
            });
        }
        visit(&decode(&record, line)?);
        rows += 1;
    }
    Ok(rows)
}

/// Decodes every cell of a record as UTF-8, naming the first bad one.
fn decode(record: &ByteRecord, line: u64) -> Result<Vec<&str>, ProfileError> {
    crate::csv_lines::decode_record(record)
        .map_err(|column| ProfileError::Encoding { line, column })
}

fn csv_error(source: csv::Error, lines: &mut CsvLines<'_>) -> ProfileError {
    let line = lines.line_of(source.position());
    ProfileError::Csv { line, source }
}

/// Values of one column collected in pass 2, by the type pass 1 inferred.
enum Accumulator {
    Numeric {
        values: Vec<f64>,
        nulls: u64,
    },
    Categorical {
        counts: HashMap<String, u64>,
        nulls: u64,
    },
}

// === impl Accumulator ===

impl Accumulator {
    fn new(numeric: bool) -> Self {
        if numeric {
            Self::Numeric {
                values: Vec::new(),
                nulls: 0,
            }
        } else {
            Self::Categorical {
                counts: HashMap::new(),
                nulls: 0,
            }
        }
    }

    fn push(&mut self, cell: &str) {
        let trimmed = cell.trim_ascii();
        match self {
            Self::Numeric { nulls, .. } | Self::Categorical { nulls, .. } if is_null(trimmed) => {
                *nulls += 1;
            }
            // Pass 1 proved that every non-null cell parses; infinities count as nulls.
            Self::Numeric { values, nulls } => match trimmed.parse::<f64>() {
                Ok(value) if value.is_finite() => values.push(value),
                _ => *nulls += 1,
            },
            Self::Categorical { counts, .. } => match counts.get_mut(cell) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(cell.to_owned(), 1);
                }
            },
        }
    }

    fn finish(self, name: String, top_n: usize) -> ColumnProfile {
        match self {
            Self::Numeric { mut values, nulls } => {
                values.sort_unstable_by(f64::total_cmp);
                let mut distinct = u64::from(!values.is_empty());
                distinct += values.windows(2).filter(|pair| pair[0] != pair[1]).count() as u64;
                let baseline = NumericBaseline::from_values(values, nulls);
                let moments = baseline.moments;
                ColumnProfile {
                    name,
                    count: moments.count(),
                    nulls: baseline.nulls,
                    distinct,
                    min: moments.min(),
                    max: moments.max(),
                    mean: moments.mean(),
                    std: moments.std(),
                    kind: FeatureKind::Numeric(baseline),
                }
            }
            Self::Categorical { counts, nulls } => {
                let count = counts.values().sum();
                let distinct = counts.len() as u64;
                ColumnProfile {
                    name,
                    count,
                    nulls,
                    distinct,
                    min: None,
                    max: None,
                    mean: None,
                    std: None,
                    kind: FeatureKind::Categorical(CategoricalBaseline::from_value_counts(
                        counts, nulls, top_n,
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
id,colour,temp
1,red,20.5
2,blue,
3,red,NA
4,green,22.0
5,red,19.0
";

    fn profile(input: &[u8], options: &ProfileOptions) -> Result<Profile, ProfileError> {
        profile_csv(input, options)
    }

    fn assert_near(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("a value");
        assert!(
            (actual - expected).abs() < 1e-12,
            "got {actual}, expected {expected}"
        );
    }

    #[test]
    fn profiles_numeric_categorical_and_blank_columns() {
        let profile = profile(SAMPLE.as_bytes(), &ProfileOptions::default()).unwrap();
        assert_eq!(profile.rows, 5);
        let [id, colour, temp] = &profile.columns[..] else {
            panic!("three columns expected: {profile:?}");
        };

        // id: 1..=5, mean 3, squared deviations 4+1+0+1+4 = 10, population variance 2.
        assert_eq!(
            (id.name.as_str(), id.count, id.nulls, id.distinct),
            ("id", 5, 0, 5)
        );
        assert_eq!((id.min, id.max), (Some(1.0), Some(5.0)));
        assert_near(id.mean, 3.0);
        assert_near(id.std, 2.0f64.sqrt());
        assert!(matches!(id.kind, FeatureKind::Numeric(_)));

        // colour: red ×3, blue, green: vocabulary by count then name.
        assert_eq!((colour.count, colour.nulls, colour.distinct), (5, 0, 3));
        assert_eq!((colour.min, colour.mean, colour.std), (None, None, None));
        let FeatureKind::Categorical(categories) = &colour.kind else {
            panic!("colour is categorical");
        };
        assert_eq!(categories.vocabulary, ["red", "blue", "green"]);
        assert_eq!(categories.counts, vec![3, 1, 1, 0]);

        // temp: 20.5, 22.0, 19.0 and two nulls (blank, NA); mean 61.5/3 = 20.5,
        // squared deviations 0 + 2.25 + 2.25 = 4.5, population variance 1.5.
        assert_eq!((temp.count, temp.nulls, temp.distinct), (3, 2, 3));
        assert_eq!((temp.min, temp.max), (Some(19.0), Some(22.0)));
        assert_near(temp.mean, 20.5);
        assert_near(temp.std, 1.5f64.sqrt());
        let FeatureKind::Numeric(histogram) = &temp.kind else {
            panic!("temp is numeric");
        };
        assert_eq!(histogram.nulls, 2);
        assert_eq!(histogram.counts.iter().sum::<u64>(), 3);

        let baseline = profile.baseline();
        assert_eq!(baseline.rows, 5);
        let names: Vec<&str> = baseline.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "colour", "temp"]);
        assert_eq!(baseline.features[2].kind, temp.kind);
        baseline.validate().unwrap();
    }

    #[test]
    fn histogram_uses_the_decile_edges() {
        let mut csv = String::from("x\n");
        for value in 1..=100 {
            csv.push_str(&format!("{value}\n"));
        }
        let profile = profile(csv.as_bytes(), &ProfileOptions::default()).unwrap();
        let FeatureKind::Numeric(histogram) = &profile.columns[0].kind else {
            panic!("x is numeric");
        };
        assert_eq!(histogram.edges.len(), 9);
        assert!((histogram.edges[0] - 10.9).abs() < 1e-12);
        assert_eq!(histogram.counts, vec![10; 10]);
    }

    #[test]
    fn null_tokens_and_infinities() {
        let csv = "x,y\n na ,a\nNULL,NA\nnan,b\n inf ,\n4,c\n-1e1,n/a\n";
        let profile = profile(csv.as_bytes(), &ProfileOptions::default()).unwrap();
        let x = &profile.columns[0];
        // na, NULL, nan are null tokens; inf parses but is not finite: four nulls.
        assert!(matches!(x.kind, FeatureKind::Numeric(_)));
        assert_eq!((x.count, x.nulls), (2, 4));
        assert_eq!((x.min, x.max), (Some(-10.0), Some(4.0)));
        let y = &profile.columns[1];
        assert!(matches!(y.kind, FeatureKind::Categorical(_)));
        assert_eq!((y.count, y.nulls), (3, 3));
    }

    #[test]
    fn one_text_cell_makes_a_column_categorical() {
        let csv = "code\n1\n2\n2\nx7\n";
        let profile = profile(csv.as_bytes(), &ProfileOptions::default()).unwrap();
        let FeatureKind::Categorical(categories) = &profile.columns[0].kind else {
            panic!("code is categorical");
        };
        assert_eq!(categories.vocabulary, ["2", "1", "x7"]);
        assert_eq!(categories.counts, vec![2, 1, 1, 0]);
    }

    #[test]
    fn all_null_column_is_numeric_without_values() {
        let csv = "x,y\n,1\nNA,2\n";
        let profile = profile(csv.as_bytes(), &ProfileOptions::default()).unwrap();
        let x = &profile.columns[0];
        assert_eq!((x.count, x.nulls, x.distinct, x.mean), (0, 2, 0, None));
        let FeatureKind::Numeric(histogram) = &x.kind else {
            panic!("x is numeric");
        };
        assert_eq!(histogram.counts, vec![0]);
    }

    #[test]
    fn features_select_and_order_columns() {
        let options = ProfileOptions {
            features: Some(vec!["temp".into(), "id".into()]),
            top_n: 1,
            max_rows: Some(2),
        };
        let profile = profile(SAMPLE.as_bytes(), &options).unwrap();
        assert_eq!(profile.rows, 2);
        let names: Vec<&str> = profile.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["temp", "id"]);
        assert_eq!((profile.columns[0].count, profile.columns[0].nulls), (1, 1));
    }

    #[test]
    fn unknown_and_duplicate_features_are_named() {
        let options = ProfileOptions {
            features: Some(vec!["temp".into(), "pressure".into()]),
            ..ProfileOptions::default()
        };
        match profile(SAMPLE.as_bytes(), &options) {
            Err(ProfileError::UnknownFeature { name, available }) => {
                assert_eq!(name, "pressure");
                assert_eq!(available, ["id", "colour", "temp"]);
            }
            other => panic!("expected an unknown feature, got {other:?}"),
        }
        let options = ProfileOptions {
            features: Some(vec!["id".into(), "id".into()]),
            ..ProfileOptions::default()
        };
        assert!(matches!(
            profile(SAMPLE.as_bytes(), &options),
            Err(ProfileError::DuplicateFeature { name }) if name == "id"
        ));
        assert!(matches!(
            profile(b"a,b,a\n1,2,3\n", &ProfileOptions::default()),
            Err(ProfileError::DuplicateColumn { name }) if name == "a"
        ));
    }

    #[test]
    fn ragged_row_is_refused_with_its_line() {
        let csv = "a,b\n1,2\n3\n4,5\n";
        match profile(csv.as_bytes(), &ProfileOptions::default()) {
            Err(ProfileError::Ragged {
                line,
                expected,
                found,
            }) => {
                assert_eq!((line, expected, found), (3, 2, 1));
            }
            other => panic!("expected a ragged row, got {other:?}"),
        }
        // Lines are counted from the input, not taken from the csv crate, which skips blank
        // lines and lags after CRLF: a quoted cell spanning two lines, blank lines (also
        // before the header), CRLF line ends.
        for (csv, line) in [
            ("a,b\n\"two\nlines\",2\n\n1,2,3\n", 5),
            ("a,b\n1,2\n\n\n1,2,3\n", 5),
            ("a,b\r\n1,2\r\n\r\n1,2,3\r\n", 4),
            ("a,b\r\n1,2,3\r\n", 2),
            ("\n\na,b\n1,2\n1\n", 5),
        ] {
            match profile(csv.as_bytes(), &ProfileOptions::default()) {
                Err(ProfileError::Ragged { line: found, .. }) => assert_eq!(found, line, "{csv:?}"),
                other => panic!("expected a ragged row in {csv:?}, got {other:?}"),
            }
        }
        // Rows past max_rows are not checked.
        let options = ProfileOptions {
            max_rows: Some(1),
            ..ProfileOptions::default()
        };
        assert_eq!(
            profile("a,b\n1,2\n3\n".as_bytes(), &options).unwrap().rows,
            1
        );
    }

    #[test]
    fn bad_utf8_is_refused_with_its_line() {
        let csv = b"a,b\n1,x\n2,\xff\xfe\n";
        assert!(matches!(
            profile(csv, &ProfileOptions::default()),
            Err(ProfileError::Encoding { line: 3, column: 2 })
        ));
        assert!(matches!(
            profile(b"a,\xc3\n1,2\n", &ProfileOptions::default()),
            Err(ProfileError::Encoding { line: 1, column: 2 })
        ));
        assert!(matches!(
            profile(b"\r\na,b\r\n\r\n\xff,2\r\n", &ProfileOptions::default()),
            Err(ProfileError::Encoding { line: 4, column: 1 })
        ));
        // Bad bytes in a column that is not kept are refused all the same: the file is bad.
        let options = ProfileOptions {
            features: Some(vec!["a".into()]),
            ..ProfileOptions::default()
        };
        assert!(matches!(
            profile(csv, &options),
            Err(ProfileError::Encoding { line: 3, column: 2 })
        ));
    }

    #[test]
    fn empty_inputs_are_refused() {
        assert!(matches!(
            profile(b"", &ProfileOptions::default()),
            Err(ProfileError::Empty)
        ));
        assert!(matches!(
            profile(b"a,b\n", &ProfileOptions::default()),
            Err(ProfileError::NoRows)
        ));
        assert_eq!(
            ProfileError::Ragged {
                line: 3,
                expected: 2,
                found: 1
            }
            .to_string(),
            "line 3 has 1 cells, the header has 2"
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let profile = profile(b"\xEF\xBB\xBFx\n1\n", &ProfileOptions::default()).unwrap();
        assert_eq!(profile.columns[0].name, "x");
    }

    #[test]
    fn read_errors_are_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        assert!(matches!(
            profile_csv(Failing, &ProfileOptions::default()),
            Err(ProfileError::Read { .. })
        ));
    }

    #[test]
    fn profile_round_trips_through_serde() {
        let profile = profile(SAMPLE.as_bytes(), &ProfileOptions::default()).unwrap();
        let json = serde_json::to_string(&profile).unwrap();
        assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), profile);
    }
}
