//! Clients as CSV: the import parser (header `email,full_name,comment`, an optional `tags`
//! column of names separated by `;`, any further column an attribute named by its header;
//! per-line errors, never failing a whole file for one bad line) and the export writer,
//! which defuses cells a spreadsheet would run as formulas.

use std::collections::HashMap;

use super::model::ClientFields;
use crate::error::{AppError, AppResult};
use crate::validate;

/// Most rows one import takes.
pub const MAX_ROWS: usize = 10_000;

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line of the file, the header being line 1.
    pub line: usize,
    pub message: String,
}

/// The good rows of a file, and the others by line.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<ClientFields>,
    /// The tags cell of each good row that has one: (e-mail, tag names).
    pub tags: Vec<(String, Vec<String>)>,
    pub errors: Vec<LineError>,
}

/// Separates the tag names of a `tags` cell.
pub const TAG_SEPARATOR: char = ';';

/// The names of a `tags` cell (`vip; newsletter`), each checked, the same name once.
fn tag_names(cell: &str) -> AppResult<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for name in cell.split(TAG_SEPARATOR).map(str::trim).filter(|n| !n.is_empty()) {
        let name = validate::required_line("tags", name, 100)?;
        if !names.iter().any(|known| known.to_lowercase() == name.to_lowercase()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Where an import's columns are, read from its header line.
#[derive(Debug, Clone)]
pub struct Columns {
    email: usize,
    full_name: usize,
    comment: Option<usize>,
    tags: Option<usize>,
    /// Every other column is an attribute, its header the key.
    attributes: Vec<(usize, String)>,
}

/// One line's cells as read, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cells {
    pub email: String,
    pub full_name: String,
    pub comment: String,
    pub tags: String,
    /// The attribute columns' non-empty cells.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Columns {
    /// The columns of a header line; BAD_USER_INPUT on `csv` when it is unusable.
    pub fn from_header(header: &::csv::StringRecord) -> AppResult<Columns> {
        let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(email), Some(full_name)) = (column("email"), column("full_name")) else {
            return Err(AppError::bad_input(
                "csv",
                "the first line must be the header email,full_name,comment (then any attributes)",
            ));
        };
        let comment = column("comment");
        let tags = column("tags");
        let mut attributes: Vec<(usize, String)> = Vec::new();
        for (at, name) in header.iter().enumerate() {
            if [Some(email), Some(full_name), comment, tags].contains(&Some(at)) {
                continue;
            }
            validate::attribute_key("csv", name)?;
            if attributes.iter().any(|(_, known)| known == name) {
                return Err(AppError::bad_input("csv", format!("the column {name:?} appears twice")));
            }
            attributes.push((at, name.to_owned()));
        }
        if attributes.len() > validate::MAX_ATTRIBUTES {
            return Err(AppError::bad_input(
                "csv",
                format!("at most {} attribute columns", validate::MAX_ATTRIBUTES),
            ));
        }
        Ok(Columns {
            email,
            full_name,
            comment,
            tags,
            attributes,
        })
    }

    /// Whether the file has attribute columns (without them, an import leaves attributes be).
    pub fn has_attributes(&self) -> bool {
        !self.attributes.is_empty()
    }

    /// A record's cells, unescaped; None for a line of empty cells (skipped).
    pub fn cells(&self, record: &::csv::StringRecord) -> Option<Cells> {
        if record.iter().all(str::is_empty) {
            return None;
        }
        let cell = |at: Option<usize>| at.and_then(|at| record.get(at)).map(unescape).unwrap_or_default();
        Some(Cells {
            email: cell(Some(self.email)),
            full_name: cell(Some(self.full_name)),
            comment: cell(self.comment),
            tags: cell(self.tags),
            attributes: self
                .attributes
                .iter()
                .map(|(at, key)| (key.clone(), cell(Some(*at))))
                .filter(|(_, value)| !value.is_empty())
                .map(|(key, value)| (key, serde_json::Value::String(value)))
                .collect(),
        })
    }
}

/// A reader of CSV text as imports read it (cells trimmed, rows of any length).
pub fn reader<R: std::io::Read>(source: R) -> ::csv::Reader<R> {
    ::csv::ReaderBuilder::new()
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(source)
}

/// Checks one line's cells: the client's fields and its tag names, or why not (a message
/// that starts with the column's name). `with_attributes`: the file has attribute columns.
pub fn check(cells: &Cells, with_attributes: bool) -> Result<(ClientFields, Vec<String>), String> {
    let checked = (|| {
        let tags = tag_names(&cells.tags)?;
        let fields = ClientFields {
            email: validate::email("email", &cells.email)?,
            full_name: validate::required_line("full_name", &cells.full_name, 200)?,
            comment: validate::text("comment", &cells.comment, 2_000)?,
            // An empty cell sets nothing: the client keeps what it had.
            attributes: if with_attributes {
                Some(serde_json::Value::Object(validate::attributes(
                    "attributes",
                    &serde_json::Value::Object(cells.attributes.clone()),
                )?))
            } else {
                None
            },
        };
        Ok::<_, AppError>((fields, tags))
    })();
    checked.map_err(|err| match err {
        AppError::BadUserInput { field, message } => format!("{field}: {message}"),
        other => other.to_string(),
    })
}

/// Parses an import. Only a missing or unusable header, or too many rows, fail the whole
/// file (BAD_USER_INPUT on `csv`); a bad row is reported by line and skipped. An address
/// that appears twice is imported from its first line only.
pub fn parse(text: &str) -> AppResult<Parsed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| AppError::bad_input("csv", format!("the header line cannot be read: {e}")))?
        .clone();
    let columns = Columns::from_header(&header)?;

    let mut parsed = Parsed::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        if index >= MAX_ROWS {
            return Err(AppError::bad_input(
                "csv",
                format!("at most {MAX_ROWS} rows can be imported at once"),
            ));
        }
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(index + 2, |p| p.line() as usize);
                parsed.errors.push(LineError {
                    line,
                    message: format!("not valid CSV: {err}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(index + 2, |p| p.line() as usize);
        let Some(cells) = columns.cells(&record) else { continue };
        match check(&cells, columns.has_attributes()) {
            Ok((row, tags)) => {
                if let Some(first) = seen.get(&row.email.to_lowercase()) {
                    parsed.errors.push(LineError {
                        line,
                        message: format!("email: {} is already on line {first}", row.email),
                    });
                } else {
                    seen.insert(row.email.to_lowercase(), line);
                    if !tags.is_empty() {
                        parsed.tags.push((row.email.clone(), tags));
                    }
                    parsed.rows.push(row);
                }
            }
            Err(message) => parsed.errors.push(LineError { line, message }),
        }
    }
    Ok(parsed)
}

/// Characters that make a spreadsheet read a cell as a formula (OWASP's list).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as exported: one that would start a formula gets a leading `'`, which
/// spreadsheets show as text; so does one that starts with `'` itself, or it would lose
/// that `'` on the way back in.
pub fn escape(cell: &str) -> String {
    if cell.starts_with(FORMULA_STARTS) || cell.starts_with('\'') {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// The inverse of [`escape`], so an exported file imports back unchanged. A `'` before
/// anything else is the user's own and stays.
fn unescape(cell: &str) -> String {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) || rest.starts_with('\'') => rest.to_owned(),
        _ => cell.to_owned(),
    }
}

/// The export's first line: the fixed columns, `tags` when the owner has tags, then one
/// per attribute key.
pub fn header(with_tags: bool, attribute_keys: &[String]) -> Vec<u8> {
    let mut cells = vec!["email", "full_name", "comment"];
    if with_tags {
        cells.push("tags");
    }
    cells.extend(attribute_keys.iter().map(String::as_str));
    row(&cells)
}

/// One client's exported line: its tags (when the header has the column) joined by `;`,
/// its attributes in the header's order, empty where it has none (numbers and booleans as
/// JSON writes them).
pub fn client_row(client: &super::model::Client, tags: Option<&[String]>, attribute_keys: &[String]) -> Vec<u8> {
    let values: Vec<String> = attribute_keys
        .iter()
        .map(|key| match client.attributes.get(key) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        })
        .collect();
    let tags = tags.map(|names| names.join(&format!("{TAG_SEPARATOR} ")));
    let mut cells = vec![
        client.email.as_str(),
        client.full_name.as_str(),
        client.comment.as_str(),
    ];
    cells.extend(tags.as_deref());
    cells.extend(values.iter().map(String::as_str));
    row(&cells)
}

/// One exported line, escaped and CSV-quoted.
pub fn row(cells: &[&str]) -> Vec<u8> {
    let mut writer = ::csv::WriterBuilder::new().from_writer(Vec::new());
    writer
        .write_record(cells.iter().map(|cell| escape(cell)))
        .expect("writing to memory cannot fail");
    writer.into_inner().expect("writing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_duplicate_and_bad_lines() {
        let parsed = parse(
            "email,full_name,comment\n\
             ann@example.com,Ann,first\n\
             not-an-address,Bob,\n\
             ANN@example.com,Ann again,\n\
             \"cy@example.com\",\"Cy, Jr.\",\"says \"\"hi\"\"\"\n\
             dee@example.com,,\n",
        )
        .unwrap();
        let emails: Vec<&str> = parsed.rows.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(emails, ["ann@example.com", "cy@example.com"]);
        assert_eq!(parsed.rows[1].full_name, "Cy, Jr.");
        assert_eq!(parsed.rows[1].comment, "says \"hi\"");
        let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 6], "{:?}", parsed.errors);
        assert!(parsed.errors[0].message.starts_with("email:"));
        assert!(parsed.errors[1].message.contains("line 2"));
        assert!(parsed.errors[2].message.starts_with("full_name:"));
    }

    #[test]
    fn the_header_is_required() {
        assert!(parse("ann@example.com,Ann,\n").is_err());
        // Further columns are attributes, named as attributes must be.
        assert!(parse("email,full_name,phone\n").unwrap().errors.is_empty());
        assert!(parse("email,full_name,first name\n").is_err());
        assert!(parse("email,full_name,plan,plan\n").is_err());
        assert!(
            parse("email,full_name\nann@example.com,Ann\n")
                .unwrap()
                .errors
                .is_empty()
        );
    }

    #[test]
    fn formulas_are_defused_and_come_back() {
        assert_eq!(escape("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(escape("-1"), "'-1");
        assert_eq!(escape("Ann"), "Ann");
        assert_eq!(unescape(&escape("=cmd")), "=cmd");
        assert_eq!(unescape("'quoted"), "'quoted");
        // Cells that start with ' come back as they went out.
        for cell in ["'quoted", "'=1+1", "''", "'", "''x", "=x", "-", "plain"] {
            assert_eq!(unescape(&escape(cell)), cell, "{cell:?}");
        }
        assert_eq!(
            String::from_utf8(row(&["a@b.c", "=1+1", "x, y"])).unwrap(),
            "a@b.c,'=1+1,\"x, y\"\n"
        );
    }
}
