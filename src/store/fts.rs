//! The lexical index: FTS5 over each story's analysed terms ([`crate::lexical`]),
//! written with the story, rebuilt when the analyzer changes, ranked with BM25.
//!
//! Owns: the FTS5 tables, writing and deleting a story's terms, and the lexical
//! queries. Must not: analyse text itself (that is `lexical`).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Store, StoreError};

/// The lexical index: FTS5 over each story's analysed terms ([`crate::lexical`]), keyed
/// by the story's rowid. Written in the same transaction as the story; rebuilt from the
/// stories when the analyzer version changes (or the table is new).
pub(super) fn lexical_schema() -> String {
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS story_terms USING fts5(title, body, \
         tokenize = \"unicode61 remove_diacritics 0 tokenchars '{}'\");",
        crate::lexical::FTS5_TOKENCHARS
    ) + "\nCREATE VIRTUAL TABLE IF NOT EXISTS story_terms_vocab USING fts5vocab(story_terms, 'row');"
}

/// BM25 column weights: a term in the headline counts twice a term in the body.
const BM25_WEIGHTS: &str = "2.0, 1.0";

/// Writes a story's terms; its row must exist (the terms take its rowid). The author
/// (the account a digest item credits: `-sarah guo`, `- Demis Hassabis`) is indexed
/// with the headline: an editor looks a post up by who wrote it.
pub(super) fn insert_terms(
    conn: &Connection,
    id: &str,
    headline: &str,
    author: Option<&str>,
    text: &str,
) -> Result<(), StoreError> {
    let title = match author {
        Some(author) => format!("{headline} {author}"),
        None => headline.to_owned(),
    };
    conn.prepare_cached(
        "INSERT INTO story_terms (rowid, title, body)
         SELECT rowid, ?2, ?3 FROM stories WHERE id = ?1",
    )?
    .execute(params![
        id,
        crate::lexical::index_text(&title),
        crate::lexical::index_text(text)
    ])?;
    Ok(())
}

pub(super) fn delete_terms(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM story_terms WHERE rowid = (SELECT rowid FROM stories WHERE id = ?1)",
    )?
    .execute([id])?;
    Ok(())
}

/// Rebuilds the lexical index from the stories when it was made by another analyzer
/// version, or by a storydex that had none (one transaction: all or nothing).
pub(super) fn ensure_lexical_index(conn: &mut Connection) -> Result<(), StoreError> {
    // The analyzer version and the language data it read: a store opened with other
    // language data (or none) rebuilds its index once.
    let current = crate::lexical::analyzer_stamp();
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'lexical_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if stored.as_deref() == Some(current.as_str()) {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM story_terms", [])?;
    type Row = (String, String, Option<String>, String);
    let stories: Vec<Row> = {
        let mut stmt = tx.prepare("SELECT id, headline, author, text FROM stories")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if !stories.is_empty() {
        tracing::info!(
            stories = stories.len(),
            "lexical index missing or from another analyzer; rebuilding it"
        );
    }
    for (id, headline, author, text) in &stories {
        insert_terms(&tx, id, headline, author.as_deref(), text)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('lexical_version', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [&current],
    )?;
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Rebuilds the lexical index if the analysis changed since it was built (another
    /// [`crate::lexical::use_lexicon`]); a no-op otherwise.
    pub fn refresh_lexical_index(&self) -> Result<(), StoreError> {
        ensure_lexical_index(&mut self.conn())
    }

    /// Stories matching any term of `query`, best BM25 first, with their BM25 score
    /// (higher is better) among those published in `range`.
    pub fn search_lexical(
        &self,
        query: &str,
        count: usize,
        range: crate::domain::DateRange,
        exclude_digest: Option<&str>,
    ) -> Result<Vec<(String, f32)>, StoreError> {
        let Some(expression) = crate::lexical::match_expression(query) else {
            return Ok(Vec::new());
        };
        self.search_match(&expression, count, range, exclude_digest)
    }

    /// Stories matching an FTS5 expression already built by [`crate::lexical`] (the
    /// query's own terms, or their translations), best BM25 first.
    pub fn search_match(
        &self,
        expression: &str,
        count: usize,
        range: crate::domain::DateRange,
        exclude_digest: Option<&str>,
    ) -> Result<Vec<(String, f32)>, StoreError> {
        let (since, until) = range.days();
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT s.id, bm25(story_terms, {BM25_WEIGHTS}) AS rank
             FROM story_terms JOIN stories s ON s.rowid = story_terms.rowid
             WHERE story_terms MATCH ?1
               AND (?2 IS NULL OR s.day >= ?2) AND (?3 IS NULL OR s.day <= ?3)
               AND (?4 IS NULL OR s.digest_id != ?4)
             ORDER BY rank LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![expression, since, until, exclude_digest, count as i64],
            |r| Ok((r.get::<_, String>(0)?, -r.get::<_, f64>(1)? as f32)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many stories there are, and in how many of them each of `terms` occurs.
    pub fn document_frequencies(
        &self,
        terms: &[String],
    ) -> Result<(usize, HashMap<String, usize>), StoreError> {
        let conn = self.conn();
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM stories", [], |r| r.get(0))?;
        let mut stmt = conn.prepare_cached("SELECT doc FROM story_terms_vocab WHERE term = ?1")?;
        let mut out = HashMap::with_capacity(terms.len());
        for term in terms {
            let doc: Option<i64> = stmt.query_row([term], |r| r.get(0)).optional()?;
            out.insert(term.clone(), doc.unwrap_or(0) as usize);
        }
        Ok((total as usize, out))
    }
}
