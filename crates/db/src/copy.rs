//! Copies an SQLite database into an empty PostgreSQL one, table by table
//! and row by row, in one PostgreSQL transaction: `gantry migrate-store`.
//!
//! The target's tables must exist already (each store creates its own when
//! opened, so the caller opens them all first) and be empty, but for the
//! `seeded` tables, whose rows the stores write when they open (a schema
//! version): those rows are replaced by the source's. A copy is never
//! merged into data. Values are copied as they are stored —
//! SecureString ciphertexts stay encrypted under the same master key — and
//! identity columns continue after the largest copied value.

use sqlx::any::AnyRow;
use sqlx::{Row as _, TypeInfo as _, ValueRef as _};

use crate::{Backend, Db, DbError, values};

/// Rows per page read from SQLite, and at most this many bound values per
/// PostgreSQL statement (its limit is 65,535).
const PAGE: i64 = 500;
const MAX_BINDS: usize = 30_000;

/// How many rows of each table were copied, by table name.
pub type CopyReport = Vec<(String, u64)>;

/// Copies every table of the SQLite database `from` into the PostgreSQL
/// database `to`; nothing is written unless every table copies.
pub async fn copy_database(from: &Db, to: &Db, seeded: &[&str]) -> Result<CopyReport, DbError> {
    if from.backend() != Backend::Sqlite || to.backend() != Backend::Postgres {
        return Err(DbError::Copy(
            "a store is copied from SQLite to PostgreSQL".to_string(),
        ));
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(from.pool())
    .await?;
    let tables = referenced_first(from, tables).await?;
    let version = from.user_version().await?;
    let mut tx = to.begin_write().await?;
    let mut report = Vec::new();
    for table in &tables {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(from.pool())
                .await?;
        let quoted = ident(table);
        let target: Vec<(String, String, String)> = sqlx::query(
            "SELECT column_name::text, data_type::text, is_identity::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
        if target.is_empty() {
            return Err(DbError::Copy(format!(
                "the target database has no table {table}: it was made by another \
                 gantry version"
            )));
        }
        let mut types = Vec::new();
        for column in &columns {
            let Some((_, data_type, _)) = target.iter().find(|(name, _, _)| name == column) else {
                return Err(DbError::Copy(format!(
                    "the target's table {table} has no column {column}"
                )));
            };
            types.push(data_type.clone());
        }
        let existing: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {quoted}"
        )))
        .fetch_one(&mut *tx)
        .await?;
        if existing > 0 && seeded.contains(&table.as_str()) {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {quoted}")))
                .execute(&mut *tx)
                .await?;
        } else if existing > 0 {
            return Err(DbError::Copy(format!(
                "the target database is not empty (table {table} has {existing} rows): \
                 a store is copied into an empty database only"
            )));
        }
        let list = columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let per_statement = (MAX_BINDS / columns.len().max(1)).max(1);
        let mut copied = 0_u64;
        let mut last_rowid = i64::MIN;
        loop {
            let page: Vec<AnyRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT rowid, {list} FROM {quoted} WHERE rowid > $1 ORDER BY rowid LIMIT {PAGE}"
            )))
            .bind(last_rowid)
            .fetch_all(from.pool())
            .await?;
            let Some(last) = page.last() else { break };
            last_rowid = last.try_get(0)?;
            for rows in page.chunks(per_statement) {
                let sql = format!(
                    "INSERT INTO {quoted} ({list}) VALUES {}",
                    values(1, rows.len(), columns.len())
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in rows {
                    for (i, data_type) in types.iter().enumerate() {
                        insert = bind(insert, row, i + 1, data_type)?;
                    }
                }
                insert.execute(&mut *tx).await?;
            }
            copied += page.len() as u64;
        }
        for (column, _, identity) in &target {
            if identity == "YES" {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), \
                     (SELECT COALESCE(MAX({}), 0) FROM {quoted}) + 1, false)",
                    ident(column)
                )))
                .bind(&quoted)
                .bind(column)
                .execute(&mut *tx)
                .await?;
            }
        }
        report.push((table.clone(), copied));
    }
    sqlx::query(
        "INSERT INTO gantry_user_version (one, version) VALUES (1, $1) \
         ON CONFLICT (one) DO UPDATE SET version = excluded.version",
    )
    .bind(version)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(report)
}

/// The tables ordered so that each comes after the tables its foreign keys
/// reference (SQLite's `pragma_foreign_key_list`), so that every row
/// inserted finds the rows it points at.
async fn referenced_first(from: &Db, tables: Vec<String>) -> Result<Vec<String>, DbError> {
    let mut needs = Vec::new();
    for table in &tables {
        let referenced: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(table)
                .fetch_all(from.pool())
                .await?;
        needs.push((table.clone(), referenced));
    }
    let mut ordered: Vec<String> = Vec::new();
    while !needs.is_empty() {
        let before = needs.len();
        needs.retain(|(table, referenced)| {
            let ready = referenced
                .iter()
                .all(|r| r == table || ordered.contains(r) || !tables.contains(r));
            if ready {
                ordered.push(table.clone());
            }
            !ready
        });
        if needs.len() == before {
            return Err(DbError::Copy(format!(
                "the tables {} reference each other in a cycle",
                needs
                    .iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(ordered)
}

/// A table's or column's name as a quoted identifier (names come from the
/// source file, which is not trusted to be gantry's own).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the value at `index` of an SQLite row as the target column's type
/// wants it (a NULL typed as the column, so PostgreSQL accepts it).
fn bind<'q>(
    query: Query<'q>,
    row: &AnyRow,
    index: usize,
    data_type: &str,
) -> Result<Query<'q>, DbError> {
    let raw = row.try_get_raw(index)?;
    let null = raw.is_null();
    let kind = raw.type_info().name().to_string();
    Ok(match data_type {
        "bigint" | "integer" | "smallint" => query.bind(if null {
            None
        } else {
            Some(row.try_get::<i64, _>(index)?)
        }),
        "double precision" | "real" => query.bind(if null {
            None
        } else {
            Some(row.try_get::<f64, _>(index)?)
        }),
        "bytea" => query.bind(if null {
            None
        } else if kind == "TEXT" {
            Some(row.try_get::<String, _>(index)?.into_bytes())
        } else {
            Some(row.try_get::<Vec<u8>, _>(index)?)
        }),
        _ => query.bind(if null {
            None
        } else {
            Some(row.try_get::<String, _>(index)?)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table name from the source file is quoted, never run as SQL: a
    /// hostile name copies as a name and drops nothing.
    #[tokio::test]
    async fn a_hostile_table_name_is_copied_as_a_name() {
        let Some(server) = std::env::var("GANTRY_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("skipped: set GANTRY_TEST_POSTGRES (scripts/postgres) to run it");
            return;
        };
        let admin = Db::connect(&server).await.unwrap();
        let name = format!("gantry_copy_{}", std::process::id());
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(admin.pool())
        .await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pool())
            .await
            .unwrap();
        let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
        let hostile = "t\"; DROP TABLE victim; --";
        let dir = tempfile::tempdir().unwrap();
        let from = Db::open_sqlite(&dir.path().join("g.db")).await.unwrap();
        let to = Db::connect(&url).await.unwrap();
        for db in [&from, &to] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE TABLE {} (v TEXT)",
                ident(hostile)
            )))
            .execute(db.pool())
            .await
            .unwrap();
        }
        sqlx::query("CREATE TABLE victim (v TEXT)")
            .execute(to.pool())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {} (v) VALUES ('kept')",
            ident(hostile)
        )))
        .execute(from.pool())
        .await
        .unwrap();
        to.user_version().await.unwrap();
        let report = copy_database(&from, &to, &[]).await.unwrap();
        assert_eq!(report, vec![(hostile.to_string(), 1)]);
        assert!(to.has_table("victim").await.unwrap(), "the name ran as SQL");
        let copied: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT v FROM {}",
            ident(hostile)
        )))
        .fetch_one(to.pool())
        .await
        .unwrap();
        assert_eq!(copied, "kept");
    }
}
