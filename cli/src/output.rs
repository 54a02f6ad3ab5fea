//! Listings as aligned tables for people or JSON for scripts (`-o table|json`).

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A column: header and the JSON key (dotted for nested) it shows.
pub type Column = (&'static str, &'static str);

/// Prints rows (JSON objects) as a table of the given columns, or as a JSON array.
pub fn print_list(format: Format, columns: &[Column], rows: &[Value]) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows).unwrap_or_default()),
        Format::Table => print!("{}", table(columns, rows)),
    }
}

/// Prints one object: as `key: value` lines, or as JSON.
pub fn print_one(format: Format, value: &Value) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Format::Table => {
            if let Value::Object(map) = value {
                let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
                for (key, v) in map {
                    println!("{key:width$}  {}", cell(v));
                }
            }
        }
    }
}

pub fn table(columns: &[Column], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|(_, key)| cell(lookup(row, key)))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.len()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |values: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|(h, _)| *h).collect(), &mut out);
    for row in &cells {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn lookup<'a>(row: &'a Value, key: &str) -> &'a Value {
    let mut current = row;
    for part in key.split('.') {
        current = current.get(part).unwrap_or(&Value::Null);
    }
    current
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// Unix milliseconds as an age people read ("12s ago"); 0 is "never".
pub fn age(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let secs = ((shoal_compute::now_ms() - ms) / 1000).max(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_marks_missing_values() {
        let rows = vec![
            serde_json::json!({"id": "cam-01", "state": {"phase": "active"}}),
            serde_json::json!({"id": "cam-0002", "state": null}),
        ];
        let text = table(&[("ID", "id"), ("PHASE", "state.phase")], &rows);
        assert_eq!(text, "ID        PHASE\ncam-01    active\ncam-0002  -\n");
    }
}
