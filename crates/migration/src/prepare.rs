//! Preparation: what an instance needs before its people can move, decided without I/O. Emails
//! come from a CSV file (`login,email`), checked here by the IMS's rule before the instance
//! checks them against every operator.

use std::collections::HashMap;

use ims_campaign::connect::email_key;
use ims_wire::migration::EmailAssignment;

use crate::assess::email_syntax_ok;

/// A line of the file that cannot be used, and why (lines counted from 1, the header included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineProblem {
    pub line: u64,
    pub problem: String,
}

/// Reads `login,email` rows (a header naming both columns first; other columns ignored; RFC
/// 4180 quoting). Every problem of the file is reported, not only the first.
pub fn read_email_csv(text: &str) -> Result<Vec<EmailAssignment>, Vec<LineProblem>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![LineProblem {
                line: 1,
                problem: format!("the header cannot be read: {e}"),
            }])
        }
    };
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(login_col), Some(email_col)) = (column("login"), column("email")) else {
        return Err(vec![LineProblem {
            line: 1,
            problem: "the first line must name the columns: login,email".into(),
        }]);
    };
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut first_line_of_login: HashMap<String, u64> = HashMap::new();
    let mut first_line_of_email: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                problems.push(LineProblem {
                    line,
                    problem: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let login = record.get(login_col).unwrap_or_default().to_owned();
        let email = record.get(email_col).unwrap_or_default().to_owned();
        let mut bad = |problem: String| problems.push(LineProblem { line, problem });
        if login.is_empty() {
            bad("no login".into());
            continue;
        }
        if !email_syntax_ok(&email) {
            bad(format!("{email:?} is not an email address"));
            continue;
        }
        if let Some(first) = first_line_of_login.insert(login.clone(), line) {
            bad(format!("{login} is already given an email on line {first}"));
            continue;
        }
        if let Some(first) = first_line_of_email.insert(email_key(&email), line) {
            bad(format!(
                "{email} is already given on line {first} (emails are compared case-insensitively)"
            ));
            continue;
        }
        out.push(EmailAssignment { login, email });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rows_are_read_by_header_and_every_problem_is_listed() {
        // Columns by header name, whatever their order; spaces trimmed; quoting honoured.
        let rows = read_email_csv(
            "Email,Login,note\n bo@example.com , bo.berg ,x\n\"kim@example.com\",\"kim, the second\"\n",
        )
        .unwrap();
        assert_eq!(
            rows[0],
            EmailAssignment {
                login: "bo.berg".into(),
                email: "bo@example.com".into()
            }
        );
        assert_eq!(rows[1].login, "kim, the second");
        let rows =
            read_email_csv("login,email\nbo.berg,Bo.Berg@example.com\njun.abe,jun@example.com\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].email, "Bo.Berg@example.com");

        let problems = read_email_csv(
            "login,email\nbo.berg,bo@example.com\nbo.berg,other@example.com\nkim,BO@EXAMPLE.COM\n,x@example.com\nlee,not-an-address\n",
        )
        .unwrap_err();
        let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(problems[1].problem.contains("line 2"), "{problems:?}");

        assert_eq!(read_email_csv("user,mail\na,b@c.com\n").unwrap_err()[0].line, 1);
        assert!(read_email_csv("").is_err());
    }

    proptest! {
        #[test]
        fn any_text_gives_rows_or_problems_never_a_panic(text in "\\PC{0,400}") {
            let _ = read_email_csv(&text);
        }

        #[test]
        fn accepted_rows_have_distinct_logins_and_emails(
            rows in proptest::collection::vec(("[a-zé]{1,4}", "[a-zA-Z]{1,3}@[a-z]{1,2}\\.com"), 0..30)
        ) {
            let mut text = String::from("login,email\n");
            for (l, e) in &rows {
                text.push_str(&format!("{l},{e}\n"));
            }
            if let Ok(out) = read_email_csv(&text) {
                let logins: std::collections::HashSet<&str> = out.iter().map(|a| a.login.as_str()).collect();
                let emails: std::collections::HashSet<String> = out.iter().map(|a| email_key(&a.email)).collect();
                prop_assert_eq!(logins.len(), out.len());
                prop_assert_eq!(emails.len(), out.len());
                prop_assert_eq!(out.len(), rows.len());
            }
        }
    }
}
