use std::collections::BTreeMap;

use super::*;
use crate::field::{Attribute, AttributeValue};

/// A run record for tests.
#[derive(Default)]
pub(crate) struct TestRun {
    pub(crate) metrics: BTreeMap<String, f64>,
    pub(crate) params: BTreeMap<String, String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) attributes: Vec<(Attribute, AttributeValue)>,
}

impl TestRun {
    pub(crate) fn new() -> Self {
        TestRun::default()
    }

    pub(crate) fn metric(mut self, key: &str, value: f64) -> Self {
        self.metrics.insert(key.to_owned(), value);
        self
    }

    pub(crate) fn param(mut self, key: &str, value: &str) -> Self {
        self.params.insert(key.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    pub(crate) fn attribute(mut self, name: Attribute, value: AttributeValue) -> Self {
        self.attributes.push((name, value));
        self
    }
}

impl Searchable for TestRun {
    fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).copied()
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    fn attribute(&self, name: Attribute) -> Option<AttributeValue> {
        self.attributes
            .iter()
            .find(|(attribute, _)| *attribute == name)
            .map(|(_, value)| value.clone())
    }
}

fn sample_run() -> TestRun {
    TestRun::new()
        .metric("accuracy", 0.93)
        .metric("loss", 0.2)
        .metric("f1 score", 0.8)
        .metric("nan", f64::NAN)
        .param("hidden", "16")
        .param("model", "tree")
        .param("a b", "spaced")
        .param("lr", "0.001")
        .tag("mlflow.runName", "brave-owl")
        .tag("quote", "it's \"x\"")
        .tag("path", "100%_done")
        .attribute(Attribute::Status, AttributeValue::Text("FINISHED".into()))
        .attribute(Attribute::RunName, AttributeValue::Text("brave-owl".into()))
        .attribute(
            Attribute::StartTime,
            AttributeValue::Number(1_700_000_000_000.0),
        )
}

fn matches(filter: &str) -> bool {
    match Filter::parse(filter) {
        Ok(parsed) => parsed.matches(&sample_run()),
        Err(error) => panic!("{filter}: {error}\n{}", error.pointer(filter)),
    }
}

fn parse_error(filter: &str) -> FilterError {
    match Filter::parse(filter) {
        Ok(_) => panic!("{filter} should not parse"),
        Err(error) => error,
    }
}

#[test]
fn empty_filter_matches_everything() {
    for filter in ["", "   "] {
        let parsed = Filter::parse(filter).expect("parses");
        assert!(parsed.is_match_all());
        assert!(parsed.matches(&TestRun::new()));
    }
}

#[test]
fn every_numeric_operator() {
    assert!(matches("metrics.accuracy > 0.9"));
    assert!(!matches("metrics.accuracy > 0.93"));
    assert!(matches("metrics.accuracy >= 0.93"));
    assert!(matches("metrics.accuracy < 1"));
    assert!(!matches("metrics.accuracy < 0.93"));
    assert!(matches("metrics.accuracy <= 0.93"));
    assert!(matches("metrics.accuracy = 0.93"));
    assert!(matches("metrics.accuracy == 0.93"));
    assert!(!matches("metrics.accuracy != 0.93"));
    assert!(matches("metrics.accuracy <> 1"));
    assert!(matches("metrics.loss > -1"));
    assert!(matches("metrics.loss < 2e-1 or metrics.loss = 2E-1"));
    assert!(matches("metrics.loss > .1"));
    assert!(matches("attributes.start_time >= 1700000000000"));
    assert!(matches("start_time < 1.8e12"));
}

#[test]
fn string_operators() {
    assert!(matches("params.model = 'tree'"));
    assert!(matches("params.model = \"tree\""));
    assert!(!matches("params.model != 'tree'"));
    assert!(matches("params.model != 'forest'"));
    assert!(matches("tags.mlflow.runName = 'brave-owl'"));
    assert!(matches("attributes.status = 'FINISHED'"));
    assert!(matches("status = 'FINISHED'"));
    assert!(matches("attr.run_name = 'brave-owl'"));
    assert!(matches("attribute.status = 'FINISHED'"));
}

#[test]
fn mlflow_aliases_and_client_filter() {
    assert!(matches(
        "metric.accuracy > 0.5 and param.model = 'tree' and tag.path != 'x'"
    ));
    assert!(matches(
        "metrics.loss < 1 and params.model = \"tree\" and tags.mlflow.runName = 'brave-owl' and attributes.status = 'FINISHED'"
    ));
}

#[test]
fn params_accept_unquoted_numbers_as_text() {
    assert!(matches("params.hidden = 16"));
    assert!(matches("params.hidden = '16'"));
    assert!(matches("params.lr = 0.001"));
    // Compared as written, not numerically.
    assert!(!matches("params.lr = 1e-3"));
    assert!(!matches("params.hidden = 16.0"));
    assert!(matches("params.hidden IN (8, 16)"));
}

#[test]
fn quoted_strings_with_escapes() {
    assert!(matches(r#"tags.quote = 'it''s "x"'"#));
    assert!(matches(r#"tags.quote = 'it\'s "x"'"#));
    assert!(matches(r#"tags.quote = "it's \"x\"""#));
    assert!(matches(r#"tags.quote = "it's ""x""""#));
}

#[test]
fn quoted_keys() {
    assert!(matches("metrics.`f1 score` > 0.5"));
    assert!(matches("metrics.\"f1 score\" > 0.5"));
    assert!(matches("params.\"a b\" = 'spaced'"));
    assert!(matches("params.`a b` LIKE 'sp%'"));
    assert!(matches("tags.`mlflow.runName` = 'brave-owl'"));
    assert!(matches("tags.\"mlflow.runName\" = 'brave-owl'"));
    // The quoted key must touch the prefix's dot.
    assert_eq!(parse_error("metrics. `f1 score` > 0").column, 9);
}

#[test]
fn keywords_ignore_case() {
    assert!(matches(
        "metrics.accuracy > 0.9 AND params.model LIKE 'tr%'"
    ));
    assert!(matches(
        "metrics.accuracy > 0.99 Or params.model like 'tr%'"
    ));
    assert!(matches("params.model iLiKe 'TREE'"));
    assert!(matches("params.model not In ('a')"));
    assert!(matches("params.missing is null"));
    assert!(matches("params.model Is Not Null"));
    assert!(matches("METRICS.accuracy > 0.9"));
    assert!(matches("STATUS = 'FINISHED'"));
}

#[test]
fn and_binds_tighter_than_or() {
    // true or (false and false) = true; (true or false) and false would be false.
    assert!(matches(
        "metrics.accuracy > 0.9 or metrics.loss > 5 and params.model = 'x'"
    ));
    // (false and true) or true = true
    assert!(matches(
        "metrics.loss > 5 and metrics.accuracy > 0.9 or params.model = 'tree'"
    ));
    // false or (true and false) = false
    assert!(!matches(
        "metrics.loss > 5 or metrics.accuracy > 0.9 and params.model = 'x'"
    ));
}

#[test]
fn parentheses_group() {
    assert!(!matches(
        "(metrics.accuracy > 0.9 or metrics.loss > 5) and params.model = 'x'"
    ));
    assert!(matches(
        "(metrics.accuracy > 0.9 or metrics.loss > 5) and (params.model = 'tree')"
    ));
    assert!(matches("((((metrics.accuracy > 0.9))))"));
    assert!(matches(
        "(params.model = 'x' or (tags.mlflow.runName = 'brave-owl' and (metrics.loss < 1)))"
    ));
}

#[test]
fn like_patterns() {
    assert!(matches("params.model LIKE 'tr%'"));
    assert!(matches("params.model LIKE '%ee'"));
    assert!(matches("params.model LIKE 't__e'"));
    assert!(!matches("params.model LIKE 't_e'"));
    assert!(!matches("params.model LIKE 'TREE'"));
    assert!(matches("params.model ILIKE 'TR%'"));
    assert!(matches("params.model NOT LIKE 'forest%'"));
    assert!(!matches("params.model NOT ILIKE 'TREE'"));
    assert!(matches(r"tags.path LIKE '100\%\_done'"));
    assert!(!matches(r"tags.path LIKE '100\%\_donE'"));
    assert!(matches("tags.mlflow.runName LIKE '%-owl'"));
    assert!(matches("run_name LIKE 'brave%'"));
}

#[test]
fn in_and_not_in() {
    assert!(matches("params.model IN ('forest', 'tree')"));
    assert!(!matches("params.model IN ('forest')"));
    assert!(matches("params.model NOT IN ('forest', 'boost')"));
    assert!(!matches("params.model NOT IN ('tree')"));
    assert!(matches("metrics.accuracy IN (0.5, 0.93)"));
    assert!(matches("metrics.accuracy NOT IN (0.5)"));
    assert!(matches("status IN ('RUNNING', 'FINISHED')"));
    // Missing keys fail NOT IN as well, like SQL NULL.
    assert!(!matches("params.missing NOT IN ('a')"));
}

#[test]
fn is_null_tests_presence() {
    assert!(matches("params.missing IS NULL"));
    assert!(!matches("params.model IS NULL"));
    assert!(matches("params.model IS NOT NULL"));
    assert!(matches("metrics.missing IS NULL"));
    assert!(matches("metrics.nan IS NOT NULL"));
    assert!(matches("attributes.end_time IS NULL"));
    assert!(matches("tags.mlflow.runName IS NOT NULL"));
}

#[test]
fn missing_keys_fail_every_comparison() {
    for filter in [
        "metrics.missing > 0",
        "metrics.missing < 0",
        "metrics.missing = 0",
        "metrics.missing != 0",
        "params.missing = 'a'",
        "params.missing != 'a'",
        "params.missing LIKE '%'",
        "params.missing NOT LIKE 'a'",
        "tags.missing IN ('a')",
        "end_time > 0",
    ] {
        assert!(!matches(filter), "{filter}");
    }
}

#[test]
fn nan_metrics_fail_every_comparison() {
    for filter in [
        "metrics.nan > 0",
        "metrics.nan < 0",
        "metrics.nan = 0",
        "metrics.nan != 0",
        "metrics.nan IN (0)",
        "metrics.nan NOT IN (0)",
    ] {
        assert!(!matches(filter), "{filter}");
    }
}

#[test]
fn syntax_errors_point_at_the_column() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "metrics.accuracy foo 0.9",
            18,
            "expected a comparison operator after 'metrics.accuracy', found 'foo'",
        ),
        ("params.model = 'tree", 16, "unterminated string"),
        ("metric_x.a > 1", 1, "unknown identifier prefix 'metric_x'"),
        (
            "metrics.a >",
            12,
            "expected a value after '>', found end of input",
        ),
        ("metrics.a > and", 13, "expected a value after '>'"),
        (
            "(metrics.a > 1",
            15,
            "expected ')' to close the '(' at column 1",
        ),
        ("metrics.a > 1)", 14, "this ')' has no matching '('"),
        (
            "metrics.a > 1 metrics.b > 2",
            15,
            "expected 'and', 'or' or the end",
        ),
        ("metrics.a > 1 and", 18, "expected an identifier"),
        (
            "foo = 'x'",
            1,
            "unknown attribute 'foo'; known attributes are status, run_name",
        ),
        ("attributes.colour = 'x'", 12, "unknown attribute 'colour'"),
        ("metrics. > 1", 9, "missing key after 'metrics.'"),
        ("params.model = tree", 16, "quote strings, as in 'tree'"),
        ("params.a IS 'x'", 13, "expected NULL after IS"),
        (
            "params.a NOT = 'x'",
            14,
            "expected IN, LIKE or ILIKE after NOT",
        ),
        ("params.a IN 'x'", 13, "expected '(' after IN"),
        (
            "params.a IN ('x' 'y')",
            18,
            "expected ',' or ')' in the IN list",
        ),
        ("params.a IN ()", 14, "expected a value in the IN list"),
        ("()", 2, "expected an identifier"),
        ("metrics.a > 0.9and", 13, "invalid number '0.9and'"),
        ("metrics.a = `x`", 13, "backticks quote keys"),
    ];
    for (filter, column, message) in cases {
        let error = parse_error(filter);
        assert_eq!(error.column, *column, "{filter}: {error}");
        assert!(
            error.message.contains(message),
            "{filter}: '{}' does not contain '{message}'",
            error.message
        );
    }
}

#[test]
fn type_errors() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "metrics.accuracy > 'high'",
            20,
            "metric 'accuracy' compares with numbers, found the string 'high'",
        ),
        ("metrics.accuracy IN (1, 'a')", 25, "compares with numbers"),
        (
            "start_time > 'yesterday'",
            14,
            "attribute 'start_time' compares with numbers",
        ),
        (
            "tags.x = 5",
            10,
            "tag 'x' compares with quoted strings, found the number 5; write '5'",
        ),
        (
            "status = 1",
            10,
            "attribute 'status' compares with quoted strings",
        ),
        (
            "metrics.accuracy LIKE '0.9%'",
            18,
            "LIKE only applies to strings, but metric 'accuracy' is a number",
        ),
        ("end_time ILIKE '1%'", 10, "ILIKE only applies to strings"),
        (
            "params.hidden > '8'",
            15,
            "'>' compares numbers, but param 'hidden' is a string",
        ),
    ];
    for (filter, column, message) in cases {
        let error = parse_error(filter);
        assert_eq!(error.column, *column, "{filter}: {error}");
        assert!(
            error.message.contains(message),
            "{filter}: '{}' does not contain '{message}'",
            error.message
        );
    }
}

#[test]
fn error_display_and_pointer() {
    let filter = "metrics.accuracy > 0.9 and metrics.loss foo 1";
    let error = parse_error(filter);
    assert_eq!(
        error.to_string(),
        "column 41: expected a comparison operator after 'metrics.loss', found 'foo'"
    );
    assert_eq!(
        error.pointer(filter),
        format!("{filter}\n{}^", " ".repeat(40))
    );
    // Columns count characters, not bytes.
    let filter = "tags.é = 'ü' xyz";
    let error = parse_error(filter);
    assert_eq!(error.column, 14);
    assert_eq!(error.pointer(filter).lines().nth(1), Some("             ^"));
}

#[test]
fn parsed_filter_remembers_its_source() {
    let filter: Filter = "metrics.a > 1".parse().expect("parses");
    assert_eq!(filter.to_string(), "metrics.a > 1");
    assert_eq!(filter.as_str(), "metrics.a > 1");
}
