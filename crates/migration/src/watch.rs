//! After the technical phase: each legacy operator's native traffic watched until it goes quiet,
//! then the operator disabled and, later, deleted. Deciding is pure; the commands act.

use std::collections::{BTreeSet, HashMap};

use ims_wire::migration::OperatorFacts;
use serde::Serialize;

/// Where a legacy operator stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Watched {
    pub legacy: String,
    pub technical_account: String,
    /// When its technical account was made (the kit written).
    pub moved_at: i64,
    /// `noisy` (native traffic since the move), `watching` (quiet so far, for less than the
    /// period), `quiet`, `disabled`, `deleted`.
    pub state: String,
    /// Native sign-ins and calls since the move, the last one, from where, with what.
    pub calls_since: i64,
    pub last_native: Option<i64>,
    pub sources: Vec<String>,
    pub clients: Vec<String>,
    /// No native traffic for the whole period (disabled or not).
    pub quiet: bool,
}

/// `moved` maps each legacy login to its technical account and when it was moved.
pub fn watch(
    moved: &HashMap<String, (String, i64)>,
    ops: &[OperatorFacts],
    now: i64,
    quiet_after_ms: i64,
) -> Vec<Watched> {
    let by_login: HashMap<&str, &OperatorFacts> = ops.iter().map(|o| (o.login.as_str(), o)).collect();
    let mut out: Vec<Watched> = moved
        .iter()
        .map(|(legacy, (ta, moved_at))| {
            let mut w = Watched {
                legacy: legacy.clone(),
                technical_account: ta.clone(),
                moved_at: *moved_at,
                state: String::new(),
                calls_since: 0,
                last_native: None,
                sources: Vec::new(),
                clients: Vec::new(),
                quiet: false,
            };
            let Some(op) = by_login.get(legacy.as_str()) else {
                w.state = "deleted".into();
                w.quiet = true;
                return w;
            };
            let since: Vec<_> = op
                .usage
                .iter()
                .filter(|u| u.auth_path == "native" && u.outcome == "success" && u.last_at > *moved_at)
                .collect();
            w.calls_since = since.iter().map(|u| u.count).sum();
            w.last_native = since.iter().map(|u| u.last_at).max();
            w.sources = since
                .iter()
                .map(|u| u.source.clone())
                .filter(|s| !s.is_empty())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            w.clients = since
                .iter()
                .map(|u| u.client.clone())
                .filter(|s| !s.is_empty())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let quiet_since = w.last_native.unwrap_or(*moved_at);
            w.quiet = now - quiet_since >= quiet_after_ms;
            w.state = if op.disabled {
                "disabled"
            } else if w.quiet {
                "quiet"
            } else if w.last_native.is_some() {
                "noisy"
            } else {
                "watching"
            }
            .into();
            w
        })
        .collect();
    out.sort_by(|a, b| a.legacy.cmp(&b.legacy));
    out
}

/// `7d`, `12h`, `30m`, `90s` in milliseconds.
pub fn parse_period(text: &str) -> Option<i64> {
    let text = text.trim();
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ims_wire::migration::UsageFacts;

    fn legacy(login: &str, usage: &[(i64, &str)]) -> OperatorFacts {
        OperatorFacts {
            id: 1,
            usage: usage
                .iter()
                .map(|(at, source)| UsageFacts {
                    action: "xtk:queryDef#ExecuteQuery".into(),
                    auth_path: "native".into(),
                    source: (*source).into(),
                    client: "crm/2".into(),
                    outcome: "success".into(),
                    count: 5,
                    first_at: 0,
                    last_at: *at,
                })
                .collect(),
            ..crate::testing::operator(login)
        }
    }

    #[test]
    fn traffic_after_the_move_keeps_an_operator_noisy_until_the_period_passes() {
        let moved: HashMap<String, (String, i64)> = [
            ("crm".to_owned(), ("ta1@techacct".to_owned(), 1_000)),
            ("web".to_owned(), ("ta2@techacct".to_owned(), 1_000)),
            ("bi".to_owned(), ("ta3@techacct".to_owned(), 1_000)),
            ("gone".to_owned(), ("ta4@techacct".to_owned(), 1_000)),
        ]
        .into_iter()
        .collect();
        let mut off = legacy("bi", &[]);
        off.disabled = true;
        let ops = vec![
            legacy("crm", &[(500, "10.0.0.1"), (5_000, "10.0.0.2")]),
            legacy("web", &[(900, "10.0.0.3")]),
            off,
        ];
        let w = watch(&moved, &ops, 6_000, 3_000);
        let states: Vec<(&str, &str)> = w.iter().map(|x| (x.legacy.as_str(), x.state.as_str())).collect();
        assert_eq!(
            states,
            [
                ("bi", "disabled"),
                ("crm", "noisy"),
                ("gone", "deleted"),
                ("web", "quiet")
            ]
        );
        assert_eq!(w[1].sources, ["10.0.0.2"], "only traffic after the move counts");
        assert_eq!((w[1].calls_since, w[1].last_native), (5, Some(5_000)));
        // Later, crm has been quiet for the whole period too.
        let w = watch(&moved, &ops, 8_000, 3_000);
        assert_eq!(w[1].state, "quiet");
        let w = watch(&moved, &[legacy("web", &[])], 2_000, 3_000);
        assert_eq!(w.iter().find(|x| x.legacy == "web").unwrap().state, "watching");
    }

    #[test]
    fn periods_read_with_their_unit() {
        assert_eq!(parse_period("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_period("90s"), Some(90_000));
        assert_eq!(parse_period("3"), None);
        assert_eq!(parse_period("d"), None);
        assert_eq!(parse_period("5w"), None);
    }
}
