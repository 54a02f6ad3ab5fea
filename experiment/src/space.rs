//! Sweep search spaces: how each hyperparameter varies across a sweep's runs.
//!
//! The spec syntax is on [`ParamSpec`].

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::number::format_number;

/// Functions a spec may call, listed in errors.
const FUNCTIONS: &str = "choice, uniform, loguniform, quniform, randint";

/// How one hyperparameter varies.
///
/// A spec is written the way the CLI takes it, `--param hidden=choice(8,16,32)`:
///
/// | spec                 | values                                                        |
/// |----------------------|---------------------------------------------------------------|
/// | `40`, `relu`, `'a b'`| that constant                                                 |
/// | `choice(v, ...)`     | one of the listed numbers or strings                          |
/// | `uniform(lo, hi)`    | a float in `[lo, hi)`                                         |
/// | `loguniform(lo, hi)` | `exp(uniform(ln lo, ln hi))`, for rates spanning magnitudes   |
/// | `quniform(lo, hi, q)`| `round(uniform(lo, hi) / q) * q`, as in Hyperopt, so the ends may round outside `[lo, hi]` by up to `q/2` |
/// | `randint(lo, hi)`    | an integer in `[lo, hi)`: `hi` is exclusive, as in NumPy and Ray Tune |
///
/// Strings may be quoted with `'` or `"` (the quote doubled or backslash-escaped inside);
/// a bare word that is not a number is a string too. Every type's `Display` writes the
/// form `parse` reads, so a stored sweep can be shown and resubmitted as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParamSpec {
    Constant {
        value: ParamValue,
    },
    Choice {
        values: Vec<ParamValue>,
    },
    Uniform {
        low: f64,
        high: f64,
    },
    LogUniform {
        low: f64,
        high: f64,
    },
    QUniform {
        low: f64,
        high: f64,
        q: f64,
    },
    /// `high` is exclusive.
    RandInt {
        low: i64,
        high: i64,
    },
}

/// A constant or choice value: a number or a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Number(f64),
    Text(String),
}

/// A named hyperparameter of a search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchParam {
    pub name: String,
    pub spec: ParamSpec,
}

/// The hyperparameters of a sweep, in the order the user gave them; grid sampling varies
/// the last one fastest.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<SearchParam>", into = "Vec<SearchParam>")]
pub struct SearchSpace {
    params: Vec<SearchParam>,
}

/// What is wrong with one spec; [`SpaceError::InvalidParam`] adds the parameter's name.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParamSpecError {
    #[error("empty spec")]
    Empty,
    #[error("unknown function '{name}'; known functions are {FUNCTIONS}")]
    UnknownFunction { name: String },
    #[error("{function} is missing its closing ')'")]
    UnclosedCall { function: String },
    #[error("{function} takes {expected} arguments, found {found}")]
    ArgumentCount {
        function: String,
        expected: usize,
        found: usize,
    },
    #[error("{function} needs at least one value")]
    EmptyChoice { function: String },
    #[error("{function}: argument {position} is empty")]
    EmptyArgument { function: String, position: usize },
    #[error("{function}: argument {position} must be a finite number, found '{found}'")]
    NotANumber {
        function: String,
        position: usize,
        found: String,
    },
    #[error("{function}: the lower bound {low} must be below the upper bound {high}")]
    EmptyRange {
        function: String,
        low: String,
        high: String,
    },
    #[error("loguniform: bounds must be positive, found {low}")]
    NonPositiveLogBound { low: String },
    #[error("quniform: q must be positive, found {q}")]
    NonPositiveStep { q: String },
    #[error("randint: bounds must be integers, found {found}")]
    NonIntegerBound { found: String },
    #[error("unterminated string starting with {quote}")]
    UnterminatedString { quote: char },
    #[error("unexpected '{found}' after the closing quote")]
    TextAfterQuote { found: String },
    #[error("unexpected '{character}' in '{text}'; quote strings that contain it")]
    UnexpectedCharacter { character: char, text: String },
}

/// An invalid search space or sampling request.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SpaceError {
    #[error("parameter '{name}': {problem}")]
    InvalidParam {
        name: String,
        problem: ParamSpecError,
    },
    #[error("parameter '{name}' is defined twice")]
    DuplicateParam { name: String },
    #[error("invalid parameter name '{name}': it must be non-empty, without '=' or whitespace")]
    InvalidName { name: String },
    #[error("'{assignment}' is not of the form name=spec")]
    MissingEquals { assignment: String },
    #[error("parameter '{name}' is {spec}, which grid sampling cannot enumerate; use choice(...) or random sampling")]
    NotEnumerable { name: String, spec: String },
    #[error("unknown sampling '{found}'; expected grid, random or random:<seed>")]
    UnknownSampling { found: String },
}

// === impl ParamSpec ===

impl ParamSpec {
    /// Parses one spec: a function call or a constant.
    ///
    /// # Errors
    ///
    /// Returns a [`ParamSpecError`] saying what is wrong: an unknown function, a wrong
    /// argument count, an empty or inverted range, a non-positive loguniform bound.
    pub fn parse(input: &str) -> Result<ParamSpec, ParamSpecError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ParamSpecError::Empty);
        }
        let Some((function, rest)) = split_call(text) else {
            return Ok(ParamSpec::Constant {
                value: parse_value(text)?,
            });
        };
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| ParamSpecError::UnclosedCall {
                function: function.to_owned(),
            })?;
        let args = split_arguments(inner)?;
        let function_lower = function.to_ascii_lowercase();
        let spec = match function_lower.as_str() {
            "choice" => {
                if args.iter().all(|arg| arg.trim().is_empty()) && args.len() <= 1 {
                    return Err(ParamSpecError::EmptyChoice {
                        function: function_lower,
                    });
                }
                let mut values = Vec::with_capacity(args.len());
                for (index, arg) in args.iter().enumerate() {
                    if arg.trim().is_empty() {
                        return Err(ParamSpecError::EmptyArgument {
                            function: function_lower,
                            position: index + 1,
                        });
                    }
                    values.push(parse_value(arg)?);
                }
                ParamSpec::Choice { values }
            }
            "uniform" | "loguniform" => {
                let [low, high] = numbers::<2>(&function_lower, &args)?;
                if function_lower == "uniform" {
                    ParamSpec::Uniform { low, high }
                } else {
                    ParamSpec::LogUniform { low, high }
                }
            }
            "quniform" => {
                let [low, high, q] = numbers::<3>(&function_lower, &args)?;
                ParamSpec::QUniform { low, high, q }
            }
            "randint" => {
                let [low, high] = numbers::<2>(&function_lower, &args)?;
                ParamSpec::RandInt {
                    low: integer(low)?,
                    high: integer(high)?,
                }
            }
            _ => {
                return Err(ParamSpecError::UnknownFunction {
                    name: function.to_owned(),
                })
            }
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the invariants `parse` enforces, for specs that arrive deserialized.
    ///
    /// # Errors
    ///
    /// Returns the first violated rule.
    pub fn validate(&self) -> Result<(), ParamSpecError> {
        let range = |function: &str, low: f64, high: f64| {
            if !low.is_finite() || !high.is_finite() {
                let (position, found) = if low.is_finite() { (2, high) } else { (1, low) };
                return Err(ParamSpecError::NotANumber {
                    function: function.to_owned(),
                    position,
                    found: format_number(found),
                });
            }
            if low >= high {
                return Err(ParamSpecError::EmptyRange {
                    function: function.to_owned(),
                    low: format_number(low),
                    high: format_number(high),
                });
            }
            Ok(())
        };
        match self {
            ParamSpec::Constant { .. } => Ok(()),
            ParamSpec::Choice { values } if values.is_empty() => Err(ParamSpecError::EmptyChoice {
                function: "choice".to_owned(),
            }),
            ParamSpec::Choice { .. } => Ok(()),
            ParamSpec::Uniform { low, high } => range("uniform", *low, *high),
            ParamSpec::LogUniform { low, high } => {
                if *low <= 0.0 {
                    return Err(ParamSpecError::NonPositiveLogBound {
                        low: format_number(*low),
                    });
                }
                range("loguniform", *low, *high)
            }
            ParamSpec::QUniform { low, high, q } => {
                range("quniform", *low, *high)?;
                if !(q.is_finite() && *q > 0.0) {
                    return Err(ParamSpecError::NonPositiveStep {
                        q: format_number(*q),
                    });
                }
                Ok(())
            }
            ParamSpec::RandInt { low, high } => {
                if low >= high {
                    return Err(ParamSpecError::EmptyRange {
                        function: "randint".to_owned(),
                        low: low.to_string(),
                        high: high.to_string(),
                    });
                }
                Ok(())
            }
        }
    }

    /// Returns how many distinct values the spec has, or `None` for continuous specs; a
    /// space whose specs all have a count can be enumerated.
    pub fn discrete_count(&self) -> Option<u64> {
        match self {
            ParamSpec::Constant { .. } => Some(1),
            ParamSpec::Choice { values } => Some(values.len() as u64),
            // `high > low` is validated; the difference of two i64 always fits in u64.
            ParamSpec::RandInt { low, high } => Some((i128::from(*high) - i128::from(*low)) as u64),
            ParamSpec::Uniform { .. }
            | ParamSpec::LogUniform { .. }
            | ParamSpec::QUniform { .. } => None,
        }
    }

    /// Returns the `index`-th value of a discrete spec, formatted for the run.
    pub(crate) fn discrete_value(&self, index: u64) -> Option<String> {
        match self {
            ParamSpec::Constant { value } => Some(value.to_string()),
            ParamSpec::Choice { values } => values
                .get(usize::try_from(index).ok()?)
                .map(ToString::to_string),
            ParamSpec::RandInt { low, .. } => {
                Some((i128::from(*low) + i128::from(index)).to_string())
            }
            _ => None,
        }
    }
}

impl fmt::Display for ParamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = format_number;
        match self {
            ParamSpec::Constant { value } => f.write_str(&value.to_spec_literal()),
            ParamSpec::Choice { values } => {
                let values: Vec<String> = values.iter().map(ParamValue::to_spec_literal).collect();
                write!(f, "choice({})", values.join(", "))
            }
            ParamSpec::Uniform { low, high } => write!(f, "uniform({}, {})", n(*low), n(*high)),
            ParamSpec::LogUniform { low, high } => {
                write!(f, "loguniform({}, {})", n(*low), n(*high))
            }
            ParamSpec::QUniform { low, high, q } => {
                write!(f, "quniform({}, {}, {})", n(*low), n(*high), n(*q))
            }
            ParamSpec::RandInt { low, high } => write!(f, "randint({low}, {high})"),
        }
    }
}

impl FromStr for ParamSpec {
    type Err = ParamSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        ParamSpec::parse(input)
    }
}

// === impl ParamValue ===

impl ParamValue {
    /// Writes the value so `ParamSpec::parse` reads it back identically: strings that would
    /// read as numbers, or that hold separators or quotes, are quoted.
    fn to_spec_literal(&self) -> String {
        match self {
            ParamValue::Number(number) => format_number(*number),
            ParamValue::Text(text) => {
                let bare = !text.is_empty()
                    && !looks_numeric(text)
                    && !text.contains(char::is_whitespace)
                    && !text.contains([',', '(', ')', '\'', '"', '\\']);
                if bare {
                    text.clone()
                } else {
                    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
                }
            }
        }
    }
}

impl fmt::Display for ParamValue {
    /// Writes the value as the run receives it: numbers as a user types them, text as is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Number(number) => f.write_str(&format_number(*number)),
            ParamValue::Text(text) => f.write_str(text),
        }
    }
}

// === impl SearchSpace ===

impl SearchSpace {
    /// Builds a space from named specs, in the order given.
    ///
    /// # Errors
    ///
    /// Returns an error for a duplicate or malformed name, or an invalid spec.
    pub fn new(params: Vec<(String, ParamSpec)>) -> Result<SearchSpace, SpaceError> {
        let params: Vec<SearchParam> = params
            .into_iter()
            .map(|(name, spec)| SearchParam { name, spec })
            .collect();
        SearchSpace::try_from(params)
    }

    /// Parses CLI assignments, one per `--param`: `hidden=choice(8,16,32)`.
    ///
    /// # Errors
    ///
    /// Returns the first malformed assignment or spec, naming the parameter.
    pub fn from_assignments<S: AsRef<str>>(assignments: &[S]) -> Result<SearchSpace, SpaceError> {
        let mut params = Vec::with_capacity(assignments.len());
        for assignment in assignments {
            let assignment = assignment.as_ref();
            let Some((name, spec)) = assignment.split_once('=') else {
                return Err(SpaceError::MissingEquals {
                    assignment: assignment.to_owned(),
                });
            };
            let name = name.trim().to_owned();
            let spec = ParamSpec::parse(spec).map_err(|problem| SpaceError::InvalidParam {
                name: name.clone(),
                problem,
            })?;
            params.push((name, spec));
        }
        SearchSpace::new(params)
    }

    /// Parses the `Display` form: one `name=spec` per line, blank lines ignored. (A string
    /// value containing a line break does not survive this form; JSON keeps it.)
    ///
    /// # Errors
    ///
    /// As [`SearchSpace::from_assignments`].
    pub fn parse(text: &str) -> Result<SearchSpace, SpaceError> {
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        SearchSpace::from_assignments(&lines)
    }

    pub fn params(&self) -> &[SearchParam] {
        &self.params
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Returns the number of distinct combinations, or `None` when some parameter is
    /// continuous; saturates at `u64::MAX`.
    pub fn combinations(&self) -> Option<u64> {
        let mut total: u64 = 1;
        for param in &self.params {
            total = total.saturating_mul(param.spec.discrete_count()?);
        }
        Some(total)
    }
}

impl TryFrom<Vec<SearchParam>> for SearchSpace {
    type Error = SpaceError;

    fn try_from(params: Vec<SearchParam>) -> Result<Self, Self::Error> {
        let mut seen = HashSet::new();
        for param in &params {
            let name = &param.name;
            if name.is_empty() || name.contains('=') || name.contains(char::is_whitespace) {
                return Err(SpaceError::InvalidName { name: name.clone() });
            }
            if !seen.insert(name.as_str()) {
                return Err(SpaceError::DuplicateParam { name: name.clone() });
            }
            param
                .spec
                .validate()
                .map_err(|problem| SpaceError::InvalidParam {
                    name: name.clone(),
                    problem,
                })?;
        }
        Ok(SearchSpace { params })
    }
}

impl From<SearchSpace> for Vec<SearchParam> {
    fn from(space: SearchSpace) -> Self {
        space.params
    }
}

impl fmt::Display for SearchSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, param) in self.params.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}={}", param.name, param.spec)?;
        }
        Ok(())
    }
}

impl FromStr for SearchSpace {
    type Err = SpaceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SearchSpace::parse(text)
    }
}

// === parsing helpers ===

/// Splits `name(rest` when `text` starts with an identifier and an opening parenthesis.
fn split_call(text: &str) -> Option<(&str, &str)> {
    let first = text.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let rest = text[name_end..].trim_start();
    let rest = rest.strip_prefix('(')?;
    Some((&text[..name_end], rest))
}

/// Splits call arguments at commas outside quotes; `""` gives one empty argument.
fn split_arguments(inner: &str) -> Result<Vec<String>, ParamSpecError> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut chars = inner.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        current.push(c);
        match quote {
            Some(q) if c == '\\' => {
                if let Some(&next) = chars.peek() {
                    if next == q || next == '\\' {
                        current.push(next);
                        chars.next();
                    }
                }
            }
            Some(q) if c == q => {
                if chars.peek() == Some(&q) {
                    current.push(q);
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ',' => {
                current.pop();
                args.push(std::mem::take(&mut current));
            }
            None => {}
        }
    }
    if let Some(quote) = quote {
        return Err(ParamSpecError::UnterminatedString { quote });
    }
    args.push(current);
    Ok(args)
}

/// Parses one constant or choice value: a quoted string, a number, or a bare string.
fn parse_value(raw: &str) -> Result<ParamValue, ParamSpecError> {
    let text = raw.trim();
    let Some(quote) = text.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        if looks_numeric(text) {
            if let Ok(number) = text.parse::<f64>() {
                if number.is_finite() {
                    return Ok(ParamValue::Number(number));
                }
            }
        }
        if let Some(character) = text.chars().find(|c| matches!(c, '(' | ')' | '\'' | '"')) {
            return Err(ParamSpecError::UnexpectedCharacter {
                character,
                text: text.to_owned(),
            });
        }
        return Ok(ParamValue::Text(text.to_owned()));
    };
    let mut value = String::new();
    let mut chars = text[1..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some(&(_, next)) if next == quote || next == '\\' => {
                    value.push(next);
                    chars.next();
                    continue;
                }
                _ => {}
            }
        } else if c == quote {
            if chars.peek().map(|&(_, next)| next) == Some(quote) {
                value.push(quote);
                chars.next();
                continue;
            }
            let rest = &text[1 + offset + c.len_utf8()..];
            if !rest.is_empty() {
                return Err(ParamSpecError::TextAfterQuote {
                    found: rest.to_owned(),
                });
            }
            return Ok(ParamValue::Text(value));
        }
        value.push(c);
    }
    Err(ParamSpecError::UnterminatedString { quote })
}

/// True for text that starts like a number; keeps words such as `inf` or `nan` strings.
fn looks_numeric(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
        && text.parse::<f64>().is_ok()
}

/// Parses exactly `N` finite numeric arguments.
fn numbers<const N: usize>(function: &str, args: &[String]) -> Result<[f64; N], ParamSpecError> {
    if args.len() != N {
        let found = if args.len() == 1 && args[0].trim().is_empty() {
            0
        } else {
            args.len()
        };
        return Err(ParamSpecError::ArgumentCount {
            function: function.to_owned(),
            expected: N,
            found,
        });
    }
    let mut numbers = [0.0; N];
    for (index, arg) in args.iter().enumerate() {
        let not_a_number = || ParamSpecError::NotANumber {
            function: function.to_owned(),
            position: index + 1,
            found: arg.trim().to_owned(),
        };
        if arg.trim().is_empty() {
            return Err(ParamSpecError::EmptyArgument {
                function: function.to_owned(),
                position: index + 1,
            });
        }
        match parse_value(arg) {
            Ok(ParamValue::Number(number)) => numbers[index] = number,
            _ => return Err(not_a_number()),
        }
    }
    Ok(numbers)
}

fn integer(value: f64) -> Result<i64, ParamSpecError> {
    // 2^63 as f64; anything at or above it does not fit in i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if value.fract() != 0.0 || !(-LIMIT..LIMIT).contains(&value) {
        return Err(ParamSpecError::NonIntegerBound {
            found: format_number(value),
        });
    }
    Ok(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(input: &str) -> ParamSpec {
        ParamSpec::parse(input).unwrap_or_else(|error| panic!("{input}: {error}"))
    }

    fn text(value: &str) -> ParamValue {
        ParamValue::Text(value.to_owned())
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            spec("choice(8,16, 32)"),
            ParamSpec::Choice {
                values: vec![
                    ParamValue::Number(8.0),
                    ParamValue::Number(16.0),
                    ParamValue::Number(32.0)
                ]
            }
        );
        assert_eq!(
            spec("choice(relu, 'tanh', \"a,b\", 'it''s', '16')"),
            ParamSpec::Choice {
                values: vec![
                    text("relu"),
                    text("tanh"),
                    text("a,b"),
                    text("it's"),
                    text("16")
                ]
            }
        );
        assert_eq!(
            spec("uniform(0, 1)"),
            ParamSpec::Uniform {
                low: 0.0,
                high: 1.0
            }
        );
        assert_eq!(
            spec(" LogUniform( 1e-3 , 1e-1 ) "),
            ParamSpec::LogUniform {
                low: 0.001,
                high: 0.1
            }
        );
        assert_eq!(
            spec("quniform(0, 1, 0.1)"),
            ParamSpec::QUniform {
                low: 0.0,
                high: 1.0,
                q: 0.1
            }
        );
        assert_eq!(
            spec("randint(-2, 5)"),
            ParamSpec::RandInt { low: -2, high: 5 }
        );
        assert_eq!(
            spec("40"),
            ParamSpec::Constant {
                value: ParamValue::Number(40.0)
            }
        );
        assert_eq!(
            spec("relu"),
            ParamSpec::Constant {
                value: text("relu")
            }
        );
        assert_eq!(spec("'a b'"), ParamSpec::Constant { value: text("a b") });
        assert_eq!(
            spec("/data/x.csv"),
            ParamSpec::Constant {
                value: text("/data/x.csv")
            }
        );
        assert_eq!(spec("nan"), ParamSpec::Constant { value: text("nan") });
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases = [
            ("", "empty spec"),
            ("normal(0, 1)", "unknown function 'normal'; known functions are choice, uniform, loguniform, quniform, randint"),
            ("uniform(1, 1)", "uniform: the lower bound 1 must be below the upper bound 1"),
            ("uniform(2, 1)", "uniform: the lower bound 2 must be below the upper bound 1"),
            ("loguniform(0, 1)", "loguniform: bounds must be positive, found 0"),
            ("loguniform(-1, 1)", "loguniform: bounds must be positive, found -1"),
            ("quniform(0, 1, 0)", "quniform: q must be positive, found 0"),
            ("choice()", "choice needs at least one value"),
            ("choice(1,)", "choice: argument 2 is empty"),
            ("uniform(0)", "uniform takes 2 arguments, found 1"),
            ("uniform()", "uniform takes 2 arguments, found 0"),
            ("uniform(a, 1)", "uniform: argument 1 must be a finite number, found 'a'"),
            ("uniform(0, 1e999)", "uniform: argument 2 must be a finite number, found '1e999'"),
            ("randint(0.5, 3)", "randint: bounds must be integers, found 0.5"),
            ("randint(3, 3)", "randint: the lower bound 3 must be below the upper bound 3"),
            ("choice(1, 2", "choice is missing its closing ')'"),
            ("choice('a, 2)", "unterminated string starting with '"),
            ("choice('a'b)", "unexpected 'b' after the closing quote"),
        ];
        for (input, message) in cases {
            match ParamSpec::parse(input) {
                Ok(parsed) => panic!("{input} parsed as {parsed:?}"),
                Err(error) => assert_eq!(error.to_string(), message, "{input}"),
            }
        }
    }

    #[test]
    fn space_errors_name_the_parameter() {
        let error = SearchSpace::from_assignments(&["lr=loguniform(0, 1)"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "parameter 'lr': loguniform: bounds must be positive, found 0"
        );
        assert_eq!(
            SearchSpace::from_assignments(&["a=1", "a=2"]).unwrap_err(),
            SpaceError::DuplicateParam { name: "a".into() }
        );
        assert_eq!(
            SearchSpace::from_assignments(&["epochs"]).unwrap_err(),
            SpaceError::MissingEquals {
                assignment: "epochs".into()
            }
        );
        assert!(matches!(
            SearchSpace::from_assignments(&["=1"]).unwrap_err(),
            SpaceError::InvalidName { .. }
        ));
    }

    #[test]
    fn display_round_trips_through_parse() {
        for input in [
            "choice(8, 16, 32)",
            "choice(relu, 'a b', '16', 'it''s', 'x,y', '', 'back\\\\slash', 'f(x)')",
            "uniform(-1.5, 2)",
            "loguniform(0.00001, 0.1)",
            "quniform(0, 1, 0.05)",
            "randint(0, 10)",
            "40",
            "relu",
            "'007'",
        ] {
            let parsed = spec(input);
            let shown = parsed.to_string();
            assert_eq!(spec(&shown), parsed, "{input} → {shown}");
        }
        assert_eq!(spec("choice(8,16,32)").to_string(), "choice(8, 16, 32)");
        assert_eq!(
            spec("loguniform(1e-3,1e-1)").to_string(),
            "loguniform(0.001, 0.1)"
        );
        assert_eq!(
            spec("choice('16', 'a b')").to_string(),
            "choice('16', 'a b')"
        );
    }

    #[test]
    fn space_display_and_json_round_trip() {
        let space = SearchSpace::from_assignments(&[
            "hidden=choice(8,16,32)",
            "lr=loguniform(1e-3,1e-1)",
            "epochs=40",
            "act=choice(relu, 'leaky relu')",
        ])
        .expect("parses");
        let text = space.to_string();
        assert_eq!(
            text,
            "hidden=choice(8, 16, 32)\nlr=loguniform(0.001, 0.1)\nepochs=40\nact=choice(relu, 'leaky relu')"
        );
        assert_eq!(SearchSpace::parse(&text), Ok(space.clone()));

        let json = serde_json::to_string(&space).expect("serializes");
        assert!(
            json.starts_with(
                r#"[{"name":"hidden","spec":{"kind":"choice","values":[8.0,16.0,32.0]}}"#
            ),
            "{json}"
        );
        let back: SearchSpace = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, space);

        // Stored definitions are validated when read back.
        let invalid = r#"[{"name":"lr","spec":{"kind":"log_uniform","low":0.0,"high":1.0}}]"#;
        let error = serde_json::from_str::<SearchSpace>(invalid).unwrap_err();
        assert!(
            error.to_string().contains("bounds must be positive"),
            "{error}"
        );
    }

    #[test]
    fn counts_combinations() {
        let space = SearchSpace::from_assignments(&["a=choice(1,2,3)", "b=randint(0, 4)", "c=x"])
            .expect("parses");
        assert_eq!(space.combinations(), Some(12));
        let space =
            SearchSpace::from_assignments(&["a=choice(1,2)", "b=uniform(0,1)"]).expect("parses");
        assert_eq!(space.combinations(), None);
        assert_eq!(SearchSpace::default().combinations(), Some(1));
    }
}
