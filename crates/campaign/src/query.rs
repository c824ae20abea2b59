//! The `where` expressions of `xtk:queryDef`: a small language parsed by a real parser into a
//! tree, then turned into SQL with bound parameters (never by pasting text) over a whitelist of
//! attributes per schema.
//!
//! Grammar (case-insensitive keywords):
//! ```text
//! expr       := or
//! or         := and ( "OR" and )*
//! and        := unary ( "AND" unary )*
//! unary      := "NOT" unary | primary
//! primary    := "(" expr ")" | comparison
//! comparison := operand ( op operand | "IS" ["NOT"] "NULL" | ["NOT"] "LIKE" operand )
//! op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//! operand    := "@"name | 'string' | "string" | number
//! ```
//! Strings escape their quote by doubling it (`'O''Brien'`).

use std::fmt;

/// Most nodes in one expression tree, and in all the conditions of one `queryDef` together: it
/// bounds how deep the tree, its SQL and SQLite's own expression tree can grow (the writer recurses
/// once per node).
pub const MAX_NODES: usize = 256;
/// Most `<condition>` elements in one `<where>`; each becomes one more level of the chained tree.
pub const MAX_CONDITIONS: usize = 64;
/// Most `<node>` elements in a `<select>` or an `<orderBy>`.
pub const MAX_SELECT_NODES: usize = 64;
/// Longest expression text.
pub const MAX_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Attr(String),
    Lit(Literal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    NotLike,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    IsNull(Operand, bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

fn qerr(msg: impl Into<String>) -> QueryError {
    QueryError(msg.into())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Attr(String),
    Str(String),
    Num(Literal),
    Word(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn lex(input: &str) -> Result<Vec<Tok>, QueryError> {
    if input.len() > MAX_LEN {
        return Err(qerr("expression too long"));
    }
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '@' => {
                let start = i + 1;
                i = start;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
                {
                    i += 1;
                }
                if i == start {
                    return Err(qerr("@ must be followed by an attribute name"));
                }
                out.push(Tok::Attr(chars[start..i].iter().collect()));
            }
            '\'' | '"' => {
                let quote = c;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(qerr("unterminated string")),
                        Some(&q) if q == quote && chars.get(i + 1) == Some(&quote) => {
                            s.push(quote);
                            i += 2;
                        }
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some(&other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '0'..='9' | '-' | '.' if c != '-' || chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()) => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let lit = if text.contains('.') {
                    Literal::Float(text.parse().map_err(|_| qerr(format!("bad number {text}")))?)
                } else {
                    Literal::Int(text.parse().map_err(|_| qerr(format!("bad number {text}")))?)
                };
                out.push(Tok::Num(lit));
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op("!="));
                i += 2;
            }
            '<' => {
                let op = match chars.get(i + 1) {
                    Some('=') => "<=",
                    Some('>') => "<>",
                    _ => "<",
                };
                i += op.len();
                out.push(Tok::Op(op));
            }
            '>' => {
                let op = if chars.get(i + 1) == Some(&'=') { ">=" } else { ">" };
                i += op.len();
                out.push(Tok::Op(op));
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_alphabetic() {
                    i += 1;
                }
                out.push(Tok::Word(
                    chars[start..i].iter().collect::<String>().to_ascii_uppercase(),
                ));
            }
            other => return Err(qerr(format!("unexpected character {other:?}"))),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    nodes: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn node(&mut self) -> Result<(), QueryError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(qerr("expression too complex"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.and()?;
        while self.word("OR") {
            self.bump();
            self.node()?;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.unary()?;
        while self.word("AND") {
            self.bump();
            self.node()?;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        self.node()?;
        if self.word("NOT") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.bump();
            let e = self.or()?;
            if self.bump() != Some(Tok::RParen) {
                return Err(qerr("missing )"));
            }
            return Ok(e);
        }
        self.comparison()
    }

    fn operand(&mut self) -> Result<Operand, QueryError> {
        match self.bump() {
            Some(Tok::Attr(a)) => Ok(Operand::Attr(a)),
            Some(Tok::Str(s)) => Ok(Operand::Lit(Literal::Str(s))),
            Some(Tok::Num(n)) => Ok(Operand::Lit(n)),
            Some(other) => Err(qerr(format!("expected an attribute or a value, found {other:?}"))),
            None => Err(qerr("unexpected end of expression")),
        }
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.operand()?;
        if self.word("IS") {
            self.bump();
            let negated = self.word("NOT");
            if negated {
                self.bump();
            }
            if !self.word("NULL") {
                return Err(qerr("expected NULL after IS"));
            }
            self.bump();
            return Ok(Expr::IsNull(left, negated));
        }
        let op = match self.bump() {
            Some(Tok::Op("=")) => CmpOp::Eq,
            Some(Tok::Op("!=" | "<>")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            Some(Tok::Word(w)) if w == "LIKE" => CmpOp::Like,
            Some(Tok::Word(w)) if w == "NOT" && self.word("LIKE") => {
                self.bump();
                CmpOp::NotLike
            }
            other => return Err(qerr(format!("expected a comparison, found {other:?}"))),
        };
        let right = self.operand()?;
        Ok(Expr::Cmp(left, op, right))
    }
}

/// Parses one `where` expression.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    parse_counted(input, 0).map(|(e, _)| e)
}

/// Parses one expression whose nodes add to `used` already spent by earlier conditions of the
/// same query; the total is what [`MAX_NODES`] bounds. Returns the new total.
fn parse_counted(input: &str, used: usize) -> Result<(Expr, usize), QueryError> {
    let toks = lex(input)?;
    if toks.is_empty() {
        return Err(qerr("empty expression"));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        nodes: used,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(qerr(format!("unexpected {:?}", p.toks[p.pos])));
    }
    Ok((e, p.nodes))
}

/// A value bound to a SQL parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Float(f64),
}

/// SQL text using `$n` parameters, starting after `first_param - 1` already bound ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

/// Turns an expression into SQL. `column` maps an attribute to its column (the whitelist); an
/// attribute it does not know is an error.
pub fn to_sql(
    expr: &Expr,
    column: &dyn Fn(&str) -> Option<&'static str>,
    first_param: usize,
) -> Result<Sql, QueryError> {
    let mut sql = Sql {
        text: String::new(),
        params: Vec::new(),
    };
    write(expr, column, first_param, &mut sql)?;
    Ok(sql)
}

fn operand_sql(
    o: &Operand,
    column: &dyn Fn(&str) -> Option<&'static str>,
    first: usize,
    sql: &mut Sql,
) -> Result<(), QueryError> {
    match o {
        Operand::Attr(a) => {
            let col = column(a).ok_or_else(|| qerr(format!("unknown attribute @{a}")))?;
            sql.text.push_str(col);
        }
        Operand::Lit(l) => {
            sql.params.push(match l {
                Literal::Str(s) => SqlValue::Text(s.clone()),
                Literal::Int(i) => SqlValue::Int(*i),
                Literal::Float(f) => SqlValue::Float(*f),
            });
            sql.text.push_str(&format!("${}", first + sql.params.len() - 1));
        }
    }
    Ok(())
}

fn write(
    e: &Expr,
    column: &dyn Fn(&str) -> Option<&'static str>,
    first: usize,
    sql: &mut Sql,
) -> Result<(), QueryError> {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            sql.text.push('(');
            write(a, column, first, sql)?;
            sql.text.push_str(if matches!(e, Expr::And(..)) {
                " AND "
            } else {
                " OR "
            });
            write(b, column, first, sql)?;
            sql.text.push(')');
        }
        Expr::Not(a) => {
            sql.text.push_str("(NOT ");
            write(a, column, first, sql)?;
            sql.text.push(')');
        }
        Expr::IsNull(o, negated) => {
            sql.text.push('(');
            operand_sql(o, column, first, sql)?;
            sql.text
                .push_str(if *negated { " IS NOT NULL)" } else { " IS NULL)" });
        }
        Expr::Cmp(l, op, r) => {
            sql.text.push('(');
            operand_sql(l, column, first, sql)?;
            sql.text.push_str(match op {
                CmpOp::Eq => " = ",
                CmpOp::Ne => " <> ",
                CmpOp::Lt => " < ",
                CmpOp::Le => " <= ",
                CmpOp::Gt => " > ",
                CmpOp::Ge => " >= ",
                CmpOp::Like => " LIKE ",
                CmpOp::NotLike => " NOT LIKE ",
            });
            operand_sql(r, column, first, sql)?;
            sql.text.push(')');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cols(a: &str) -> Option<&'static str> {
        match a {
            "name" => Some("login"),
            "id" => Some("operator_id"),
            "email" => Some("email"),
            _ => None,
        }
    }

    #[test]
    fn parses_the_documented_subset() {
        let e = parse("@name='admin' and (@id > 10 or @email IS NOT NULL) and @email not like '%@x.com'")
            .unwrap();
        let sql = to_sql(&e, &cols, 1).unwrap();
        assert_eq!(
            sql.text,
            "(((login = $1) AND ((operator_id > $2) OR (email IS NOT NULL))) AND (email NOT LIKE $3))"
        );
        assert_eq!(
            sql.params,
            vec![
                SqlValue::Text("admin".into()),
                SqlValue::Int(10),
                SqlValue::Text("%@x.com".into())
            ]
        );
        assert_eq!(
            parse("@name = 'O''Brien'").unwrap(),
            Expr::Cmp(
                Operand::Attr("name".into()),
                CmpOp::Eq,
                Operand::Lit(Literal::Str("O'Brien".into()))
            )
        );
        assert!(matches!(parse("NOT @id <> -3.5").unwrap(), Expr::Not(_)));
    }

    #[test]
    fn injection_stays_a_value() {
        let e = parse("@name = 'x'' OR 1=1 --'").unwrap();
        let sql = to_sql(&e, &cols, 4).unwrap();
        assert_eq!(sql.text, "(login = $4)");
        assert_eq!(sql.params, vec![SqlValue::Text("x' OR 1=1 --".into())]);
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "@",
            "@name =",
            "@name = 'x",
            "(@id = 1",
            "@id = 1)",
            "@id == 1",
            "@id = 1 and",
            "drop table x",
            "@id IS NULLISH",
            "1;",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            to_sql(&parse("@password = 'x'").unwrap(), &cols, 1).is_err(),
            "attributes outside the whitelist"
        );
        let deep = format!("{}@id=1{}", "(".repeat(300), ")".repeat(300));
        assert!(parse(&deep).is_err());
    }

    proptest! {
        #[test]
        fn parse_is_total(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn generated_sql_never_contains_literal_text(v in "[a-zA-Z0-9' ;-]{0,30}") {
            let quoted = format!("'{}'", v.replace('\'', "''"));
            let e = parse(&format!("@name = {quoted} or @email like {quoted}")).unwrap();
            let sql = to_sql(&e, &cols, 1).unwrap();
            prop_assert_eq!(sql.text, "((login = $1) OR (email LIKE $2))".to_owned());
            prop_assert_eq!(sql.params, vec![SqlValue::Text(v.clone()), SqlValue::Text(v)]);
        }
    }
}

/// What kind of answer a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Select,
    Get,
    GetIfExists,
    Count,
}

/// A `<queryDef>` document, read and checked against the schema's whitelist.
#[derive(Debug, Clone)]
pub struct QueryDef {
    pub schema: &'static crate::schemas::QuerySchema,
    pub operation: Operation,
    /// (attribute, column) pairs to return.
    pub select: Vec<(String, &'static str)>,
    pub filter: Option<Expr>,
    /// (column, descending)
    pub order: Vec<(&'static str, bool)>,
    pub line_count: Option<u32>,
    pub start_line: u32,
}

/// Most rows one query returns.
pub const MAX_LINES: u32 = 10_000;

fn attr_of(expr: &str) -> Result<&str, QueryError> {
    let name = expr
        .trim()
        .strip_prefix('@')
        .ok_or_else(|| qerr(format!("{expr:?}: only @attribute expressions are supported")))?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(qerr(format!("{expr:?} is not an attribute")));
    }
    Ok(name)
}

/// The children of `parent` named `name`, refused whole when there are more than `max` (counted
/// before any is read, so the refusal costs the same whatever follows).
fn bounded<'a>(
    parent: &'a ims_wire::soap::Element,
    name: &str,
    max: usize,
    what: &str,
) -> Result<Vec<&'a ims_wire::soap::Element>, QueryError> {
    let children: Vec<_> = parent.elements().filter(|c| c.name == name).collect();
    if children.len() > max {
        return Err(qerr(format!(
            "too many {what}: {} (at most {max})",
            children.len()
        )));
    }
    Ok(children)
}

impl QueryDef {
    /// Reads a `<queryDef>` element.
    pub fn from_element(el: &ims_wire::soap::Element) -> Result<Self, QueryError> {
        if el.name != "queryDef" {
            return Err(qerr("expected a queryDef document"));
        }
        let schema_id = el.attr("schema").ok_or_else(|| qerr("queryDef has no schema"))?;
        let schema = crate::schemas::query_schema(schema_id)
            .ok_or_else(|| qerr(format!("schema {schema_id} cannot be queried")))?;
        let operation = match el.attr("operation").unwrap_or("select") {
            "select" => Operation::Select,
            "get" => Operation::Get,
            "getIfExists" => Operation::GetIfExists,
            "count" => Operation::Count,
            other => return Err(qerr(format!("unsupported operation {other:?}"))),
        };
        let number = |name: &str| -> Result<Option<u32>, QueryError> {
            el.attr(name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .map_err(|_| qerr(format!("{name} must be a number")))
                })
                .transpose()
        };
        let mut select = Vec::new();
        if let Some(sel) = el.element("select") {
            for node in bounded(sel, "node", MAX_SELECT_NODES, "select nodes")? {
                let attr = attr_of(node.attr("expr").unwrap_or_default())?;
                let column = schema
                    .column(attr)
                    .ok_or_else(|| qerr(format!("unknown attribute @{attr} in {}", schema.id)))?;
                select.push((attr.to_owned(), column));
            }
        }
        if select.is_empty() && operation != Operation::Count {
            select = schema
                .attributes
                .iter()
                .take(2)
                .map(|(a, c)| ((*a).to_owned(), *c))
                .collect();
        }
        let mut filter: Option<Expr> = None;
        if let Some(w) = el.element("where") {
            let mut nodes = 0;
            for cond in bounded(w, "condition", MAX_CONDITIONS, "conditions")? {
                // Conditions chain into one tree: the joining node counts like any other.
                let (expr, used) = parse_counted(
                    cond.attr("expr").unwrap_or_default(),
                    nodes + usize::from(filter.is_some()),
                )?;
                nodes = used;
                filter = Some(
                    match (
                        filter,
                        cond.attr("boolOperator").map(str::to_ascii_uppercase).as_deref(),
                    ) {
                        (None, _) => expr,
                        (Some(prev), Some("OR")) => Expr::Or(Box::new(prev), Box::new(expr)),
                        (Some(prev), _) => Expr::And(Box::new(prev), Box::new(expr)),
                    },
                );
            }
        }
        let mut order = Vec::new();
        if let Some(o) = el.element("orderBy") {
            for node in bounded(o, "node", MAX_SELECT_NODES, "orderBy nodes")? {
                let attr = attr_of(node.attr("expr").unwrap_or_default())?;
                let column = schema
                    .column(attr)
                    .ok_or_else(|| qerr(format!("unknown attribute @{attr} in {}", schema.id)))?;
                order.push((column, node.attr("sortDesc").is_some_and(|v| v == "true")));
            }
        }
        let line_count = number("lineCount")?.map(|n| n.min(MAX_LINES));
        Ok(QueryDef {
            schema,
            operation,
            select,
            filter,
            order,
            line_count,
            start_line: number("startLine")?.unwrap_or(0),
        })
    }

    /// The `where` clause as SQL with its parameters.
    pub fn where_sql(&self) -> Result<Option<Sql>, QueryError> {
        let schema = self.schema;
        self.filter
            .as_ref()
            .map(|f| to_sql(f, &|a| schema.column(a), 1))
            .transpose()
    }
}

/// `filter AND column IN (ids)`, with the ids bound as parameters after the filter's own.
pub fn and_in(filter: Option<Sql>, column: &'static str, ids: &[i64]) -> Sql {
    let mut sql = filter.unwrap_or(Sql {
        text: String::new(),
        params: Vec::new(),
    });
    let clause = if ids.is_empty() {
        "(1 = 0)".to_owned()
    } else {
        let first = sql.params.len() + 1;
        let marks: Vec<String> = (first..first + ids.len()).map(|n| format!("${n}")).collect();
        sql.params.extend(ids.iter().map(|i| SqlValue::Int(*i)));
        format!("({column} IN ({}))", marks.join(", "))
    };
    sql.text = if sql.text.is_empty() {
        clause
    } else {
        format!("({} AND {clause})", sql.text)
    };
    sql
}

#[cfg(test)]
mod folder_tests {
    use super::*;

    #[test]
    fn folder_clause_binds_after_the_filter() {
        let f = to_sql(
            &parse("@email = 'a'").unwrap(),
            &|a| (a == "email").then_some("email"),
            1,
        )
        .unwrap();
        let sql = and_in(Some(f), "folder_id", &[3, 7]);
        assert_eq!(sql.text, "((email = $1) AND (folder_id IN ($2, $3)))");
        assert_eq!(
            sql.params,
            vec![SqlValue::Text("a".into()), SqlValue::Int(3), SqlValue::Int(7)]
        );
        assert_eq!(and_in(None, "folder_id", &[]).text, "(1 = 0)");
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::*;

    fn query_def(xml: &str) -> Result<QueryDef, QueryError> {
        let el = ims_wire::soap::parse_document(xml, ims_wire::soap::Limits::default()).unwrap();
        QueryDef::from_element(&el)
    }

    fn with_conditions(n: usize, expr: &str) -> String {
        let conds = format!("<condition expr=\"{expr}\"/>").repeat(n);
        format!(r#"<queryDef schema="nms:recipient" operation="count"><where>{conds}</where></queryDef>"#)
    }

    #[test]
    fn conditions_are_bounded_in_number_and_in_nodes_together() {
        let q = query_def(&with_conditions(MAX_CONDITIONS, "1=1")).unwrap();
        let sql = q.where_sql().unwrap().unwrap();
        assert_eq!(sql.params.len(), 2 * MAX_CONDITIONS);
        for n in [MAX_CONDITIONS + 1, 10 * MAX_CONDITIONS, 40_000] {
            let e = query_def(&with_conditions(n, "1=1")).unwrap_err();
            assert!(e.0.contains("too many conditions"), "{n}: {e}");
        }
        // Few conditions, each near the node limit: the total is what counts.
        let big = vec!["@id=1"; 60].join(" or ");
        assert!(parse(&big).is_ok());
        let e = query_def(&with_conditions(5, &big)).unwrap_err();
        assert_eq!(e.0, "expression too complex");
        let nodes = "<node expr=\"@email\"/>".repeat(MAX_SELECT_NODES + 1);
        for part in ["select", "orderBy"] {
            let xml = format!(r#"<queryDef schema="nms:recipient"><{part}>{nodes}</{part}></queryDef>"#);
            assert!(query_def(&xml).unwrap_err().0.contains("too many"), "{part}");
        }
    }
}
