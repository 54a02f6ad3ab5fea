//! What a run search can look at: metrics, params, tags and a fixed set of attributes.
//!
//! The hub implements [`Searchable`] for its run record; the filter and order-by code only
//! ever see a run through this trait, so they stay independent of storage.

use std::borrow::Cow;
use std::fmt;

/// A run as seen by a search: the hub implements it for its run record.
pub trait Searchable {
    /// Returns the latest value of metric `key`, the one MLflow shows and searches on.
    fn metric(&self, key: &str) -> Option<f64>;
    /// Returns the value of param `key`.
    fn param(&self, key: &str) -> Option<&str>;
    /// Returns the value of tag `key`.
    fn tag(&self, key: &str) -> Option<&str>;
    /// Returns an attribute, or `None` when the run does not have it yet (`end_time` of a
    /// running run).
    fn attribute(&self, name: Attribute) -> Option<AttributeValue>;
}

/// A built-in property of a run, searchable as `attributes.<name>` or by its bare name.
///
/// The names are MLflow's, so filters written for MLflow work unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    Status,
    RunName,
    RunId,
    ExperimentId,
    /// Milliseconds since the Unix epoch.
    StartTime,
    /// Milliseconds since the Unix epoch.
    EndTime,
    UserId,
    ArtifactUri,
    LifecycleStage,
}

/// The value of an [`Attribute`]; numeric attributes are [`Attribute::StartTime`] and
/// [`Attribute::EndTime`], everything else is text.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Number(f64),
    Text(String),
}

/// One searchable column of a run: the left-hand side of a comparison or an order-by key.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(Attribute),
}

/// A field's value on one run, borrowed when the run lends it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Number(f64),
    Text(Cow<'a, str>),
}

// === impl Attribute ===

impl Attribute {
    /// Every attribute, in the order error messages list them.
    pub const ALL: [Attribute; 9] = [
        Attribute::Status,
        Attribute::RunName,
        Attribute::RunId,
        Attribute::ExperimentId,
        Attribute::StartTime,
        Attribute::EndTime,
        Attribute::UserId,
        Attribute::ArtifactUri,
        Attribute::LifecycleStage,
    ];

    /// Returns the name used in filters (`run_name`).
    pub fn name(self) -> &'static str {
        match self {
            Attribute::Status => "status",
            Attribute::RunName => "run_name",
            Attribute::RunId => "run_id",
            Attribute::ExperimentId => "experiment_id",
            Attribute::StartTime => "start_time",
            Attribute::EndTime => "end_time",
            Attribute::UserId => "user_id",
            Attribute::ArtifactUri => "artifact_uri",
            Attribute::LifecycleStage => "lifecycle_stage",
        }
    }

    /// Looks an attribute up by its filter name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Attribute> {
        Attribute::ALL
            .into_iter()
            .find(|attribute| attribute.name().eq_ignore_ascii_case(name))
    }

    /// Returns true for attributes compared as numbers (the timestamps).
    pub fn is_numeric(self) -> bool {
        matches!(self, Attribute::StartTime | Attribute::EndTime)
    }

    /// Returns the known names joined for error messages.
    pub(crate) fn known_names() -> String {
        Attribute::ALL.map(Attribute::name).join(", ")
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl Field ===

impl Field {
    /// Returns true when the field holds numbers (metrics and the timestamps).
    pub fn is_numeric(&self) -> bool {
        match self {
            Field::Metric(_) => true,
            Field::Param(_) | Field::Tag(_) => false,
            Field::Attribute(attribute) => attribute.is_numeric(),
        }
    }

    /// Describes the field for error messages: `metric 'accuracy'`, `attribute 'status'`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Field::Metric(key) => format!("metric '{key}'"),
            Field::Param(key) => format!("param '{key}'"),
            Field::Tag(key) => format!("tag '{key}'"),
            Field::Attribute(attribute) => format!("attribute '{attribute}'"),
        }
    }

    /// Reads the field from a run; `None` when the run does not have it.
    pub(crate) fn value<'a>(&self, run: &'a dyn Searchable) -> Option<FieldValue<'a>> {
        match self {
            Field::Metric(key) => run.metric(key).map(FieldValue::Number),
            Field::Param(key) => run.param(key).map(|v| FieldValue::Text(Cow::Borrowed(v))),
            Field::Tag(key) => run.tag(key).map(|v| FieldValue::Text(Cow::Borrowed(v))),
            Field::Attribute(attribute) => run.attribute(*attribute).map(|value| match value {
                AttributeValue::Number(number) => FieldValue::Number(number),
                AttributeValue::Text(text) => FieldValue::Text(Cow::Owned(text)),
            }),
        }
    }
}

impl fmt::Display for Field {
    /// Writes the field as a filter would name it, quoting keys that need it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, key) = match self {
            Field::Metric(key) => ("metrics", key.as_str()),
            Field::Param(key) => ("params", key.as_str()),
            Field::Tag(key) => ("tags", key.as_str()),
            Field::Attribute(attribute) => ("attributes", attribute.name()),
        };
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.');
        if plain {
            write!(f, "{prefix}.{key}")
        } else {
            write!(f, "{prefix}.`{}`", key.replace('`', "``"))
        }
    }
}
