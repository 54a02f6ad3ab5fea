//! The run search filter: MLflow's filter grammar plus `or` and parentheses.
//!
//! `Filter::parse` checks syntax and types up front (a metric compared with a string is an
//! error with a column, not a search that silently matches nothing); `Filter::matches` then
//! evaluates against any [`Searchable`] run. Evaluation follows SQL's NULL rules: a
//! comparison on a key the run does not have is false, whatever the operator, and only
//! `IS NULL` sees missing keys.
//!
//! The grammar is on [`Filter`].

pub(crate) mod lexer;
mod like;
pub(crate) mod parser;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::field::{Field, FieldValue, Searchable};
use crate::number::format_number;
use like::LikePattern;

/// A syntax or type error in a filter or order-by string.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("column {column}: {message}")]
pub struct FilterError {
    /// 1-based character (not byte) column in the input, so it can be underlined.
    pub column: usize,
    /// What is wrong and, where possible, what was expected.
    pub message: String,
}

/// A parsed run filter, ready to test runs against.
///
/// Keywords (`and`, `or`, `like`, `in`, `is`, `not`, `null`) and prefixes ignore case;
/// `and` binds tighter than `or`. Metrics and `start_time`/`end_time` compare with numbers;
/// params, tags and the other attributes with quoted strings, using `=`, `!=`, `LIKE`,
/// `ILIKE` (`%` any run, `_` one character, a backslash escapes) or `IN`. A param also takes a
/// bare number and compares it as written (`params.hidden = 16` is `'16'`). Strings escape
/// their quote by doubling it or with a backslash.
///
/// ```text
/// filter     := [ or_expr ] END
/// or_expr    := and_expr { OR and_expr }
/// and_expr   := primary { AND primary }
/// primary    := '(' or_expr ')' | comparison
/// comparison := field ( op value
///                     | [NOT] LIKE string | [NOT] ILIKE string
///                     | [NOT] IN '(' value { ',' value } ')'
///                     | IS [NOT] NULL )
/// field      := (metrics|metric|params|param|tags|tag) '.' key
///             | (attributes|attribute|attr) '.' attribute | attribute
/// key        := word-with-dots | '`' any '`' | '"' any '"'
/// op         := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
/// value      := number | 'string' | "string"
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The text it was parsed from, shown back in logs and errors.
    source: String,
    /// `None` for the empty filter, which matches every run.
    expr: Option<Expr>,
}

/// A comparison operator between a field and a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The boolean structure of a filter; `And`/`Or` hold two or more children.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Compare(Comparison),
}

/// One test on one field of a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Comparison {
    pub(crate) field: Field,
    pub(crate) predicate: Predicate,
}

/// A type-checked test: the parser only builds number predicates for numeric fields and
/// text predicates for string fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Predicate {
    Number {
        op: CmpOp,
        value: f64,
    },
    /// `op` is `Eq` or `Ne`: ordering strings is refused at parse time.
    Text {
        op: CmpOp,
        value: String,
    },
    Like {
        pattern: LikePattern,
        negated: bool,
    },
    InNumbers {
        values: Vec<f64>,
        negated: bool,
    },
    InTexts {
        values: Vec<String>,
        negated: bool,
    },
    IsNull {
        negated: bool,
    },
}

// === impl FilterError ===

impl FilterError {
    pub(crate) fn new(column: usize, message: String) -> Self {
        FilterError { column, message }
    }

    /// Returns `filter` and, on the line below, a `^` under the error's column, for CLIs
    /// and API error bodies:
    ///
    /// ```text
    /// metrics.accuracy foo 0.9
    ///                  ^
    /// ```
    pub fn pointer(&self, filter: &str) -> String {
        let line: String = filter
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        // Tabs stay tabs so the caret lines up however the terminal renders them.
        let pad: String = line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let missing = self
            .column
            .saturating_sub(1)
            .saturating_sub(pad.chars().count());
        format!("{line}\n{pad}{}^", " ".repeat(missing))
    }
}

// === impl Filter ===

impl Filter {
    /// Parses and type-checks a filter; the empty (or all-blank) string matches every run.
    ///
    /// # Errors
    ///
    /// Returns a [`FilterError`] with the column of the first problem: bad syntax, an
    /// unknown prefix or attribute, or a value of the wrong type for its field.
    pub fn parse(input: &str) -> Result<Filter, FilterError> {
        let mut parser = parser::Parser::new(input)?;
        let expr = parser.parse_filter()?;
        Ok(Filter {
            source: input.to_owned(),
            expr,
        })
    }

    /// Returns true when `run` satisfies the filter.
    pub fn matches(&self, run: &dyn Searchable) -> bool {
        self.expr.as_ref().is_none_or(|expr| expr.matches(run))
    }

    /// Returns true for the empty filter, so callers can skip loading run details.
    pub fn is_match_all(&self) -> bool {
        self.expr.is_none()
    }

    /// Returns the text the filter was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Filter::parse(input)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

// === impl CmpOp ===

impl CmpOp {
    /// Returns true when `ordering` (of field value vs. literal) satisfies the operator.
    fn accepts(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering == Ordering::Equal,
            CmpOp::Ne => ordering != Ordering::Equal,
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Le => ordering != Ordering::Greater,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        })
    }
}

// === impl Expr ===

impl Expr {
    fn matches(&self, run: &dyn Searchable) -> bool {
        match self {
            Expr::Or(children) => children.iter().any(|child| child.matches(run)),
            Expr::And(children) => children.iter().all(|child| child.matches(run)),
            Expr::Compare(comparison) => comparison.matches(run),
        }
    }
}

// === impl Comparison ===

impl Comparison {
    fn matches(&self, run: &dyn Searchable) -> bool {
        match (&self.predicate, self.field.value(run)) {
            (Predicate::IsNull { negated }, value) => value.is_none() != *negated,
            // SQL NULL semantics: every other test on a missing value is false, `!=` too.
            (_, None) => false,
            (
                Predicate::Number {
                    op,
                    value: expected,
                },
                Some(value),
            ) => as_number(&value)
                .and_then(|actual| actual.partial_cmp(expected))
                .is_some_and(|ordering| op.accepts(ordering)),
            (
                Predicate::Text {
                    op,
                    value: expected,
                },
                Some(value),
            ) => {
                let equal = as_text(&value) == *expected;
                if *op == CmpOp::Eq {
                    equal
                } else {
                    !equal
                }
            }
            (Predicate::Like { pattern, negated }, Some(value)) => {
                pattern.matches(&as_text(&value)) != *negated
            }
            (Predicate::InNumbers { values, negated }, Some(value)) => match as_number(&value) {
                Some(actual) if !actual.is_nan() => values.contains(&actual) != *negated,
                _ => false,
            },
            (Predicate::InTexts { values, negated }, Some(value)) => {
                let actual = as_text(&value);
                values.contains(&actual) != *negated
            }
        }
    }
}

/// Reads a value as a number; a hub returning text for a numeric attribute still compares
/// if the text is a number.
fn as_number(value: &FieldValue<'_>) -> Option<f64> {
    match value {
        FieldValue::Number(number) => Some(*number),
        FieldValue::Text(text) => text.trim().parse().ok(),
    }
}

fn as_text(value: &FieldValue<'_>) -> String {
    match value {
        FieldValue::Number(number) => format_number(*number),
        FieldValue::Text(text) => text.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
