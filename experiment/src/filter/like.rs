//! SQL `LIKE` patterns: `%` matches any run of characters, `_` exactly one, and a backslash
//! makes the next character literal (`'100\%'`).

/// A compiled LIKE or ILIKE pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LikePattern {
    parts: Vec<Part>,
    /// ILIKE: compare characters after lowercasing both sides.
    case_insensitive: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    AnyRun,
    AnyOne,
    Literal(char),
}

impl LikePattern {
    pub(crate) fn compile(pattern: &str, case_insensitive: bool) -> Self {
        let mut parts = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let part = match c {
                '%' => Part::AnyRun,
                '_' => Part::AnyOne,
                // A trailing lone backslash matches itself.
                '\\' => Part::Literal(chars.next().unwrap_or('\\')),
                _ => Part::Literal(c),
            };
            parts.push(part);
        }
        LikePattern {
            parts,
            case_insensitive,
        }
    }

    /// Returns true when the whole of `text` matches; runs in O(text × pattern) at worst,
    /// with no recursion.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let parts = &self.parts;
        let (mut t, mut p) = (0, 0);
        // Where the last `%` was and where in the text it is currently assumed to end.
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match parts.get(p) {
                Some(Part::AnyOne) => {
                    t += 1;
                    p += 1;
                }
                Some(Part::Literal(c)) if self.same(*c, text[t]) => {
                    t += 1;
                    p += 1;
                }
                Some(Part::AnyRun) => {
                    backtrack = Some((p, t));
                    p += 1;
                }
                _ => match backtrack {
                    Some((star, matched_until)) => {
                        backtrack = Some((star, matched_until + 1));
                        p = star + 1;
                        t = matched_until + 1;
                    }
                    None => return false,
                },
            }
        }
        parts[p..].iter().all(|part| *part == Part::AnyRun)
    }

    fn same(&self, a: char, b: char) -> bool {
        if self.case_insensitive {
            a == b || a.to_lowercase().eq(b.to_lowercase())
        } else {
            a == b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str, text: &str) -> bool {
        LikePattern::compile(pattern, false).matches(text)
    }

    #[test]
    fn wildcards() {
        assert!(like("%", ""));
        assert!(like("tree%", "tree-v2"));
        assert!(like("%tree", "big tree"));
        assert!(like("%e%e%", "tree"));
        assert!(!like("%e%e%e%", "tree"));
        assert!(like("a_c", "abc"));
        assert!(!like("a_c", "ac"));
        assert!(!like("abc", "abcd"));
        assert!(like("a%b%c", "aXXbYYbc"));
        assert!(!like("Tree", "tree"));
        assert!(like("", ""));
        assert!(!like("", "a"));
    }

    #[test]
    fn escapes_and_case() {
        assert!(like("100\\%", "100%"));
        assert!(!like("100\\%", "1000"));
        assert!(like("a\\_b", "a_b"));
        assert!(!like("a\\_b", "axb"));
        assert!(LikePattern::compile("TREE%", true).matches("tree-v2"));
        assert!(!LikePattern::compile("straße", true).matches("STRASSE"));
        assert!(LikePattern::compile("ÉTÉ", true).matches("été"));
    }
}
