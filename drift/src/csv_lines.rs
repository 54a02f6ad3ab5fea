//! Line numbers and cells of CSV records, shared by everything in Shoal that reads a CSV a
//! user gave it (dataset profiles, built-in trainers), so errors name the same lines.

use csv::ByteRecord;

/// Line numbers of records, counted from the input itself.
///
/// The csv crate's own line numbers skip blank lines and lag by one after CRLF line ends, but
/// its byte offsets are right: a record's offset is where the previous record ended, so the
/// record itself starts after the CR and LF bytes that follow (line ends and blank lines; a
/// record cannot start with either). The line is one plus the LF bytes before that start.
/// Records come in order, so each call only counts the bytes since the previous one.
pub struct CsvLines<'a> {
    input: &'a [u8],
    /// How far LF bytes have been counted.
    counted_to: usize,
    /// LF bytes in `input[..counted_to]`.
    newlines: u64,
}

// === impl CsvLines ===

impl<'a> CsvLines<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            counted_to: 0,
            newlines: 0,
        }
    }

    /// Returns the 1-based line on which the record at `position` starts (line 1 without a
    /// position, which the csv crate always gives in practice).
    pub fn line_of(&mut self, position: Option<&csv::Position>) -> u64 {
        let Some(position) = position else {
            return 1;
        };
        let offset = usize::try_from(position.byte()).unwrap_or(usize::MAX);
        let mut start = offset.min(self.input.len());
        while matches!(self.input.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        if start < self.counted_to {
            self.counted_to = 0;
            self.newlines = 0;
        }
        let skipped = &self.input[self.counted_to..start];
        self.newlines += skipped.iter().filter(|byte| **byte == b'\n').count() as u64;
        self.counted_to = start;
        self.newlines + 1
    }
}

/// Decodes every cell of a record as UTF-8; `Err` holds the 1-based column of the first cell
/// that is not.
pub fn decode_record(record: &ByteRecord) -> Result<Vec<&str>, usize> {
    record
        .iter()
        .enumerate()
        .map(|(index, bytes)| std::str::from_utf8(bytes).map_err(|_| index + 1))
        .collect()
}
