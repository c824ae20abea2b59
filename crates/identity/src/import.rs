//! Bulk import of people from CSV (the Admin Console's import): RFC 4180 text (a quoted field may
//! hold commas, quotes and line breaks), a header naming the columns, one person per row. Each row
//! becomes one User Management API entry, so an import follows the API's rules: the same
//! checks, the same audit lines, and a preview that is the API's test mode.

use serde_json::{json, Value};

use ims_core::error::Error;

/// Most rows one import takes.
pub const MAX_ROWS: usize = 1000;

/// The columns read; others are ignored. `email` is required.
pub const COLUMNS: &str = "email,firstname,lastname,country,type,groups";

/// One row to import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportRow {
    /// Line of the row in the text (1-based; a row spanning lines counts its first).
    pub line: u64,
    pub email: String,
    /// The action entry: create (or update) the person, then add the groups.
    pub entry: Value,
}

/// The 1-based line where the row at a byte offset starts (the reader's offset of a row after
/// blank lines points at the blank lines).
fn line_at(text: &str, byte: u64) -> u64 {
    let bytes = text.as_bytes();
    let mut at = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
    while at < bytes.len() && matches!(bytes[at], b'\n' | b'\r') {
        at += 1;
    }
    bytes[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

fn bad(line: u64, message: impl std::fmt::Display) -> Error {
    Error::invalid_request(format!("line {line}: {message}"))
}

/// Parses the text. A problem with the text itself (no header, no email column, a row that is not
/// CSV, an unknown identity type, too many rows) refuses the whole import with its line; what
/// the directory refuses (a bad address, an unknown group) is reported per row when the entries
/// run.
pub fn parse_users_csv(text: &str) -> Result<Vec<ImportRow>, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| bad(1, format!("the header is not CSV ({e})")))?
        .iter()
        .map(str::to_lowercase)
        .collect::<Vec<_>>();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let email_col =
        col("email").ok_or_else(|| bad(1, format!("the header needs an email column ({COLUMNS})")))?;
    let (first, last, country, kind, groups) = (
        col("firstname"),
        col("lastname"),
        col("country"),
        col("type"),
        col("groups"),
    );
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(text, p.byte()));
            bad(line, format!("not CSV ({e})"))
        })?;
        let line = record.position().map_or(0, |p| line_at(text, p.byte()));
        if record.iter().all(str::is_empty) {
            continue;
        }
        if rows.len() >= MAX_ROWS {
            return Err(bad(line, format!("at most {MAX_ROWS} rows per import")));
        }
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default();
        let email = cell(Some(email_col)).to_owned();
        let command = match cell(kind) {
            "" | "enterpriseID" => "createEnterpriseID",
            "federatedID" => "createFederatedID",
            "adobeID" => "addAdobeID",
            other => {
                return Err(bad(
                    line,
                    format!("type {other:?} is not enterpriseID, federatedID or adobeID"),
                ))
            }
        };
        let mut args = json!({
            "email": email,
            "firstname": cell(first),
            "lastname": cell(last),
            "option": "updateIfAlreadyExists",
        });
        if !cell(country).is_empty() {
            args["country"] = json!(cell(country));
        }
        let mut steps = vec![json!({ command: args })];
        let names: Vec<&str> = cell(groups)
            .split(';')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .collect();
        if !names.is_empty() {
            steps.push(json!({"add": {"group": names}}));
        }
        rows.push(ImportRow {
            line,
            entry: json!({"user": email, "do": steps}),
            email,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoted_fields_types_groups_and_errors_with_their_line() {
        let text = "Email,FirstName,LastName,Country,Type,Groups\n\
                    a@x.example,\"Ann, Jr.\",\"O\"\"Neil\",fr,federatedID,\"G1; G2\"\n\
                    \n\
                    b@x.example,B,\"two\nlines\",,,\n";
        let rows = parse_users_csv(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[1].line), (2, 4));
        assert_eq!(
            rows[0].entry["do"][0]["createFederatedID"]["firstname"],
            "Ann, Jr."
        );
        assert_eq!(rows[0].entry["do"][0]["createFederatedID"]["lastname"], "O\"Neil");
        assert_eq!(rows[0].entry["do"][1]["add"]["group"], json!(["G1", "G2"]));
        assert_eq!(
            rows[1].entry["do"][0]["createEnterpriseID"]["lastname"],
            "two\nlines"
        );
        assert_eq!(
            rows[1].entry["do"].as_array().unwrap().len(),
            1,
            "no groups, no add step"
        );
        let e = parse_users_csv("email,type\nc@x.example,robot\n").unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert!(
            parse_users_csv("name\nx\n").is_err(),
            "an email column is required"
        );
        assert!(parse_users_csv("").is_err());
        let many = format!("email\n{}", "a@x.example\n".repeat(MAX_ROWS + 1));
        assert!(parse_users_csv(&many).is_err());
    }

    proptest! {
        /// Whatever a spreadsheet writes comes back as written (trimmed), and no text panics.
        #[test]
        fn rows_written_as_csv_read_back(rows in prop::collection::vec(
            ("[a-z0-9.]{1,12}@[a-z]{1,8}\\.example", "[^\\x00]{0,20}", "[^\\x00]{0,20}", prop::collection::vec("[A-Za-z0-9 ,\"-]{1,12}", 0..3)),
            1..20,
        )) {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["email", "firstname", "lastname", "groups"]).unwrap();
            for (email, first, last, groups) in &rows {
                let groups: Vec<&str> = groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty() && !g.contains(';')).collect();
                w.write_record([email.as_str(), first, last, &groups.join(";")]).unwrap();
            }
            let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
            let parsed = parse_users_csv(&text).unwrap();
            prop_assert_eq!(parsed.len(), rows.len());
            for (row, (email, first, last, _)) in parsed.iter().zip(&rows) {
                prop_assert_eq!(&row.email, email);
                let create = &row.entry["do"][0]["createEnterpriseID"];
                prop_assert_eq!(create["firstname"].as_str().unwrap(), first.trim());
                prop_assert_eq!(create["lastname"].as_str().unwrap(), last.trim());
            }
        }

        #[test]
        fn any_text_is_parsed_or_refused(text in "(?s).{0,400}") {
            let _ = parse_users_csv(&text);
        }
    }
}
