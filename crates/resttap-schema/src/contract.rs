//! dlt's schema contracts (`schema_contract`), as typed values: what a load may add to a
//! dataset's schema (tables, columns, data types) and what happens to data that would add more.

/// What happens when data would change the schema in one respect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContractMode {
    /// The schema grows (dlt's default).
    #[default]
    Evolve,
    /// The load fails, before anything is committed.
    Freeze,
    /// The record (or nested row) that would change it is dropped, with its nested rows.
    DiscardRow,
    /// The value that would change it is dropped; the rest of the row is loaded (for a new
    /// table: as `DiscardRow`, the table's rows are dropped).
    DiscardValue,
}

impl ContractMode {
    /// dlt's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ContractMode::Evolve => "evolve",
            ContractMode::Freeze => "freeze",
            ContractMode::DiscardRow => "discard_row",
            ContractMode::DiscardValue => "discard_value",
        }
    }

    /// The mode named `name`.
    pub fn parse(name: &str) -> Option<ContractMode> {
        Some(match name {
            "evolve" => ContractMode::Evolve,
            "freeze" => ContractMode::Freeze,
            "discard_row" => ContractMode::DiscardRow,
            "discard_value" => ContractMode::DiscardValue,
            _ => return None,
        })
    }

    /// Every mode's name.
    pub const NAMES: [&'static str; 4] = ["evolve", "freeze", "discard_row", "discard_value"];
}

/// A resource's `schema_contract`, expanded (keys not given evolve; a mode alone applies to all
/// three). dlt applies it to the root table and, through it, to the nested tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaContract {
    /// A table the dataset does not have (the root table on the first load, a nested table
    /// the data brings later).
    pub tables: ContractMode,
    /// A column a table does not have (a column that only ever held nulls is not there).
    pub columns: ContractMode,
    /// A value that does not fit its column's type (which would make a variant column).
    pub data_type: ContractMode,
}

impl SchemaContract {
    /// `mode` for tables, columns and data types alike.
    pub fn all(mode: ContractMode) -> Self {
        SchemaContract { tables: mode, columns: mode, data_type: mode }
    }

    /// Whether it lets everything evolve (then nothing needs checking).
    pub fn evolves(&self) -> bool {
        *self == SchemaContract::default()
    }
}
