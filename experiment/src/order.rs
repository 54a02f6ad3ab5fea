//! Order-by clauses for run listings: `metrics.accuracy desc, params.hidden`.
//!
//! Fields use the filter's syntax. Runs missing a value sort after runs that have one, in
//! both directions, so `metrics.accuracy desc` never starts with runs that logged nothing.

use std::cmp::Ordering;
use std::fmt;

use crate::field::{Field, FieldValue, Searchable};
use crate::filter::lexer::TokenKind;
use crate::filter::parser::Parser;
use crate::filter::FilterError;

/// A parsed order-by list; the empty list leaves every pair of runs equal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrderBy {
    clauses: Vec<OrderClause>,
}

/// One sort key: a field and a direction.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderClause {
    pub field: Field,
    /// `DESC`; the default is ascending, as in SQL and MLflow.
    pub descending: bool,
}

impl OrderBy {
    /// Parses a comma-separated list of `field [ASC|DESC]`; blank input is the empty list.
    ///
    /// # Errors
    ///
    /// Returns a [`FilterError`] with the column of the first problem.
    pub fn parse(input: &str) -> Result<OrderBy, FilterError> {
        let mut parser = Parser::new(input)?;
        let mut clauses = Vec::new();
        if parser.at_end() {
            return Ok(OrderBy { clauses });
        }
        loop {
            let (field, name) = parser.parse_field()?;
            let mut descending = false;
            if parser.peek().is_keyword("desc") {
                descending = true;
                parser.advance();
            } else if parser.peek().is_keyword("asc") {
                parser.advance();
            }
            clauses.push(OrderClause { field, descending });
            let next = parser.advance();
            match next.kind {
                TokenKind::End => break,
                TokenKind::Comma => continue,
                _ => {
                    return Err(FilterError::new(
                        next.column,
                        format!(
                            "expected ASC, DESC, ',' or the end after '{name}', found {}",
                            next.describe()
                        ),
                    ))
                }
            }
        }
        Ok(OrderBy { clauses })
    }

    /// Parses MLflow's `order_by` list, where each entry holds one or more clauses.
    ///
    /// # Errors
    ///
    /// Returns the first entry's error; its message names the entry (0-based) and its
    /// column counts within that entry.
    pub fn parse_many<S: AsRef<str>>(entries: &[S]) -> Result<OrderBy, FilterError> {
        let mut clauses = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match OrderBy::parse(entry.as_ref()) {
                Ok(order) => clauses.extend(order.clauses),
                Err(error) => {
                    return Err(FilterError::new(
                        error.column,
                        format!("order_by entry {index}: {}", error.message),
                    ))
                }
            }
        }
        Ok(OrderBy { clauses })
    }

    pub fn clauses(&self) -> &[OrderClause] {
        &self.clauses
    }

    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Compares two runs clause by clause: numbers numerically, strings by byte order,
    /// missing values (and NaN metrics) last whatever the direction.
    ///
    /// Returns `Equal` when every clause ties; the caller breaks such ties itself, so that
    /// pages stay stable. The hub follows MLflow: `start_time` descending, then `run_id`.
    pub fn compare(&self, a: &dyn Searchable, b: &dyn Searchable) -> Ordering {
        for clause in &self.clauses {
            let ordering = match (sort_key(&clause.field, a), sort_key(&clause.field, b)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let ordering = compare_values(&x, &y);
                    if clause.descending {
                        ordering.reverse()
                    } else {
                        ordering
                    }
                }
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
}

impl fmt::Display for OrderBy {
    /// Writes the list back in a form [`OrderBy::parse`] accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, clause) in self.clauses.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            let direction = if clause.descending { "DESC" } else { "ASC" };
            write!(f, "{} {direction}", clause.field)?;
        }
        Ok(())
    }
}

fn sort_key<'a>(field: &Field, run: &'a dyn Searchable) -> Option<FieldValue<'a>> {
    match field.value(run)? {
        FieldValue::Number(number) if number.is_nan() => None,
        value => Some(value),
    }
}

/// Numbers before strings if a field ever mixes them (a hub returning text for a numeric
/// attribute), so the order stays total.
fn compare_values(x: &FieldValue<'_>, y: &FieldValue<'_>) -> Ordering {
    match (x, y) {
        (FieldValue::Number(x), FieldValue::Number(y)) => x.total_cmp(y),
        (FieldValue::Text(x), FieldValue::Text(y)) => x.cmp(y),
        (FieldValue::Number(_), FieldValue::Text(_)) => Ordering::Less,
        (FieldValue::Text(_), FieldValue::Number(_)) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{Attribute, AttributeValue};
    use crate::filter::tests::TestRun;

    fn run(name: &str) -> TestRun {
        TestRun::new().attribute(Attribute::RunName, AttributeValue::Text(name.to_owned()))
    }

    fn sorted(order: &str, runs: Vec<TestRun>) -> Vec<String> {
        let order = OrderBy::parse(order).expect("parses");
        let mut runs = runs;
        runs.sort_by(|a, b| order.compare(a, b));
        runs.iter()
            .map(|run| match run.attribute(Attribute::RunName) {
                Some(AttributeValue::Text(name)) => name,
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn parses_clauses_with_default_ascending() {
        let order =
            OrderBy::parse("metrics.accuracy desc, params.hidden, tags.`a b` ASC, start_time DeSc")
                .expect("parses");
        assert_eq!(
            order.clauses(),
            &[
                OrderClause {
                    field: Field::Metric("accuracy".into()),
                    descending: true
                },
                OrderClause {
                    field: Field::Param("hidden".into()),
                    descending: false
                },
                OrderClause {
                    field: Field::Tag("a b".into()),
                    descending: false
                },
                OrderClause {
                    field: Field::Attribute(Attribute::StartTime),
                    descending: true
                },
            ]
        );
        assert_eq!(
            order.to_string(),
            "metrics.accuracy DESC, params.hidden ASC, tags.`a b` ASC, attributes.start_time DESC"
        );
        assert_eq!(OrderBy::parse(&order.to_string()), Ok(order));
        assert!(OrderBy::parse("  ").expect("parses").is_empty());
    }

    #[test]
    fn parse_many_concatenates_entries() {
        let entries = vec!["metrics.a DESC".to_owned(), "params.b".to_owned()];
        let order = OrderBy::parse_many(&entries).expect("parses");
        assert_eq!(order.clauses().len(), 2);
        let error = OrderBy::parse_many(&["metrics.a", "params.b sideways"]).unwrap_err();
        assert_eq!(error.column, 10);
        assert_eq!(
            error.message,
            "order_by entry 1: expected ASC, DESC, ',' or the end after 'params.b', found 'sideways'"
        );
    }

    #[test]
    fn errors_carry_columns() {
        assert_eq!(OrderBy::parse("metrics.a desc,").unwrap_err().column, 16);
        assert_eq!(OrderBy::parse("metrics.a, , b").unwrap_err().column, 12);
        assert_eq!(OrderBy::parse("bogus").unwrap_err().column, 1);
        assert_eq!(
            OrderBy::parse("metrics.a desc desc").unwrap_err().column,
            16
        );
    }

    #[test]
    fn missing_values_sort_last_in_both_directions() {
        let runs = || {
            vec![
                run("none"),
                run("low").metric("acc", 0.1),
                run("nan").metric("acc", f64::NAN),
                run("high").metric("acc", 0.9),
                run("mid").metric("acc", 0.5),
            ]
        };
        assert_eq!(
            sorted("metrics.acc", runs()),
            ["low", "mid", "high", "none", "nan"]
        );
        assert_eq!(
            sorted("metrics.acc DESC", runs()),
            ["high", "mid", "low", "none", "nan"]
        );
    }

    #[test]
    fn numbers_numerically_strings_lexicographically() {
        let runs = vec![
            run("a").metric("m", 10.0).param("p", "10"),
            run("b").metric("m", 9.0).param("p", "9"),
            run("c").metric("m", -1.0).param("p", "-1"),
        ];
        assert_eq!(sorted("metrics.m", runs), ["c", "b", "a"]);
        let runs = vec![
            run("a").param("p", "10"),
            run("b").param("p", "9"),
            run("c").param("p", "-1"),
        ];
        assert_eq!(sorted("params.p", runs), ["c", "a", "b"]);
    }

    #[test]
    fn ties_fall_through_to_the_next_clause_then_the_caller() {
        let runs = || {
            vec![
                run("x").metric("acc", 0.9).param("h", "8"),
                run("y").metric("acc", 0.9).param("h", "16"),
                run("z").metric("acc", 0.5).param("h", "32"),
            ]
        };
        assert_eq!(
            sorted("metrics.acc desc, params.h", runs()),
            ["y", "x", "z"]
        );
        assert_eq!(
            sorted("metrics.acc desc, params.h desc", runs()),
            ["x", "y", "z"]
        );
        let order = OrderBy::parse("metrics.acc").expect("parses");
        let all = runs();
        assert_eq!(order.compare(&all[0], &all[1]), Ordering::Equal);
        assert_eq!(
            OrderBy::default().compare(&all[0], &all[2]),
            Ordering::Equal
        );
    }
}
