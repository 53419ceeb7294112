//! A small, safe expression language evaluated against JSON documents.
//!
//! resttap uses it for a paginator's `stop_condition` (evaluated against each response body)
//! and for record filters. It has no side effects, no function calls and no loops: evaluation
//! time is linear in the size of the expression.
//!
//! # Grammar
//!
//! ```text
//! expr       := or
//! or         := and ( "or" and )*
//! and        := not ( "and" not )*
//! not        := "not" not | comparison
//! comparison := operand ( ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
//!                       | "is" ["not"] ("defined" | "null") )?
//! operand    := literal | path | "(" expr ")"
//! literal    := 'text' | "text" | number | true | false | null
//! path       := ["$" ["."]] segment ( "." segment | "[" integer "]" | "[" string "]" )*
//! segment    := [A-Za-z_@-][A-Za-z0-9_@-]*
//! ```
//!
//! Semantics: a path that does not resolve is *undefined*. `x is defined` is true when the path
//! resolves (to anything, `null` included); `x is null` is true when it resolves to `null` or is
//! undefined. `==` and `!=` compare JSON values (numbers by value: `1 == 1.0`); `<`, `<=`, `>`,
//! `>=` compare two numbers or two strings and are false otherwise. An operand used as a
//! condition is true unless it is undefined, `null`, `false`, `0`, `""`, `[]` or `{}`.
//!
//! ```
//! use resttap_expr::Expr;
//! let stop = Expr::parse("pagination.cursor is not defined").unwrap();
//! assert!(stop.eval_bool(&serde_json::json!({"pagination": {}})));
//! assert!(!stop.eval_bool(&serde_json::json!({"pagination": {"cursor": "abc"}})));
//! ```

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// A parse error, with the 1-based character column where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column} of `{source_text}`")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// 1-based character position in the expression.
    pub column: usize,
    /// The expression as written.
    pub source_text: String,
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index (negative counts from the end).
    Index(i64),
}

/// A path into a JSON document, e.g. `pagination.cursor` or `items[0].id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path(pub Vec<Segment>);

impl Path {
    /// Resolves the path in `doc`; `None` when some step does not exist.
    pub fn resolve<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        let mut cur = doc;
        for seg in &self.0 {
            cur = match (seg, cur) {
                (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                (Segment::Index(i), Value::Array(a)) => {
                    let idx = if *i < 0 { a.len().checked_sub(i.unsigned_abs() as usize)? } else { *i as usize };
                    a.get(idx)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    Path(Path),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `x is [not] defined`; the bool is `true` for `is defined`.
    IsDefined(Box<Expr>, bool),
    /// `x is [not] null`; the bool is `true` for `is null`.
    IsNull(Box<Expr>, bool),
}

/// The value of an operand: JSON, or undefined (a path that did not resolve).
enum Val<'a> {
    Undefined,
    Borrowed(&'a Value),
    Owned(Value),
}

impl Val<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            Val::Undefined => None,
            Val::Borrowed(v) => Some(v),
            Val::Owned(v) => Some(v),
        }
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

fn json_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Expr {
    /// Parses an expression.
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        let tokens = lex(src)?;
        let mut p = Parser { src, tokens, pos: 0 };
        let e = p.expr()?;
        if let Some(t) = p.peek() {
            return Err(p.err_at(t.col, format!("unexpected {}", t.kind.describe())));
        }
        Ok(e)
    }

    /// Evaluates the expression as a condition.
    pub fn eval_bool(&self, doc: &Value) -> bool {
        match self {
            Expr::Not(e) => !e.eval_bool(doc),
            Expr::And(a, b) => a.eval_bool(doc) && b.eval_bool(doc),
            Expr::Or(a, b) => a.eval_bool(doc) || b.eval_bool(doc),
            Expr::IsDefined(e, want) => e.eval(doc).get().is_some() == *want,
            Expr::IsNull(e, want) => matches!(e.eval(doc).get(), None | Some(Value::Null)) == *want,
            Expr::Cmp(op, a, b) => {
                let (a, b) = (a.eval(doc), b.eval(doc));
                match (a.get(), b.get()) {
                    (Some(x), Some(y)) => match op {
                        CmpOp::Eq => json_eq(x, y),
                        CmpOp::Ne => !json_eq(x, y),
                        CmpOp::Lt => json_cmp(x, y) == Some(Ordering::Less),
                        CmpOp::Le => matches!(json_cmp(x, y), Some(Ordering::Less | Ordering::Equal)),
                        CmpOp::Gt => json_cmp(x, y) == Some(Ordering::Greater),
                        CmpOp::Ge => matches!(json_cmp(x, y), Some(Ordering::Greater | Ordering::Equal)),
                    },
                    // undefined equals nothing, so only `!=` holds
                    _ => *op == CmpOp::Ne,
                }
            }
            Expr::Literal(v) => truthy(Some(v)),
            Expr::Path(p) => truthy(p.resolve(doc)),
        }
    }

    fn eval<'a>(&self, doc: &'a Value) -> Val<'a> {
        match self {
            Expr::Literal(v) => Val::Owned(v.clone()),
            Expr::Path(p) => p.resolve(doc).map_or(Val::Undefined, Val::Borrowed),
            other => Val::Owned(Value::Bool(other.eval_bool(doc))),
        }
    }

    /// The paths the expression reads, for validation and documentation.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Expr::Path(p) => out.push(p),
            Expr::Literal(_) => {}
            Expr::Not(e) | Expr::IsDefined(e, _) | Expr::IsNull(e, _) => e.collect_paths(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) => {
                a.collect_paths(out);
                b.collect_paths(out);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(Value),
    Dot,
    Dollar,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Op(CmpOp),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Dot => "`.`".into(),
            Tok::Dollar => "`$`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Op(op) => format!("operator {op:?}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    col: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '@'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '@' || c == '-'
}

fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let err = |col: usize, message: String| ParseError { message, column: col, source_text: src.to_string() };
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let single = match c {
            '.' => Some(Tok::Dot),
            '$' => Some(Tok::Dollar),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            _ => None,
        };
        if let Some(t) = single {
            out.push(Token { kind: t, col });
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "==" => Some((CmpOp::Eq, 2)),
            "!=" => Some((CmpOp::Ne, 2)),
            "<=" => Some((CmpOp::Le, 2)),
            ">=" => Some((CmpOp::Ge, 2)),
            _ if c == '<' => Some((CmpOp::Lt, 1)),
            _ if c == '>' => Some((CmpOp::Gt, 1)),
            _ => None,
        };
        if let Some((op, len)) = op {
            out.push(Token { kind: Tok::Op(op), col });
            i += len;
            continue;
        }
        if c == '=' {
            return Err(err(col, "`=` is not an operator; use `==` to compare".into()));
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(col, "unterminated string".into())),
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&e @ ('\\' | '\'' | '"')) => s.push(e),
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            _ => return Err(err(i + 1, "unknown escape in string".into())),
                        }
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token { kind: Tok::Str(s), col });
            continue;
        }
        if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-')) {
                // a '-' or '+' only belongs to the number right after an exponent marker
                if matches!(chars[i], '+' | '-') && !matches!(chars[i - 1], 'e' | 'E') {
                    break;
                }
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let num: Value = if let Ok(n) = text.parse::<i64>() {
                n.into()
            } else if let Ok(f) = text.parse::<f64>() {
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| err(col, format!("invalid number `{text}`")))?
            } else {
                return Err(err(col, format!("invalid number `{text}`")));
            };
            out.push(Token { kind: Tok::Num(num), col });
            continue;
        }
        if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            out.push(Token { kind: Tok::Ident(chars[start..i].iter().collect()), col });
            continue;
        }
        return Err(err(col, format!("unexpected character `{c}`")));
    }
    Ok(out)
}

struct Parser<'s> {
    src: &'s str,
    tokens: Vec<Token>,
    pos: usize,
}

const KEYWORDS: [&str; 9] = ["and", "or", "not", "is", "defined", "null", "true", "false", "in"];

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn end_col(&self) -> usize {
        self.src.chars().count() + 1
    }

    fn err_at(&self, column: usize, message: String) -> ParseError {
        ParseError { message, column, source_text: self.src.to_string() }
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Token { kind: Tok::Ident(s), .. }) if s == kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.eat_keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_keyword("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        if let Some(Token { kind: Tok::Op(op), .. }) = self.peek() {
            let op = *op;
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        if self.eat_keyword("is") {
            let negated = self.eat_keyword("not");
            if self.eat_keyword("defined") {
                return Ok(Expr::IsDefined(Box::new(left), !negated));
            }
            if self.eat_keyword("null") {
                return Ok(Expr::IsNull(Box::new(left), !negated));
            }
            let col = self.peek().map_or(self.end_col(), |t| t.col);
            return Err(self.err_at(col, "expected `defined` or `null` after `is`".into()));
        }
        Ok(left)
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.err_at(self.end_col(), "expected a value, a path or `(`, found the end".into()));
        };
        self.pos += 1;
        match tok.kind {
            Tok::LParen => {
                let e = self.expr()?;
                match self.peek() {
                    Some(Token { kind: Tok::RParen, .. }) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    Some(t) => Err(self.err_at(t.col, format!("expected `)`, found {}", t.kind.describe()))),
                    None => Err(self.err_at(self.end_col(), format!("unclosed `(` opened at column {}", tok.col))),
                }
            }
            Tok::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Tok::Num(n) => Ok(Expr::Literal(n)),
            Tok::Ident(ref s) if s == "true" => Ok(Expr::Literal(Value::Bool(true))),
            Tok::Ident(ref s) if s == "false" => Ok(Expr::Literal(Value::Bool(false))),
            Tok::Ident(ref s) if s == "null" => Ok(Expr::Literal(Value::Null)),
            Tok::Ident(ref s) if KEYWORDS.contains(&s.as_str()) => {
                Err(self.err_at(tok.col, format!("expected a value or a path, found keyword `{s}`")))
            }
            Tok::Ident(s) => self.path_rest(vec![Segment::Key(s)]),
            Tok::Dollar => {
                if matches!(self.peek(), Some(Token { kind: Tok::Dot, .. })) {
                    self.pos += 1;
                    match self.peek().cloned() {
                        Some(Token { kind: Tok::Ident(s), .. }) => {
                            self.pos += 1;
                            self.path_rest(vec![Segment::Key(s)])
                        }
                        Some(t) => {
                            Err(self.err_at(t.col, format!("expected a key after `$.`, found {}", t.kind.describe())))
                        }
                        None => Err(self.err_at(self.end_col(), "expected a key after `$.`".into())),
                    }
                } else {
                    self.path_rest(vec![])
                }
            }
            other => Err(self.err_at(tok.col, format!("expected a value, a path or `(`, found {}", other.describe()))),
        }
    }

    fn path_rest(&mut self, mut segs: Vec<Segment>) -> Result<Expr, ParseError> {
        loop {
            match self.peek().map(|t| t.kind.clone()) {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.peek().cloned() {
                        Some(Token { kind: Tok::Ident(s), .. }) => {
                            self.pos += 1;
                            segs.push(Segment::Key(s));
                        }
                        Some(Token { kind: Tok::Num(Value::Number(n)), col }) => {
                            // `items.0` reads as an index in dlt's dotted paths
                            self.pos += 1;
                            let i = n.as_i64().ok_or_else(|| self.err_at(col, "expected an integer index".into()))?;
                            segs.push(Segment::Index(i));
                        }
                        Some(t) => {
                            return Err(
                                self.err_at(t.col, format!("expected a key after `.`, found {}", t.kind.describe()))
                            );
                        }
                        None => return Err(self.err_at(self.end_col(), "expected a key after `.`".into())),
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let seg = match self.peek().cloned() {
                        Some(Token { kind: Tok::Num(Value::Number(n)), col }) => Segment::Index(
                            n.as_i64().ok_or_else(|| self.err_at(col, "expected an integer index".into()))?,
                        ),
                        Some(Token { kind: Tok::Str(s), .. }) => Segment::Key(s),
                        Some(t) => {
                            return Err(self.err_at(
                                t.col,
                                format!("expected an index or a quoted key, found {}", t.kind.describe()),
                            ));
                        }
                        None => return Err(self.err_at(self.end_col(), "expected an index after `[`".into())),
                    };
                    self.pos += 1;
                    match self.peek() {
                        Some(Token { kind: Tok::RBracket, .. }) => self.pos += 1,
                        Some(t) => return Err(self.err_at(t.col, format!("expected `]`, found {}", t.kind.describe()))),
                        None => return Err(self.err_at(self.end_col(), "expected `]`".into())),
                    }
                    segs.push(seg);
                }
                _ => return Ok(Expr::Path(Path(segs))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, doc: Value) -> bool {
        Expr::parse(src).unwrap_or_else(|e| panic!("{e}")).eval_bool(&doc)
    }

    #[test]
    fn seed_stop_condition() {
        let e = "pagination.cursor is not defined";
        assert!(eval(e, json!({"pagination": {"page_size": 100}})));
        assert!(eval(e, json!({})));
        assert!(!eval(e, json!({"pagination": {"cursor": "x"}})));
        // defined, even though null
        assert!(!eval(e, json!({"pagination": {"cursor": null}})));
        assert!(eval("pagination.cursor is null", json!({"pagination": {"cursor": null}})));
        assert!(eval("pagination.cursor is null", json!({})));
        assert!(!eval("pagination.cursor is not null", json!({})));
    }

    #[test]
    fn comparisons_and_logic() {
        let doc =
            json!({"page": 3, "total_pages": 3, "has_more": false, "status": "done", "items": [1, 2], "ratio": 0.5});
        assert!(eval("page == total_pages", doc.clone()));
        assert!(eval("page >= 3 and not has_more", doc.clone()));
        assert!(eval("status == 'done' or page < 1", doc.clone()));
        assert!(eval("(page < 1 or status != \"open\") and items[1] == 2", doc.clone()));
        assert!(eval("items[-1] == 2 and items.0 == 1", doc.clone()));
        assert!(eval("ratio == 0.5 and ratio < 1 and page == 3.0", doc.clone()));
        assert!(eval("$.page > -1e3", doc.clone()));
        assert!(eval("missing != 1", doc.clone()));
        assert!(!eval("missing == null", doc.clone()));
        assert!(!eval("status < 1", doc.clone()));
        assert!(eval("items", doc.clone()));
        assert!(!eval("has_more", doc.clone()));
        assert!(eval("not not items and true and null == null", doc));
        assert!(eval("a.b-c['x y'] == 'z'", json!({"a": {"b-c": {"x y": "z"}}})));
    }

    #[test]
    fn precedence_not_binds_tighter_than_and_and_or() {
        // not a and b == (not a) and b; a or b and c == a or (b and c)
        assert!(!eval("not true and false", json!({})));
        assert!(eval("true or true and false", json!({})));
        assert!(!eval("(true or true) and false", json!({})));
    }

    #[test]
    fn errors_have_positions() {
        let e = Expr::parse("pagination.cursor is not").unwrap_err();
        assert_eq!(e.column, 25);
        assert!(e.message.contains("`defined` or `null`"), "{e}");
        let e = Expr::parse("a = 1").unwrap_err();
        assert_eq!((e.column, e.message.contains("==")), (3, true));
        let e = Expr::parse("(a == 1").unwrap_err();
        assert!(e.message.contains("unclosed `(`"), "{e}");
        assert_eq!(Expr::parse("a == 'x").unwrap_err().column, 6);
        assert_eq!(Expr::parse("a == 1 b").unwrap_err().column, 8);
        assert_eq!(Expr::parse("").unwrap_err().column, 1);
        assert!(Expr::parse("a and").unwrap_err().message.contains("found the end"));
        assert!(Expr::parse("a. == 1").unwrap_err().message.contains("after `.`"));
        assert!(Expr::parse("a == and").unwrap_err().message.contains("keyword `and`"));
    }

    #[test]
    fn paths_are_reported() {
        let e = Expr::parse("a.b is defined and c[0] > 1").unwrap();
        let paths: Vec<String> = e.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(paths, vec!["a.b", "c[0]"]);
    }
}
