//! dlt's merge strategies as SQL, once for every SQL destination.
//!
//! A destination describes where a load's rows and the dataset's older rows are ([`Rows`]: in
//! DuckDB both sit in the dataset's table, told apart by row id; in PostgreSQL the load's rows
//! are in a staging table); [`plan`] returns the statements that apply a resource's strategy,
//! in order, and the destination runs them inside its commit's transaction. The statements only
//! delete or update: the load's rows that survive are already in place (DuckDB) or moved in
//! by the destination afterwards (PostgreSQL).
//!
//! What each strategy does, with dlt 1.31's behaviour where it is defined (its SQL in
//! `dlt/destinations/sql_jobs.py`, checked on DuckDB and PostgreSQL):
//!
//! - **delete-insert**: the load's records are de-duplicated by primary key (the highest
//!   `dedup_sort` value wins, else the last record); older rows whose primary key *or* merge key
//!   the load brings are deleted with their nested rows; records flagged `hard_delete` are
//!   deleted and not inserted.
//! - **upsert**: the same by primary key alone (dlt ignores `merge_key` here); root ids are the
//!   key's hash, so a record keeps its `_dlt_id`, and its nested rows are those it brings now.
//!   Unlike dlt, a new record flagged `hard_delete` is not inserted, the nested rows of the row
//!   it replaced go even when the key's JSON type changed (dlt leaves them orphaned), and a key
//!   that comes twice is de-duplicated as under delete-insert (dlt keeps an arbitrary copy on
//!   DuckDB and fails on PostgreSQL).
//! - **insert-only**: records whose primary key the table holds are dropped with their nested
//!   rows (dlt inserts such nested rows anyway, as orphans or extra list positions).
//! - **scd2**: every current version (`valid_to` NULL or `active_record_timestamp`) whose
//!   row hash (or row version) the load does not bring is retired (`valid_to` = the load's
//!   boundary), restricted to the merge keys the load brings when there is a merge key; the
//!   load's records already current are dropped; nested rows are inserted once per `_dlt_id`
//!   (a record that comes back shares its earlier version's nested rows, as in dlt).
//!   `hard_delete` and `dedup_sort` do nothing here, as in dlt.
//!
//! Under upsert and insert-only a key that comes twice in one load with nested rows cannot be
//! resolved (the copies' nested rows have the same ids): the load fails with
//! [`Step::FailIf`]'s message and the dataset is left as it was.

use resttap_normalize::{RowIds, Validity};
use resttap_schema::merge::{MergeSpec, MergeStrategy, SortOrder};
use resttap_schema::{DataType, Table, cols};

use crate::sql::{ident, literal, timestamp_literal};
use crate::{LoadError, LoadPlan, ResourceLoad};

/// How the normalizer makes root ids, and scd2's validity values, for a resource merging with
/// `spec` in load `load_id` (`merging`: its write disposition is `merge`).
pub fn row_ids(spec: &MergeSpec, merging: bool, load_id: &str) -> (RowIds, Option<Validity>) {
    match &spec.strategy {
        _ if !merging => (RowIds::Random, None),
        MergeStrategy::Upsert | MergeStrategy::InsertOnly => (RowIds::KeyHash, None),
        MergeStrategy::Scd2(s) => (
            if s.row_version_column.is_some() { RowIds::Random } else { RowIds::RowHash },
            Some(Validity {
                from_column: s.valid_from.clone(),
                to_column: s.valid_to.clone(),
                from: s.boundary_timestamp.unwrap_or_else(|| crate::dlt::load_time_micros(load_id)),
                to: s.active_record_timestamp,
            }),
        ),
        MergeStrategy::DeleteInsert => (RowIds::Random, None),
    }
}

/// Which rows of a table a statement deletes or updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Those the dataset held when the load began.
    Old,
    /// Those this load wrote.
    New,
}

/// The table a `DELETE` or `UPDATE` names, and the condition (over alias `d`) that keeps it
/// to one side's rows, if the table holds both.
#[derive(Debug, Clone)]
pub struct Target {
    pub table: String,
    pub filter: Option<String>,
}

impl Target {
    /// The `WHERE` condition picking this side's rows that match `cond`.
    fn matching(&self, cond: &str) -> String {
        match &self.filter {
            Some(f) => format!("{f} AND {cond}"),
            None => cond.to_string(),
        }
    }
}

/// Where a destination keeps a load's rows and the dataset's older rows.
pub trait Rows {
    /// A `FROM` item with the rows of `table` the dataset held when the load began, or `None`
    /// when the dataset had no such table.
    fn older(&self, table: &str) -> Option<String>;
    /// A `FROM` item with this load's rows of `table`, with their position in the order they
    /// were written as column [`POSITION`], or `None` when the load wrote none.
    fn loaded(&self, table: &str) -> Option<String>;
    /// The target of a statement on `side`'s rows of `table` (`None`: it has none).
    fn target(&self, table: &str, side: Side) -> Option<Target>;
    /// The expression for a row's position in a target (`rowid`, `ctid`), comparable with
    /// [`POSITION`] of [`Rows::loaded`].
    fn position(&self) -> &'static str;
}

/// The column of [`Rows::loaded`] that holds a row's position.
pub const POSITION: &str = "_resttap_pos";

/// One statement of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run it; `dropped` names the table when it deletes rows this load wrote (the load's
    /// report counts rows inserted). `heavy`: its memory grows with the tables (a join of older
    /// rows with the load's keys, deletes scattered over them), and the destination may give it
    /// more first ([`Sql::before_heavy`]); counts and samples are never heavy (a destination's
    /// joins spill to disk within its load's memory).
    Run { sql: String, context: String, dropped: Option<String>, heavy: bool },
    /// Run `steps` when `count` (a `SELECT count(*)`) is above zero, else `otherwise`.
    When { count: String, context: String, steps: Vec<Step>, otherwise: Vec<Step> },
    /// Fail the load with `message` followed by the first value `sample` selects, if any.
    FailIf { sample: String, context: String, message: String },
}

/// The statements that apply `res`'s merge, in load `load`, to `tables` (its root table first,
/// then its nested tables, parents before children, as the load's schema lists them).
pub fn plan(res: &ResourceLoad, load: &LoadPlan, tables: &[&Table], rows: &dyn Rows) -> Vec<Step> {
    let Some(root) = tables.first() else { return Vec::new() };
    let Some(new_root) = rows.loaded(&root.name) else { return Vec::new() };
    // no key came twice when the resource's keys only rose (the normalizer saw them) and no
    // other resource of the load wrote its table
    let known_unique =
        res.keys_unique && load.resources.iter().filter(|other| other.root_table == res.root_table).count() == 1;
    let m = Merge { res, root, tables, rows, new_root, load_time: crate::dlt::load_time_micros(&load.load_id) };
    match &res.merge.strategy {
        MergeStrategy::Scd2(s) => m.scd2(s),
        strategy => {
            let upsert_like = matches!(strategy, MergeStrategy::Upsert | MergeStrategy::InsertOnly);
            if res.primary_key.is_empty() && (upsert_like || res.merge.merge_key.is_empty()) {
                // no key: append (the configuration refuses upsert and insert-only without one)
                return Vec::new();
            }
            let mut steps = Vec::new();
            if !res.primary_key.is_empty() && !known_unique {
                steps.extend(m.dedup(upsert_like));
            }
            match strategy {
                MergeStrategy::InsertOnly => steps.extend(m.drop_known()),
                MergeStrategy::Upsert => steps.extend(m.delete_older(&res.primary_key, &[])),
                _ => steps.extend(m.delete_older(&res.primary_key, &res.merge.merge_key)),
            }
            steps.extend(m.hard_deletes());
            steps
        }
    }
}

struct Merge<'a> {
    res: &'a ResourceLoad,
    root: &'a Table,
    tables: &'a [&'a Table],
    rows: &'a dyn Rows,
    new_root: String,
    /// The load's time (scd2's default boundary).
    load_time: i64,
}

fn equal(keys: &[String], a: &str, b: &str) -> String {
    keys.iter().map(|k| format!("{a}.{k} = {b}.{k}", k = ident(k))).collect::<Vec<_>>().join(" AND ")
}

impl Merge<'_> {
    fn ctx(&self, what: &str) -> String {
        format!("{what} for resource {} (table {})", self.res.resource, self.root.name)
    }

    fn nested(&self) -> impl Iterator<Item = &&Table> {
        self.tables.iter().skip(1)
    }

    /// `DELETE` of `side`'s rows of `table` matching `cond` (over alias `d`).
    fn delete(&self, table: &str, side: Side, cond: &str, context: String) -> Option<Step> {
        self.delete_as(table, side, cond, context, true)
    }

    /// [`Merge::delete`], saying whether the statement is heavy ([`Step::Run`]).
    fn delete_as(&self, table: &str, side: Side, cond: &str, context: String, heavy: bool) -> Option<Step> {
        let t = self.rows.target(table, side)?;
        let dropped = (side == Side::New).then(|| table.to_string());
        Some(Step::Run {
            sql: format!("DELETE FROM {} AS d WHERE {}", t.table, t.matching(cond)),
            context,
            dropped,
            heavy,
        })
    }

    /// `SELECT {pick}` of the rows of the load's relation `rel` that are not the first of their
    /// `partition` in `order`.
    fn losers(rel: &str, pick: &str, partition: &str, order: &str) -> String {
        format!(
            "SELECT {pick} FROM (SELECT {POSITION}, {id}, row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS _resttap_rank FROM {rel} s) r WHERE _resttap_rank > 1",
            id = ident(cols::ID)
        )
    }

    /// Deletes the load's rows of `table` at the positions `losers` selects.
    fn delete_at(&self, table: &str, losers: &str, context: String) -> Option<Step> {
        self.delete(table, Side::New, &format!("d.{} IN ({losers})", self.rows.position()), context)
    }

    /// `SELECT count(*)` of the groups of `key` with more than one of the load's rows in `rel`.
    fn repeated(rel: &str, key: &str) -> String {
        format!("SELECT count(*) FROM (SELECT 1 FROM {rel} s GROUP BY {key} HAVING count(*) > 1) c")
    }

    /// Deletes the nested rows (found by `_dlt_root_id`) of the root rows `ids` selects, on
    /// `side`; then the root rows `root_cond` picks.
    fn delete_with_nested(&self, side: Side, ids: &str, root_cond: &str, what: &str) -> Vec<Step> {
        let root_id = ident(cols::ROOT_ID);
        let mut steps: Vec<Step> = self
            .nested()
            .filter_map(|t| {
                let cond = format!("d.{root_id} IN ({ids})");
                self.delete(&t.name, side, &cond, self.ctx(&format!("{what} (nested rows in {})", t.name)))
            })
            .collect();
        steps.extend(self.delete(&self.root.name, side, root_cond, self.ctx(what)));
        steps
    }

    /// The order in which a key's copies compete: `dedup_sort` (nulls last), then the last
    /// written first.
    fn rank(&self) -> String {
        let sort = match &self.res.merge.dedup_sort {
            Some((c, SortOrder::Desc)) if self.root.column(c).is_some() => format!("{} DESC NULLS LAST, ", ident(c)),
            Some((c, SortOrder::Asc)) if self.root.column(c).is_some() => format!("{} ASC NULLS LAST, ", ident(c)),
            _ => String::new(),
        };
        format!("{sort}{POSITION} DESC")
    }

    /// The load's records with one primary key come down to one.
    fn dedup(&self, deterministic_ids: bool) -> Vec<Step> {
        let pk = self.res.primary_key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ");
        let (id, root_id) = (ident(cols::ID), ident(cols::ROOT_ID));
        let n = &self.new_root;
        let losers = |pick: &str| Self::losers(n, pick, &pk, &self.rank());
        let mut steps = Vec::new();
        if deterministic_ids {
            // the copies' nested rows share their ids: which belong to the winner is unknowable
            let duplicated = format!("SELECT {id} FROM {n} s GROUP BY {id} HAVING count(*) > 1");
            for t in self.nested() {
                if let Some(nt) = self.rows.loaded(&t.name) {
                    steps.push(Step::FailIf {
                        sample: format!(
                            "SELECT DISTINCT {} FROM {n} s WHERE s.{id} IN ({duplicated}) AND s.{id} IN (SELECT {root_id} FROM {nt} x) LIMIT 1",
                            key_text(&self.res.primary_key, "s")
                        ),
                        context: self.ctx("looking for duplicate keys"),
                        message: format!(
                            "resource `{}` (merge strategy {}) brought a primary key twice in this load, with nested rows in {}: the strategy derives `_dlt_id`s from the key, so the copies' nested rows cannot be told apart (dlt fails on PostgreSQL and keeps either on DuckDB). Use strategy delete-insert for this resource, or have the API return each record once. The key",
                            self.res.resource,
                            self.res.merge.strategy.name(),
                            t.name
                        ),
                    });
                }
            }
        } else {
            let loser_ids = losers(&id);
            for t in self.nested() {
                let cond = format!("d.{root_id} IN ({loser_ids})");
                let what = self.ctx(&format!("dropping nested rows of duplicates from {}", t.name));
                steps.extend(self.delete(&t.name, Side::New, &cond, what));
            }
        }
        steps.extend(self.delete_at(&self.root.name, &losers(POSITION), self.ctx("collapsing duplicate keys")));
        vec![Step::When {
            count: Self::repeated(n, &pk),
            context: self.ctx("looking for duplicate keys"),
            steps,
            otherwise: Vec::new(),
        }]
    }

    /// Older rows whose primary key, or merge key, the load brings go, with their nested rows.
    fn delete_older(&self, pk: &[String], merge_key: &[String]) -> Vec<Step> {
        let Some(old_root) = self.rows.older(&self.root.name) else { return Vec::new() };
        let n = &self.new_root;
        let matches: Vec<String> = [pk, merge_key]
            .into_iter()
            .filter(|k| !k.is_empty())
            .map(|k| format!("EXISTS (SELECT 1 FROM {n} s WHERE {})", equal(k, "d", "s")))
            .collect();
        let cond = matches.join(" OR ");
        let cond = if matches.len() > 1 { format!("({cond})") } else { cond };
        let ids = format!("SELECT d.{} FROM {old_root} d WHERE {cond}", ident(cols::ID));
        let some = self.delete_with_nested(Side::Old, &ids, &cond, "deleting replaced records");
        // When the load replaces every older record (the seed's scheduled run: each listing in
        // full), the older rows of every table go by the side alone: no join of the nested
        // tables with the replaced ids, whose state grew with the tables (1,000,000 records:
        // 338 MB peak RSS in the commit, 198 MB with 96 MB for DuckDB).
        let all: Vec<Step> = self
            .tables
            .iter()
            .rev()
            .filter_map(|t| {
                let context = self.ctx("deleting replaced records (all older rows)");
                self.delete_as(&t.name, Side::Old, "TRUE", context, false)
            })
            .collect();
        vec![Step::When {
            count: format!("SELECT count(*) FROM {old_root} d WHERE NOT {cond}"),
            context: self.ctx("counting older records the load does not replace"),
            steps: some,
            otherwise: all,
        }]
    }

    /// insert-only: the load's records whose key the table holds are dropped.
    fn drop_known(&self) -> Vec<Step> {
        let Some(old_root) = self.rows.older(&self.root.name) else { return Vec::new() };
        let cond = format!("EXISTS (SELECT 1 FROM {old_root} o WHERE {})", equal(&self.res.primary_key, "o", "d"));
        let ids = format!("SELECT d.{} FROM {} d WHERE {cond}", ident(cols::ID), self.new_root);
        self.delete_with_nested(Side::New, &ids, &cond, "dropping records the table holds")
    }

    /// Records flagged `hard_delete` are not loaded (their keys' older rows went with the rest).
    fn hard_deletes(&self) -> Vec<Step> {
        let Some(flagged) = self.flagged("d") else { return Vec::new() };
        let ids = format!("SELECT d.{} FROM {} d WHERE {flagged}", ident(cols::ID), self.new_root);
        self.delete_with_nested(Side::New, &ids, &flagged, "dropping records flagged hard_delete")
    }

    /// dlt's test for a deleted record: `true` in a bool column, not null in any other.
    fn flagged(&self, alias: &str) -> Option<String> {
        let c = self.res.merge.hard_delete.as_deref()?;
        let col = self.root.column(c)?;
        Some(match col.data_type {
            DataType::Bool => format!("{alias}.{} = TRUE", ident(c)),
            _ => format!("{alias}.{} IS NOT NULL", ident(c)),
        })
    }

    fn scd2(&self, s: &resttap_schema::merge::Scd2) -> Vec<Step> {
        let n = &self.new_root;
        let id = ident(cols::ID);
        let key = ident(s.row_version_column.as_deref().unwrap_or(cols::ID));
        let vt = ident(&s.valid_to);
        let active = |a: &str| match s.active_record_timestamp {
            None => format!("{a}.{vt} IS NULL"),
            Some(t) => format!("{a}.{vt} = {}", timestamp_literal(t)),
        };
        let mut steps = Vec::new();
        // the same version twice in the load: one stays (under the row hash the copies and
        // their nested rows are the same)
        let last_first = format!("{POSITION} DESC");
        let mut dedup = Vec::new();
        let losers = Self::losers(n, POSITION, &key, &last_first);
        dedup.extend(self.delete_at(&self.root.name, &losers, self.ctx("collapsing repeated versions")));
        dedup.extend(self.nested().filter_map(|t| {
            let losers = Self::losers(&self.rows.loaded(&t.name)?, POSITION, &id, &last_first);
            self.delete_at(&t.name, &losers, self.ctx(&format!("collapsing repeated nested rows in {}", t.name)))
        }));
        steps.push(Step::When {
            count: Self::repeated(n, &key),
            context: self.ctx("looking for repeated versions"),
            steps: dedup,
            otherwise: Vec::new(),
        });
        if let Some(old_root) = self.rows.older(&self.root.name) {
            // current versions the load does not bring are retired
            if let Some(t) = self.rows.target(&self.root.name, Side::Old) {
                let scope = if self.res.merge.merge_key.is_empty() {
                    String::new()
                } else {
                    format!(" AND EXISTS (SELECT 1 FROM {n} s WHERE {})", equal(&self.res.merge.merge_key, "d", "s"))
                };
                let boundary = timestamp_literal(s.boundary_timestamp.unwrap_or(self.load_time));
                steps.push(Step::Run {
                    sql: format!(
                        "UPDATE {} AS d SET {vt} = {boundary} WHERE {}",
                        t.table,
                        t.matching(&format!(
                            "{} AND NOT EXISTS (SELECT 1 FROM {n} s WHERE s.{key} = d.{key}){scope}",
                            active("d")
                        ))
                    ),
                    context: self.ctx("retiring versions"),
                    dropped: None,
                    heavy: true,
                });
            }
            // the load's versions that are current already are not inserted again
            let cond = format!("EXISTS (SELECT 1 FROM {old_root} o WHERE o.{key} = d.{key} AND {})", active("o"));
            steps.extend(self.delete(&self.root.name, Side::New, &cond, self.ctx("dropping current versions")));
        }
        let parent_id = ident(cols::PARENT_ID);
        for t in self.nested() {
            if let Some(old) = self.rows.older(&t.name) {
                // nested rows are inserted once per id: a version that comes back shares them
                let cond = format!("EXISTS (SELECT 1 FROM {old} o WHERE o.{id} = d.{id})");
                steps.extend(self.delete(
                    &t.name,
                    Side::New,
                    &cond,
                    self.ctx(&format!("dropping known nested rows of {}", t.name)),
                ));
            }
            if s.row_version_column.is_some() {
                // random ids: the nested rows of versions not inserted are left without a parent
                let parent = t.parent.as_deref().unwrap_or(&self.root.name);
                let mut found = Vec::new();
                for rel in [self.rows.loaded(parent), self.rows.older(parent)].into_iter().flatten() {
                    found.push(format!("NOT EXISTS (SELECT 1 FROM {rel} p WHERE p.{id} = d.{parent_id})"));
                }
                if !found.is_empty() {
                    let what = self.ctx(&format!("dropping nested rows of versions not inserted from {}", t.name));
                    steps.extend(self.delete(&t.name, Side::New, &found.join(" AND "), what));
                }
            }
        }
        steps
    }
}

/// The text of a key's values, for messages: `id=5`.
fn key_text(keys: &[String], alias: &str) -> String {
    let parts: Vec<String> =
        keys.iter().map(|k| format!("{} || '=' || CAST({alias}.{} AS VARCHAR)", literal(k), ident(k))).collect();
    parts.join(" || ', ' || ")
}

/// Runs statements for [`execute`].
pub trait Sql {
    /// Runs a statement; the rows it changed.
    fn run(&self, sql: &str, context: &str) -> Result<u64, LoadError>;
    /// The single number a `SELECT count(*)` returns.
    fn count(&self, sql: &str, context: &str) -> Result<u64, LoadError>;
    /// The first row's first column of a query returning text, if it returns a row.
    fn sample(&self, sql: &str, context: &str) -> Result<Option<String>, LoadError>;
    /// Called before each heavy statement ([`Step::Run`]); DuckDB raises its memory limit for
    /// the rest of the commit at the first.
    fn before_heavy(&self) -> Result<(), LoadError> {
        Ok(())
    }
}

/// Runs `steps` in order; returns the rows they deleted of this load's, per table.
pub fn execute(steps: &[Step], sql: &dyn Sql) -> Result<std::collections::HashMap<String, u64>, LoadError> {
    let mut dropped = std::collections::HashMap::new();
    execute_into(steps, sql, &mut dropped)?;
    Ok(dropped)
}

fn execute_into(
    steps: &[Step],
    sql: &dyn Sql,
    dropped: &mut std::collections::HashMap<String, u64>,
) -> Result<(), LoadError> {
    for step in steps {
        match step {
            Step::Run { sql: text, context, dropped: table, heavy } => {
                if *heavy {
                    sql.before_heavy()?;
                }
                let n = sql.run(text, context)?;
                if let Some(t) = table {
                    *dropped.entry(t.clone()).or_default() += n;
                }
            }
            Step::When { count, context, steps, otherwise } => {
                let chosen = if sql.count(count, context)? > 0 { steps } else { otherwise };
                execute_into(chosen, sql, dropped)?;
            }
            Step::FailIf { sample, context, message } => {
                if let Some(key) = sql.sample(sample, context)? {
                    return Err(LoadError::Data { context: context.clone(), message: format!("{message} {key}") });
                }
            }
        }
    }
    Ok(())
}
