//! The table schema model resttap shares with dlt: data types, tables and columns, dlt's naming
//! convention (`snake_case`, `__` between nested names) and dlt's system columns.

pub mod contract;
pub mod digest;
pub mod merge;
pub mod naming;
pub mod timestamp;

use std::collections::HashMap;
use std::fmt;

/// dlt's data types that resttap produces.
///
/// In dlt's stored schema a type is its name (`data_type`) and, for `decimal`, the column's
/// `precision` and `scale` beside it; serde reads and writes the name only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Text,
    Bigint,
    Double,
    Bool,
    Timestamp,
    Json,
    Date,
    /// A fixed-point number: the hinted precision and scale, each in its absence the
    /// destination's default (38 and 9 on DuckDB and PostgreSQL, as dlt).
    Decimal(Precision),
    /// dlt's `wei`: an integer too large for `bigint` (Ethereum amounts), at the destination's
    /// wei precision (`DECIMAL(38,0)` on DuckDB, `numeric(156,78)` on PostgreSQL, as dlt).
    Wei,
    /// Bytes.
    Binary,
    /// A time of day, to the microsecond, without a time zone.
    Time,
}

/// A decimal column's precision (digits in all) and scale (digits after the point) as hinted;
/// one not hinted is the destination's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Precision {
    pub precision: Option<u16>,
    pub scale: Option<u16>,
}

impl Precision {
    /// dlt's default for a decimal: precision 38, scale 9 (DuckDB, PostgreSQL, Parquet).
    pub const DEFAULT: (u16, u16) = (38, 9);

    /// The precision and scale, each hinted or `default`'s.
    pub fn or(self, default: (u16, u16)) -> (u16, u16) {
        (self.precision.unwrap_or(default.0), self.scale.unwrap_or(default.1))
    }
}

impl DataType {
    /// dlt's name of the type (`text`, `bigint`, ...), also used in variant column names.
    pub fn dlt_name(self) -> &'static str {
        match self {
            DataType::Text => "text",
            DataType::Bigint => "bigint",
            DataType::Double => "double",
            DataType::Bool => "bool",
            DataType::Timestamp => "timestamp",
            DataType::Json => "json",
            DataType::Date => "date",
            DataType::Decimal(_) => "decimal",
            DataType::Wei => "wei",
            DataType::Binary => "binary",
            DataType::Time => "time",
        }
    }

    /// The type dlt names `name` (`complex` is dlt's old name of `json`), with `precision` and
    /// `scale` for a decimal.
    pub fn from_dlt(name: &str, precision: Precision) -> Option<DataType> {
        Some(match name {
            "text" => DataType::Text,
            "bigint" => DataType::Bigint,
            "double" => DataType::Double,
            "bool" => DataType::Bool,
            "timestamp" => DataType::Timestamp,
            "json" | "complex" => DataType::Json,
            "date" => DataType::Date,
            "decimal" => DataType::Decimal(precision),
            "wei" => DataType::Wei,
            "binary" => DataType::Binary,
            "time" => DataType::Time,
            _ => return None,
        })
    }

    /// The precision and scale a decimal column was declared with.
    pub fn precision(self) -> Precision {
        match self {
            DataType::Decimal(p) => p,
            _ => Precision::default(),
        }
    }
}

impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.dlt_name())
    }
}

impl<'de> serde::Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        DataType::from_dlt(&name, Precision::default())
            .ok_or_else(|| serde::de::Error::custom(format!("unknown data type `{name}`")))
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |n: Option<u16>| n.map_or("default".to_string(), |n| n.to_string());
        match self {
            DataType::Decimal(p) if *p != Precision::default() => {
                write!(f, "decimal({}, {})", show(p.precision), show(p.scale))
            }
            _ => f.write_str(self.dlt_name()),
        }
    }
}

/// dlt's system columns.
pub mod cols {
    pub const LOAD_ID: &str = "_dlt_load_id";
    pub const ID: &str = "_dlt_id";
    pub const ROOT_ID: &str = "_dlt_root_id";
    pub const PARENT_ID: &str = "_dlt_parent_id";
    pub const LIST_IDX: &str = "_dlt_list_idx";
    pub const VALUE: &str = "value";
}

/// How rows reach a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteDisposition {
    #[default]
    Append,
    Replace,
    Merge,
}

/// How a lake stores a table (dlt's `table_format`); other destinations have one format only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// The destination's own: plain Parquet files on a filesystem destination.
    #[default]
    Native,
    /// A Delta Lake table.
    Delta,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_key: bool,
}

/// One table: its columns in order, and where it sits in the tree of nested tables.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub name: String,
    /// The parent table, for nested tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub columns: Vec<Column>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Table {
    /// An empty table.
    pub fn new(name: impl Into<String>, parent: Option<String>) -> Self {
        Table { name: name.into(), parent, columns: Vec::new(), index: HashMap::new() }
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.index.get(name).map(|i| &self.columns[*i])
    }

    /// Adds a column at the end; returns its position. An existing column is left as it is.
    pub fn add_column(&mut self, col: Column) -> usize {
        if let Some(i) = self.index.get(&col.name) {
            return *i;
        }
        self.index.insert(col.name.clone(), self.columns.len());
        self.columns.push(col);
        self.columns.len() - 1
    }

    /// Rebuilds the name index (after deserializing).
    pub fn reindex(&mut self) {
        self.index = self.columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
    }

    /// Whether the table is nested under another.
    pub fn is_nested(&self) -> bool {
        self.parent.is_some()
    }
}

/// Tables by name, in the order they were first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Schema {
    pub tables: Vec<Table>,
}

impl Schema {
    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The table named `name`, mutable.
    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.name == name)
    }

    /// Tables nested (at any depth) under `root`, as known to this schema.
    pub fn descendants<'a>(&'a self, root: &'a str) -> impl Iterator<Item = &'a Table> + 'a {
        self.tables.iter().filter(move |t| {
            let mut cur = t.parent.as_deref();
            while let Some(p) = cur {
                if p == root {
                    return true;
                }
                cur = self.table(p).and_then(|pt| pt.parent.as_deref());
            }
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_follow_parents() {
        let mut s = Schema::default();
        s.tables.push(Table::new("a", None));
        s.tables.push(Table::new("a__b", Some("a".into())));
        s.tables.push(Table::new("a__b__c", Some("a__b".into())));
        s.tables.push(Table::new("x__y", Some("x".into())));
        let names: Vec<&str> = s.descendants("a").map(|t| t.name.as_str()).collect();
        assert_eq!(names, vec!["a__b", "a__b__c"]);
    }

    #[test]
    fn columns_keep_order_and_are_unique() {
        let mut t = Table::new("t", None);
        let c = |n: &str| Column { name: n.into(), data_type: DataType::Text, nullable: true, primary_key: false };
        assert_eq!(t.add_column(c("b")), 0);
        assert_eq!(t.add_column(c("a")), 1);
        assert_eq!(t.add_column(c("b")), 0);
        assert_eq!(t.column("a").unwrap().name, "a");
    }
}
