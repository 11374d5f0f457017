//! The services search of `ListServices` (the dashboard's search box and
//! `launch services --tag`) evaluated by the database: the tag filters and
//! the search terms become one `WHERE` over the services that are not
//! retired, so a search reads only the page of rows it shows and a count,
//! not every service's tags. Terms are ANDed; every prefix test is
//! `substr(x, 1, length(p)) = p`, which means the same on SQLite and
//! PostgreSQL and has no wildcards (LIKE differs in case between the two,
//! and `%` or `_` typed in the search would be patterns). A term holding a
//! NUL matches nothing (PostgreSQL refuses NUL in text, and no name or tag
//! has one).
//!
//! Also the byte-order bound of a prefix ([`after_prefix`]), which lets the
//! tag vocabulary read a key prefix as an index range.

use launch_core::tags::TagFilter;

use super::{Result, ServiceRow, Store, service_row};

/// One term of a search, lowercased (`tags::Search` parses a query into
/// them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchTerm {
    /// `key:value`: a tag `key` whose value, lowercased, starts with
    /// `value` (empty: any value). `service` and `env` (or `environment`)
    /// are the built-in keys: a prefix of the name or the environment as
    /// written.
    Pair(String, String),
    /// A bare word: a prefix of the name, the environment or a tag key.
    Word(String),
}

impl SearchTerm {
    fn holds_nul(&self) -> bool {
        match self {
            SearchTerm::Pair(key, value) => key.contains('\0') || value.contains('\0'),
            SearchTerm::Word(word) => word.contains('\0'),
        }
    }
}

/// A `WHERE` over `services s` and its text parameters, numbered `$1…`.
#[derive(Default)]
struct Conditions {
    sql: String,
    binds: Vec<String>,
}

impl Conditions {
    fn bind(&mut self, value: &str) -> String {
        self.binds.push(value.to_owned());
        format!("${}", self.binds.len())
    }

    /// Who has a tag passing `filter` (`launch services --tag`, checked by
    /// `TagFilter::parse`): `key=value` exactly, or the key and value by
    /// prefix while typed.
    fn filter(&mut self, filter: &TagFilter) {
        let key = self.bind(&filter.key);
        let key_test = if filter.prefix && filter.value.is_none() {
            format!("substr(t.key, 1, length({key})) = {key}")
        } else {
            format!("t.key = {key}")
        };
        let value_test = match &filter.value {
            None => String::new(),
            Some(value) => {
                let value = self.bind(value);
                if filter.prefix {
                    format!(" AND substr(t.value, 1, length({value})) = {value}")
                } else {
                    format!(" AND t.value = {value}")
                }
            }
        };
        self.sql.push_str(&format!(
            " AND {}",
            has_tag(&format!("{key_test}{value_test}"))
        ));
    }

    /// Who `term` matches. Tag values are ASCII (`launch_core::tags`), so
    /// SQL's `lower` is Rust's `to_lowercase` on them.
    fn term(&mut self, term: &SearchTerm) {
        let test = match term {
            SearchTerm::Pair(key, value) => match key.as_str() {
                "service" => prefix("s.service", &self.bind(value)),
                "env" | "environment" => prefix("s.environment", &self.bind(value)),
                _ => {
                    let (key, value) = (self.bind(key), self.bind(value));
                    has_tag(&format!(
                        "t.key = {key} AND {}",
                        prefix("lower(t.value)", &value)
                    ))
                }
            },
            SearchTerm::Word(word) => {
                let word = self.bind(word);
                format!(
                    "({} OR {} OR {})",
                    prefix("s.service", &word),
                    prefix("s.environment", &word),
                    has_tag(&prefix("t.key", &word))
                )
            }
        };
        self.sql.push_str(&format!(" AND {test}"));
    }

    /// `SELECT {columns} FROM services s` with these conditions, then `rest`.
    fn select(&self, columns: &str, rest: &str) -> String {
        format!(
            "SELECT {columns} FROM services s WHERE s.retired = 0{} {rest}",
            self.sql
        )
    }

    /// How many parameters are bound so far.
    fn len(&self) -> usize {
        self.binds.len()
    }

    fn query<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        self.binds
            .iter()
            .fold(sqlx::query(sql), |query, bind| query.bind(bind.as_str()))
    }
}

/// `column` starts with the text parameter `bind`.
fn prefix(column: &str, bind: &str) -> String {
    format!("substr({column}, 1, length({bind})) = {bind}")
}

/// The service has a tag `t` passing `test`: a look-up of the service's
/// own tags by the table's key (service, environment, key).
fn has_tag(test: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM service_tags t WHERE t.service = s.service AND t.environment = s.environment AND {test})"
    )
}

impl Store {
    /// The services not retired whose tags pass every filter and that every
    /// search term matches (AND), `limit` of them (`None`: all) after
    /// `offset` in (service, environment) order, and how many match in all:
    /// the page's rows and a count, nothing else read.
    pub async fn services_found(
        &self,
        filters: &[TagFilter],
        terms: &[SearchTerm],
        offset: u32,
        limit: Option<u32>,
    ) -> Result<(Vec<ServiceRow>, u64)> {
        if terms.iter().any(SearchTerm::holds_nul) {
            return Ok((Vec::new(), 0));
        }
        let mut conditions = Conditions::default();
        for filter in filters {
            conditions.filter(filter);
        }
        for term in terms {
            conditions.term(term);
        }
        let (limit_at, offset_at) = (conditions.len() + 1, conditions.len() + 2);
        let sql = conditions.select(
            "s.*",
            &format!("ORDER BY s.service, s.environment LIMIT ${limit_at} OFFSET ${offset_at}"),
        );
        let rows: Vec<ServiceRow> = conditions
            .query(&sql)
            .bind(limit.map_or(i64::MAX, i64::from))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(service_row)
            .collect();
        // A short page that is not past the end says the count itself.
        let short = limit.is_none_or(|limit| rows.len() < limit as usize);
        if short && (!rows.is_empty() || offset == 0) {
            let matched = u64::from(offset) + rows.len() as u64;
            return Ok((rows, matched));
        }
        let sql = conditions.select("COUNT(*)", "");
        let matched: i64 = conditions
            .query(&sql)
            .fetch_one(&self.pool)
            .await
            .map(|row| {
                use sqlx::Row;
                row.get(0)
            })?;
        Ok((rows, matched as u64))
    }

    /// The `(service, environment)` pairs, not retired, whose tags pass
    /// every filter (AND), in order; every service when `filters` is empty.
    pub async fn services_matching_tags(
        &self,
        filters: &[TagFilter],
    ) -> Result<Vec<(String, String)>> {
        let (rows, _) = self.services_found(filters, &[], 0, None).await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.service, row.environment))
            .collect())
    }
}

/// The least string after every string that starts with `prefix`, in byte
/// order: keys starting with `prefix` are exactly those `>= prefix` and
/// `< after_prefix(prefix)`. `None` when there is none (an empty prefix, or
/// one of U+10FFFF only): no upper bound.
pub(super) fn after_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // UTF-8 keeps code point order, so the next code point is the next
        // byte sequence; surrogates are no chars and are skipped.
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
