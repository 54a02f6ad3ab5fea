//! Recursive-descent parser for filters, with the field syntax shared by order-by.
//!
//! Type checking happens here, while the column of each value is still known.

use super::lexer::{tokenize, Token, TokenKind};
use super::like::LikePattern;
use super::{CmpOp, Comparison, Expr, FilterError, Predicate};
use crate::field::{Attribute, Field};

/// Words that can never start a field, so `and = 1` reports a missing identifier.
const RESERVED: [&str; 8] = ["and", "or", "not", "in", "is", "null", "like", "ilike"];

/// A token stream with a cursor; the last token is always `End`.
pub(crate) struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

/// A literal as written, before it is checked against the field it is compared with.
enum Literal {
    Number { value: f64, text: String },
    Text(String),
}

/// A literal after type checking.
enum Typed {
    Number(f64),
    Text(String),
}

impl Parser {
    /// Tokenizes `input`.
    ///
    /// # Errors
    ///
    /// Returns lexical errors: unterminated strings, malformed numbers, stray characters.
    pub(crate) fn new(input: &str) -> Result<Self, FilterError> {
        Ok(Parser {
            tokens: tokenize(input)?,
            position: 0,
        })
    }

    pub(crate) fn peek(&self) -> &Token {
        &self.tokens[self.position]
    }

    /// Returns the current token and moves past it; stays on `End` once there.
    pub(crate) fn advance(&mut self) -> Token {
        let token = self.tokens[self.position].clone();
        if self.position + 1 < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    pub(crate) fn at_end(&self) -> bool {
        self.peek().kind == TokenKind::End
    }

    /// Parses a whole filter; `None` when the input is blank.
    pub(crate) fn parse_filter(&mut self) -> Result<Option<Expr>, FilterError> {
        if self.at_end() {
            return Ok(None);
        }
        let expr = self.parse_or()?;
        let token = self.peek();
        match token.kind {
            TokenKind::End => Ok(Some(expr)),
            TokenKind::RParen => Err(FilterError::new(
                token.column,
                "unbalanced parenthesis: this ')' has no matching '('".to_owned(),
            )),
            _ => Err(FilterError::new(
                token.column,
                format!(
                    "expected 'and', 'or' or the end of the filter, found {}",
                    token.describe()
                ),
            )),
        }
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.parse_and()?];
        while self.peek().is_keyword("or") {
            self.advance();
            terms.push(self.parse_and()?);
        }
        Ok(flatten(terms, Expr::Or))
    }

    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.parse_primary()?];
        while self.peek().is_keyword("and") {
            self.advance();
            terms.push(self.parse_primary()?);
        }
        Ok(flatten(terms, Expr::And))
    }

    fn parse_primary(&mut self) -> Result<Expr, FilterError> {
        if self.peek().kind != TokenKind::LParen {
            return Ok(Expr::Compare(self.parse_comparison()?));
        }
        let open = self.advance();
        let expr = self.parse_or()?;
        let close = self.advance();
        if close.kind != TokenKind::RParen {
            return Err(FilterError::new(
                close.column,
                format!(
                    "unbalanced parenthesis: expected ')' to close the '(' at column {}, found {}",
                    open.column,
                    close.describe()
                ),
            ));
        }
        Ok(expr)
    }

    /// Parses a field name, returning it with its source text for later messages.
    ///
    /// # Errors
    ///
    /// Returns an error for a missing identifier, an unknown prefix or attribute, or a
    /// prefix without a key (`metrics.`).
    pub(crate) fn parse_field(&mut self) -> Result<(Field, String), FilterError> {
        let token = self.advance();
        let word = match &token.kind {
            TokenKind::Word(word) if !is_reserved(word) => word.clone(),
            TokenKind::Str { quote, .. } if *quote != '\'' => {
                return Err(FilterError::new(
                    token.column,
                    format!(
                        "expected an identifier, found {}; quote only the key after its prefix, as in metrics.`my key`",
                        token.describe()
                    ),
                ))
            }
            _ => {
                return Err(FilterError::new(
                    token.column,
                    format!(
                        "expected an identifier such as metrics.accuracy, params.lr or status, found {}",
                        token.describe()
                    ),
                ))
            }
        };
        let Some((prefix, key)) = word.split_once('.') else {
            return match Attribute::from_name(&word) {
                Some(attribute) => Ok((Field::Attribute(attribute), word)),
                None => Err(FilterError::new(
                    token.column,
                    format!(
                        "unknown attribute '{word}'; known attributes are {}, and metrics, params and tags need a prefix, as in metrics.{word}",
                        Attribute::known_names()
                    ),
                )),
            };
        };
        let mut key = key.to_owned();
        let mut name = word.clone();
        if key.is_empty() {
            let next = self.peek();
            match &next.kind {
                TokenKind::Str {
                    value,
                    quote: '`' | '"',
                } if next.column == token.end => {
                    key = value.clone();
                    name.push_str(&next.text);
                    self.advance();
                }
                _ => {
                    return Err(FilterError::new(
                        token.end,
                        format!("missing key after '{word}'"),
                    ))
                }
            }
        }
        let field = match prefix.to_ascii_lowercase().as_str() {
            "metrics" | "metric" => Field::Metric(key),
            "params" | "param" => Field::Param(key),
            "tags" | "tag" => Field::Tag(key),
            "attributes" | "attribute" | "attr" => match Attribute::from_name(&key) {
                Some(attribute) => Field::Attribute(attribute),
                None => {
                    return Err(FilterError::new(
                        token.column + prefix.chars().count() + 1,
                        format!(
                            "unknown attribute '{key}'; known attributes are {}",
                            Attribute::known_names()
                        ),
                    ))
                }
            },
            _ => {
                return Err(FilterError::new(
                    token.column,
                    format!(
                        "unknown identifier prefix '{prefix}'; expected metrics., params., tags. or attributes."
                    ),
                ))
            }
        };
        Ok((field, name))
    }

    fn parse_comparison(&mut self) -> Result<Comparison, FilterError> {
        let (field, name) = self.parse_field()?;
        let operator = self.advance();
        let predicate = match &operator.kind {
            TokenKind::Op(op) => {
                if !field.is_numeric() && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    return Err(FilterError::new(
                        operator.column,
                        format!(
                            "'{op}' compares numbers, but {} is a string; use =, !=, LIKE, ILIKE or IN",
                            field.describe()
                        ),
                    ));
                }
                let (literal, at) = self.parse_value(&format!("after '{op}'"))?;
                match check_type(&field, literal, &at)? {
                    Typed::Number(value) => Predicate::Number { op: *op, value },
                    Typed::Text(value) => Predicate::Text { op: *op, value },
                }
            }
            TokenKind::Word(word) if is_like(word) => self.parse_like(&field, &operator, false)?,
            TokenKind::Word(word) if word.eq_ignore_ascii_case("in") => {
                self.parse_in(&field, false)?
            }
            TokenKind::Word(word) if word.eq_ignore_ascii_case("not") => {
                let next = self.advance();
                match &next.kind {
                    TokenKind::Word(word) if is_like(word) => {
                        self.parse_like(&field, &next, true)?
                    }
                    TokenKind::Word(word) if word.eq_ignore_ascii_case("in") => {
                        self.parse_in(&field, true)?
                    }
                    _ => {
                        return Err(FilterError::new(
                            next.column,
                            format!(
                                "expected IN, LIKE or ILIKE after NOT, found {}",
                                next.describe()
                            ),
                        ))
                    }
                }
            }
            TokenKind::Word(word) if word.eq_ignore_ascii_case("is") => {
                let negated = self.peek().is_keyword("not");
                if negated {
                    self.advance();
                }
                let null = self.advance();
                if !null.is_keyword("null") {
                    return Err(FilterError::new(
                        null.column,
                        format!(
                            "expected NULL after IS{}, found {}",
                            if negated { " NOT" } else { "" },
                            null.describe()
                        ),
                    ));
                }
                Predicate::IsNull { negated }
            }
            _ => {
                return Err(FilterError::new(
                    operator.column,
                    format!(
                        "expected a comparison operator after '{name}', found {}",
                        operator.describe()
                    ),
                ))
            }
        };
        Ok(Comparison { field, predicate })
    }

    fn parse_like(
        &mut self,
        field: &Field,
        operator: &Token,
        negated: bool,
    ) -> Result<Predicate, FilterError> {
        let keyword = operator.text.to_ascii_uppercase();
        if field.is_numeric() {
            return Err(FilterError::new(
                operator.column,
                format!(
                    "{keyword} only applies to strings, but {} is a number",
                    field.describe()
                ),
            ));
        }
        let (literal, at) = self.parse_value(&format!("after {keyword}"))?;
        let pattern = match check_type(field, literal, &at)? {
            Typed::Text(pattern) => pattern,
            // check_type only returns numbers for numeric fields, refused above.
            Typed::Number(number) => number.to_string(),
        };
        Ok(Predicate::Like {
            pattern: LikePattern::compile(&pattern, keyword == "ILIKE"),
            negated,
        })
    }

    fn parse_in(&mut self, field: &Field, negated: bool) -> Result<Predicate, FilterError> {
        let open = self.advance();
        if open.kind != TokenKind::LParen {
            return Err(FilterError::new(
                open.column,
                format!("expected '(' after IN, found {}", open.describe()),
            ));
        }
        let mut numbers = Vec::new();
        let mut texts = Vec::new();
        loop {
            let (literal, at) = self.parse_value("in the IN list")?;
            match check_type(field, literal, &at)? {
                Typed::Number(number) => numbers.push(number),
                Typed::Text(text) => texts.push(text),
            }
            let separator = self.advance();
            match separator.kind {
                TokenKind::Comma => continue,
                TokenKind::RParen => break,
                _ => {
                    return Err(FilterError::new(
                        separator.column,
                        format!(
                            "expected ',' or ')' in the IN list, found {}",
                            separator.describe()
                        ),
                    ))
                }
            }
        }
        Ok(if field.is_numeric() {
            Predicate::InNumbers {
                values: numbers,
                negated,
            }
        } else {
            Predicate::InTexts {
                values: texts,
                negated,
            }
        })
    }

    /// Reads a literal; `context` says where, for "expected a value {context}".
    fn parse_value(&mut self, context: &str) -> Result<(Literal, Token), FilterError> {
        let token = self.advance();
        let literal = match &token.kind {
            TokenKind::Number { value, text } => Literal::Number {
                value: *value,
                text: text.clone(),
            },
            TokenKind::Str {
                value,
                quote: '\'' | '"',
            } => Literal::Text(value.clone()),
            TokenKind::Str { .. } => {
                return Err(FilterError::new(
                    token.column,
                    "backticks quote keys, not values; write strings in 'single quotes'".to_owned(),
                ))
            }
            TokenKind::Word(word) if !is_reserved(word) => {
                return Err(FilterError::new(
                    token.column,
                    format!(
                        "expected a value {context}, found {}; quote strings, as in '{word}'",
                        token.describe()
                    ),
                ))
            }
            _ => {
                return Err(FilterError::new(
                    token.column,
                    format!("expected a value {context}, found {}", token.describe()),
                ))
            }
        };
        Ok((literal, token))
    }
}

/// Checks a literal against its field: metrics and timestamps take numbers, everything
/// else takes quoted strings, except that params also take a bare number and compare it
/// as written (`params.hidden = 16` means `'16'`).
fn check_type(field: &Field, literal: Literal, at: &Token) -> Result<Typed, FilterError> {
    match (field.is_numeric(), literal) {
        (true, Literal::Number { value, .. }) => Ok(Typed::Number(value)),
        (true, Literal::Text(text)) => Err(FilterError::new(
            at.column,
            format!(
                "{} compares with numbers, found the string '{text}'",
                field.describe()
            ),
        )),
        (false, Literal::Text(text)) => Ok(Typed::Text(text)),
        (false, Literal::Number { text, .. }) if matches!(field, Field::Param(_)) => {
            Ok(Typed::Text(text))
        }
        (false, Literal::Number { text, .. }) => Err(FilterError::new(
            at.column,
            format!(
                "{} compares with quoted strings, found the number {text}; write '{text}'",
                field.describe()
            ),
        )),
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(word))
}

fn is_like(word: &str) -> bool {
    word.eq_ignore_ascii_case("like") || word.eq_ignore_ascii_case("ilike")
}

/// Avoids one-child `And`/`Or` nodes.
fn flatten(mut terms: Vec<Expr>, combine: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        terms.remove(0)
    } else {
        combine(terms)
    }
}
