//! Splits a filter or order-by string into tokens, each with the 1-based character column
//! where it starts, so every later error can point at the exact spot.

use super::{CmpOp, FilterError};

/// What a token is; keywords (`and`, `in`, `desc`) stay [`TokenKind::Word`]s and the parser
/// compares them case-insensitively.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    /// A bare word: `and`, `status`, `metrics.accuracy`, `tags.mlflow.runName`, `metrics.`.
    Word(String),
    /// A numeric literal; `text` keeps the spelling so `params.x = 16` compares as `"16"`.
    Number {
        value: f64,
        text: String,
    },
    /// A quoted string with its quote character: `'` and `"` quote values, `` ` `` and `"`
    /// quote keys after a prefix.
    Str {
        value: String,
        quote: char,
    },
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    End,
}

/// A token and where it sits in the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    /// 1-based character column of the first character.
    pub(crate) column: usize,
    /// 1-based character column just past the last character; lets the parser see whether
    /// two tokens touch (`metrics.` directly followed by `` `f1 score` ``).
    pub(crate) end: usize,
    /// The source text, quoted in error messages.
    pub(crate) text: String,
}

impl Token {
    /// Describes the token for "found ..." in error messages.
    pub(crate) fn describe(&self) -> String {
        match self.kind {
            TokenKind::End => "end of input".to_owned(),
            _ => format!("'{}'", self.text),
        }
    }

    /// Returns true when the token is the word `keyword`, ignoring ASCII case.
    pub(crate) fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(word) if word.eq_ignore_ascii_case(keyword))
    }
}

/// Tokenizes `input`; the last token is always [`TokenKind::End`], at the column just past
/// the input.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let kind = match c {
            '(' => {
                i += 1;
                TokenKind::LParen
            }
            ')' => {
                i += 1;
                TokenKind::RParen
            }
            ',' => {
                i += 1;
                TokenKind::Comma
            }
            '=' | '!' | '<' | '>' => {
                let (op, len) = lex_operator(&chars, i)?;
                i += len;
                TokenKind::Op(op)
            }
            '\'' | '"' | '`' => {
                let (value, len) = lex_string(&chars, i)?;
                i += len;
                TokenKind::Str { value, quote: c }
            }
            _ if starts_number(&chars, i) => {
                let (value, len) = lex_number(&chars, i)?;
                i += len;
                TokenKind::Number {
                    value,
                    text: chars[start..i].iter().collect(),
                }
            }
            _ if c.is_alphabetic() || c == '_' => {
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                TokenKind::Word(chars[start..i].iter().collect())
            }
            _ => {
                // `metrics.val-loss`: the key goes on past what a bare word allows.
                let inside_key = start > 0 && is_word_char(chars[start - 1]);
                let hint = if inside_key {
                    "; quote keys with special characters, as in metrics.`val-loss`"
                } else {
                    ""
                };
                return Err(FilterError::new(
                    start + 1,
                    format!("unexpected character '{c}'{hint}"),
                ));
            }
        };
        tokens.push(Token {
            kind,
            column: start + 1,
            end: i + 1,
            text: chars[start..i].iter().collect(),
        });
    }
    tokens.push(Token {
        kind: TokenKind::End,
        column: chars.len() + 1,
        end: chars.len() + 1,
        text: String::new(),
    });
    Ok(tokens)
}

/// Characters allowed in a bare word after the first: keys with other characters (spaces,
/// dashes) must be quoted, as in MLflow.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn lex_operator(chars: &[char], i: usize) -> Result<(CmpOp, usize), FilterError> {
    let next = chars.get(i + 1).copied();
    let lexed = match (chars[i], next) {
        ('=', Some('=')) => (CmpOp::Eq, 2),
        ('=', _) => (CmpOp::Eq, 1),
        ('!', Some('=')) => (CmpOp::Ne, 2),
        ('<', Some('>')) => (CmpOp::Ne, 2),
        ('<', Some('=')) => (CmpOp::Le, 2),
        ('<', _) => (CmpOp::Lt, 1),
        ('>', Some('=')) => (CmpOp::Ge, 2),
        ('>', _) => (CmpOp::Gt, 1),
        _ => {
            return Err(FilterError::new(
                i + 1,
                "unexpected '!'; did you mean '!='?".to_owned(),
            ))
        }
    };
    Ok(lexed)
}

/// Reads a string quoted by `chars[start]`. Inside, the quote is escaped by doubling it or
/// with a backslash, and `\\` is a backslash; any other backslash is kept as is, so a LIKE
/// pattern can still escape `%` and `_` (`'100\%'`).
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == quote {
            if chars.get(i + 1) == Some(&quote) {
                value.push(quote);
                i += 2;
                continue;
            }
            return Ok((value, i + 1 - start));
        }
        if c == '\\' {
            match chars.get(i + 1) {
                Some(&next) if next == quote || next == '\\' => {
                    value.push(next);
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        value.push(c);
        i += 1;
    }
    Err(FilterError::new(
        start + 1,
        format!("unterminated string: the {quote} here is never closed"),
    ))
}

fn starts_number(chars: &[char], i: usize) -> bool {
    let digit_at = |j: usize| chars.get(j).is_some_and(char::is_ascii_digit);
    match chars[i] {
        c if c.is_ascii_digit() => true,
        '.' => digit_at(i + 1),
        '-' | '+' => digit_at(i + 1) || (chars.get(i + 1) == Some(&'.') && digit_at(i + 2)),
        _ => false,
    }
}

/// Reads `[+-]digits[.digits][e[+-]digits]`; a letter glued to the end (`0.9and`, `12ab`)
/// is an error rather than two tokens, because it is almost always a typo.
fn lex_number(chars: &[char], start: usize) -> Result<(f64, usize), FilterError> {
    let mut i = start;
    if matches!(chars[i], '-' | '+') {
        i += 1;
    }
    while i < chars.len() && chars[i].is_ascii_digit() {
        i += 1;
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        if chars.get(j).is_some_and(char::is_ascii_digit) {
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    let mut end = i;
    while end < chars.len() && is_word_char(chars[end]) {
        end += 1;
    }
    let text: String = chars[start..end].iter().collect();
    if end > i {
        return Err(FilterError::new(
            start + 1,
            format!("invalid number '{text}'"),
        ));
    }
    let value = text
        .parse::<f64>()
        .map_err(|_| FilterError::new(start + 1, format!("invalid number '{text}'")))?;
    Ok((value, i - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind> {
        tokenize(input)
            .expect("valid input")
            .into_iter()
            .map(|token| token.kind)
            .collect()
    }

    #[test]
    fn splits_words_operators_and_values() {
        assert_eq!(
            kinds("metrics.a>=-1.5e3 AND x<>'it''s'"),
            vec![
                TokenKind::Word("metrics.a".into()),
                TokenKind::Op(CmpOp::Ge),
                TokenKind::Number {
                    value: -1500.0,
                    text: "-1.5e3".into()
                },
                TokenKind::Word("AND".into()),
                TokenKind::Word("x".into()),
                TokenKind::Op(CmpOp::Ne),
                TokenKind::Str {
                    value: "it's".into(),
                    quote: '\''
                },
                TokenKind::End,
            ]
        );
    }

    #[test]
    fn tracks_character_columns() {
        let tokens = tokenize("é = 'ü' ").expect("valid input");
        let columns: Vec<usize> = tokens.iter().map(|token| token.column).collect();
        assert_eq!(columns, vec![1, 3, 5, 9]);
    }

    #[test]
    fn unescapes_strings() {
        assert_eq!(
            kinds(r#""a\"b" 'c\'d' 'e\\f' 'g\%'"#)[..4],
            [
                TokenKind::Str {
                    value: "a\"b".into(),
                    quote: '"'
                },
                TokenKind::Str {
                    value: "c'd".into(),
                    quote: '\''
                },
                TokenKind::Str {
                    value: "e\\f".into(),
                    quote: '\''
                },
                TokenKind::Str {
                    value: "g\\%".into(),
                    quote: '\''
                },
            ]
        );
    }

    #[test]
    fn rejects_bad_numbers_and_characters() {
        assert_eq!(tokenize("x = 12ab").unwrap_err().column, 5);
        assert_eq!(tokenize("x = 1 ; y").unwrap_err().column, 7);
        assert_eq!(tokenize("x ! 1").unwrap_err().column, 3);
        let error = tokenize("metrics.val-loss < 1").unwrap_err();
        assert_eq!(error.column, 12);
        assert!(
            error.message.contains("metrics.`val-loss`"),
            "{}",
            error.message
        );
    }
}
