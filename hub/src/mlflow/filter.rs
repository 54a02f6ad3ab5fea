//! Filters on experiments, registered models and model versions: `clause (AND clause)*` with
//! `<field> <op> <value>` clauses such as `name = 'occ'` or `tags.team LIKE 'occ%'`.
//!
//! Run filters do not come through here: `runs/search` uses the hub's run search grammar
//! (`shoal_tracking::search`, from `shoal-experiment`), the same as the gRPC API.

use super::{MlflowError, MlflowResult};

/// What a clause looks at: `tags.<key>` or an attribute such as `name`; metrics and params
/// parse too, so an entity can say it has none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
}

/// One `subject op value` comparison of a filter.
#[derive(Debug, Clone)]
pub(crate) struct Clause {
    pub subject: Subject,
    op: Op,
    value: String,
}

impl Clause {
    /// Whether a text value satisfies the clause; an absent value never does.
    pub(crate) fn matches_str(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        let wanted = self.value.as_str();
        match self.op {
            Op::Eq => value == wanted,
            Op::Ne => value != wanted,
            Op::Lt => value < wanted,
            Op::Le => value <= wanted,
            Op::Gt => value > wanted,
            Op::Ge => value >= wanted,
            Op::Like => like(value, wanted),
            Op::ILike => like(&value.to_lowercase(), &wanted.to_lowercase()),
        }
    }

    /// Whether a number satisfies the clause; an absent value never does.
    pub(crate) fn matches_number(&self, value: Option<f64>) -> bool {
        let (Some(value), Ok(wanted)) = (value, self.value.parse::<f64>()) else {
            return false;
        };
        match self.op {
            Op::Eq => value == wanted,
            Op::Ne => value != wanted,
            Op::Lt => value < wanted,
            Op::Le => value <= wanted,
            Op::Gt => value > wanted,
            Op::Ge => value >= wanted,
            Op::Like | Op::ILike => false,
        }
    }
}

/// SQL `LIKE`: `%` matches any run of characters, `_` any one character.
fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&v, &p)
}

/// Parses `clause (AND clause)*`.
///
/// # Errors
/// `INVALID_PARAMETER_VALUE` naming the part of the filter that could not be read.
pub(crate) fn parse_filter(filter: &str) -> MlflowResult<Vec<Clause>> {
    let mut lexer = Lexer::new(filter);
    let mut clauses = Vec::new();
    if lexer.at_end() {
        return Ok(clauses);
    }
    loop {
        let subject = lexer.subject()?;
        let op = lexer.op()?;
        let value = lexer.value()?;
        clauses.push(Clause { subject, op, value });
        if lexer.at_end() {
            return Ok(clauses);
        }
        let word = lexer.word();
        if !word.eq_ignore_ascii_case("and") {
            return Err(lexer.error(&format!(
                "expected AND, found '{word}' (OR is not supported)"
            )));
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, pos: 0 }
    }

    fn error(&self, problem: &str) -> MlflowError {
        MlflowError::InvalidParameter(format!(
            "filter '{}' at character {}: {problem}",
            self.text, self.pos
        ))
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.text.len()
    }

    /// Characters up to whitespace, an operator or a quote.
    fn word(&mut self) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || "=!<>.`\"'".contains(c))
            .unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    fn quoted(&mut self, quote: char) -> MlflowResult<String> {
        let rest = &self.rest()[1..];
        let end = rest
            .find(quote)
            .ok_or_else(|| self.error(&format!("unclosed {quote}")))?;
        self.pos += end + 2;
        Ok(rest[..end].to_string())
    }

    fn subject(&mut self) -> MlflowResult<Subject> {
        let first = self.word().to_string();
        if first.is_empty() {
            return Err(self.error("expected a field such as metrics.loss"));
        }
        if !self.rest().starts_with('.') {
            return Ok(Subject::Attribute(first));
        }
        self.pos += 1;
        let key = match self.rest().chars().next() {
            Some(q @ ('`' | '"')) => self.quoted(q)?,
            _ => {
                // Keys may contain dots (`tags.mlflow.runName`): read to an operator or space.
                let rest = self.rest();
                let end = rest
                    .find(|c: char| c.is_whitespace() || "=!<>".contains(c))
                    .unwrap_or(rest.len());
                self.pos += end;
                rest[..end].to_string()
            }
        };
        if key.is_empty() {
            return Err(self.error("expected a key after the '.'"));
        }
        Ok(match first.to_ascii_lowercase().as_str() {
            "metrics" | "metric" => Subject::Metric(key),
            "params" | "param" | "parameters" | "parameter" => Subject::Param(key),
            "tags" | "tag" => Subject::Tag(key),
            "attributes" | "attribute" | "attr" | "run" => Subject::Attribute(key),
            other => {
                return Err(self.error(&format!(
                    "unknown field type '{other}'; use metrics., params., tags. or attributes."
                )))
            }
        })
    }

    fn op(&mut self) -> MlflowResult<Op> {
        self.skip_ws();
        for (symbol, op) in [
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.rest().starts_with(symbol) {
                self.pos += symbol.len();
                return Ok(op);
            }
        }
        let word = self.word();
        if word.eq_ignore_ascii_case("like") {
            Ok(Op::Like)
        } else if word.eq_ignore_ascii_case("ilike") {
            Ok(Op::ILike)
        } else {
            Err(self.error(&format!(
                "expected one of = != < <= > >= LIKE ILIKE, found '{word}'"
            )))
        }
    }

    fn value(&mut self) -> MlflowResult<String> {
        self.skip_ws();
        match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => self.quoted(q),
            Some(_) => {
                let rest = self.rest();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                self.pos += end;
                Ok(rest[..end].to_string())
            }
            None => Err(self.error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_joined_clauses() {
        let clauses =
            parse_filter("metrics.acc >= 0.9 AND params.lr = '0.1' and tags.`my tag` LIKE 'a%'")
                .expect("parses");
        assert_eq!(clauses.len(), 3);
        assert_eq!(clauses[0].subject, Subject::Metric("acc".into()));
        assert_eq!(clauses[1].subject, Subject::Param("lr".into()));
        assert_eq!(clauses[2].subject, Subject::Tag("my tag".into()));
        assert!(clauses[2].matches_str(Some("abc")));
        assert!(!clauses[2].matches_str(Some("cba")));
        assert!(clauses[0].matches_number(Some(0.95)));
        let dotted = parse_filter("tags.mlflow.runName = 'x'").expect("parses");
        assert_eq!(dotted[0].subject, Subject::Tag("mlflow.runName".into()));
        assert!(parse_filter("metrics.acc > 1 or params.x = 'y'").is_err());
        assert!(parse_filter("bogus.x = 1").is_err());
    }
}
