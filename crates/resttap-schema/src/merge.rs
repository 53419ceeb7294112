//! dlt's merge strategies and the column hints that steer a merge (`merge_key`, `hard_delete`,
//! `dedup_sort`), as typed values: the configuration parses them once, the normalizer derives
//! row ids from them and each destination applies them.

/// `write_disposition: {disposition: merge, strategy: ...}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MergeStrategy {
    /// dlt's default: older rows with a key the load brings (primary or merge key) are deleted,
    /// the load's rows inserted. Root `_dlt_id`s are random.
    #[default]
    DeleteInsert,
    /// Rows are updated in place by primary key, or inserted: root `_dlt_id`s are a hash of
    /// the primary key, so a record keeps its id from load to load.
    Upsert,
    /// Only rows whose primary key the table does not hold yet are inserted.
    InsertOnly,
    /// Slowly changing dimension type 2: every version of a record is kept, with the time span
    /// it was current in; root `_dlt_id`s are a hash of the record.
    Scd2(Scd2),
}

impl MergeStrategy {
    /// dlt's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            MergeStrategy::DeleteInsert => "delete-insert",
            MergeStrategy::Upsert => "upsert",
            MergeStrategy::InsertOnly => "insert-only",
            MergeStrategy::Scd2(_) => "scd2",
        }
    }

    /// Whether root `_dlt_id`s are derived from the data (and nested ones, from them, with dlt's
    /// own hash), rather than random.
    pub fn deterministic_ids(&self) -> bool {
        matches!(self, MergeStrategy::Upsert | MergeStrategy::Scd2(_))
    }

    /// Whether the strategy needs a primary key.
    pub fn needs_primary_key(&self) -> bool {
        matches!(self, MergeStrategy::Upsert | MergeStrategy::InsertOnly)
    }
}

/// The options of `strategy: scd2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scd2 {
    /// `validity_column_names[0]` (normalized): when a version became current.
    pub valid_from: String,
    /// `validity_column_names[1]` (normalized): when it stopped being current; the active
    /// version holds `active_record_timestamp`.
    pub valid_to: String,
    /// What `valid_to` holds while a version is current, in microseconds since the epoch
    /// (`None`: NULL, dlt's default).
    pub active_record_timestamp: Option<i64>,
    /// The time the load's versions start and retired versions end, in microseconds (`None`:
    /// the load's start).
    pub boundary_timestamp: Option<i64>,
    /// `row_version_column_name` (normalized): a column of the record that identifies its
    /// version, used as root `_dlt_id` instead of a hash of the whole record.
    pub row_version_column: Option<String>,
}

impl Default for Scd2 {
    fn default() -> Self {
        Scd2 {
            valid_from: "_dlt_valid_from".into(),
            valid_to: "_dlt_valid_to".into(),
            active_record_timestamp: None,
            boundary_timestamp: None,
            row_version_column: None,
        }
    }
}

/// `dedup_sort`: which of a load's records with one primary key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// The one with the highest value of the column.
    Desc,
    /// The one with the lowest.
    Asc,
}

/// How one resource merges: the strategy and the hints that steer it (names normalized).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSpec {
    pub strategy: MergeStrategy,
    /// `merge_key` (resource or column hint): older rows with a merge key the load brings are
    /// deleted (delete-insert) or, under scd2, only such rows can be retired.
    pub merge_key: Vec<String>,
    /// The column hinted `hard_delete`: a record with it `true` (a bool column) or not null
    /// (any other type) deletes (or, under scd2, retires) the row with its key, and is not
    /// loaded itself.
    pub hard_delete: Option<String>,
    /// The column hinted `dedup_sort`, and the order.
    pub dedup_sort: Option<(String, SortOrder)>,
}
