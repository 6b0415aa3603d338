//! Stored duplicate clusters: each story's cluster, assigned online in publication order
//! inside the transaction that writes the story.
//!
//! Owns: the order stories are assigned in (publication time, then id), finding each
//! story's candidate clusters (the window index for stored stories, the write's own
//! stories by brute force, as they are not indexed until it commits), and re-running the
//! assignment from the earliest story a write touched, so that a late digest, an edited
//! story or a removed one leave exactly the clusters a full recompute would give. The
//! same-event decision itself is [`crate::cluster::choose_cluster`]. Must not: embed.
//!
//! Why the re-run is exact: a story's cluster depends only on stories before it in the
//! order, so everything before the earliest touched story is unchanged, and re-assigning
//! everything from there in order reproduces the full recompute.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use super::rows::{blob_to_vector, story_from_row, STORY_SELECT_COLUMNS};
use super::{Store, StoreError, WindowMeta};
use crate::cluster::{canonical_url, choose_cluster, pair_score, Item, Params};
use crate::domain::DateRange;

/// Sort key of undated stories (archive entries without a date): before every dated one.
pub(crate) const UNDATED_TS: i64 = i64::MIN / 2;

/// Nearest earlier windows looked at per story when looking for its candidate clusters.
const CANDIDATE_WINDOWS: usize = 32;

/// Bumped when the assignment rule changes, so stores recompute their clusters.
const CLUSTER_VERSION: &str = "2";

/// A story as the assignment sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) ts: i64,
    pub(crate) item: Item,
    pub(crate) cluster: Option<String>,
}

impl Member {
    fn key(&self) -> (i64, &str) {
        (self.ts, self.id.as_str())
    }
}

/// A cluster id and members: each stored story with its story vector.
pub type ClusterMembers = (String, Vec<(super::StoredStory, Vec<f32>)>);

/// What a recompute changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReclusterReport {
    pub stories: usize,
    /// Stories whose cluster is not the one they had.
    pub moved: usize,
    /// Clusters of two or more stories, before and after.
    pub clusters_before: usize,
    pub clusters_after: usize,
}

const MEMBER_SELECT: &str = "SELECT id, digest_id, ts, url, vector, cluster FROM stories";

fn member_from_row(r: &rusqlite::Row<'_>, dimension: usize) -> Result<Member, StoreError> {
    let ts: i64 = r.get(2)?;
    let url: Option<String> = r.get(3)?;
    let blob: Vec<u8> = r.get(4)?;
    Ok(Member {
        id: r.get(0)?,
        ts,
        item: Item {
            digest: r.get(1)?,
            time: (ts != UNDATED_TS).then_some(ts),
            url: url.as_deref().map(canonical_url),
            vector: blob_to_vector(&blob, dimension)?,
        },
        cluster: r.get(5)?,
    })
}

fn member(conn: &Connection, id: &str, dimension: usize) -> Result<Option<Member>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("{MEMBER_SELECT} WHERE id = ?1"))?;
    let row = stmt
        .query_row([id], |r| Ok(member_from_row(r, dimension)))
        .optional()?;
    row.transpose()
}

fn cluster_of(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT cluster FROM stories WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

fn cluster_members(
    conn: &Connection,
    cluster: &str,
    dimension: usize,
) -> Result<Vec<Member>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "{MEMBER_SELECT} WHERE cluster = ?1 ORDER BY ts, id"
    ))?;
    let rows = stmt.query_map([cluster], |r| Ok(member_from_row(r, dimension)))?;
    rows.map(|r| r?).collect()
}

impl Store {
    /// Re-assigns every story at or after `from` (publication order), inside `tx`.
    ///
    /// `pending` are stories written in this transaction, whose windows are not in the
    /// index yet; they are compared by brute force.
    pub(crate) fn reassign_from(
        &self,
        tx: &Connection,
        from: (i64, &str),
        pending: &[String],
        params: &Params,
    ) -> Result<(), StoreError> {
        let todo: Vec<Member> = {
            let mut stmt = tx.prepare_cached(&format!(
                "{MEMBER_SELECT} WHERE ts > ?1 OR (ts = ?1 AND id >= ?2) ORDER BY ts, id"
            ))?;
            let rows = stmt.query_map(params![from.0, from.1], |r| {
                Ok(member_from_row(r, self.dimension))
            })?;
            rows.map(|r| r?).collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE stories SET cluster = NULL, cluster_score = NULL
             WHERE ts > ?1 OR (ts = ?1 AND id >= ?2)",
            params![from.0, from.1],
        )?;
        let mut unindexed: Vec<Member> = Vec::new();
        for id in pending {
            if let Some(m) = member(tx, id, self.dimension)? {
                unindexed.push(m);
            }
        }
        let undated = self
            .kinds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .has_undated();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let catalog = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        for story in &todo {
            let key = story.key();
            let earlier = |m: &WindowMeta| {
                *m.story_id != *story.id
                    && *m.digest_id != *story.item.digest
                    && (m.ts, &*m.story_id) < key
            };
            // The nearest earlier windows, searched like a query (exactly, or by sign code
            // and exact re-scoring), among the days a pair can still reach the threshold
            // from, and among undated windows, which pay no time penalty.
            let reach = story
                .item
                .time
                .zip(params.reach_days())
                .and_then(|(t, days)| {
                    let day = |s: i64| {
                        OffsetDateTime::from_unix_timestamp(s)
                            .ok()
                            .map(|t| t.date())
                    };
                    Some(DateRange::between(
                        day(t - ((days + 1.0) * 86_400.0) as i64)?,
                        day(t + 86_400)?,
                    ))
                });
            let query = [story.item.vector.as_slice()];
            let mut windows = self.search_held(
                &index,
                &catalog,
                &query,
                CANDIDATE_WINDOWS,
                None,
                reach.unwrap_or(DateRange::ALL),
                earlier,
            )?;
            if reach.is_some() && undated {
                windows.extend(self.search_held(
                    &index,
                    &catalog,
                    &query,
                    CANDIDATE_WINDOWS,
                    None,
                    DateRange::ALL,
                    |m| m.day.is_none() && earlier(m),
                )?);
            }
            let mut candidates: BTreeSet<String> = windows
                .into_iter()
                .flatten()
                .map(|h| h.meta.story_id.to_string())
                .collect();
            candidates.extend(
                unindexed
                    .iter()
                    .filter(|m| m.item.digest != story.item.digest && m.key() < key)
                    .map(|m| m.id.clone()),
            );
            let mut clusters: BTreeSet<String> = BTreeSet::new();
            for id in &candidates {
                let Some(other) = member(tx, id, self.dimension)? else {
                    continue; // removed in this transaction
                };
                let cosine = crate::vector::dot(&story.item.vector, &other.item.vector);
                if pair_score(&story.item, &other.item, cosine, params) >= params.threshold {
                    clusters.extend(other.cluster);
                }
            }
            let mut options: Vec<(String, Vec<Item>)> = Vec::with_capacity(clusters.len());
            for c in clusters {
                let members = cluster_members(tx, &c, self.dimension)?
                    .into_iter()
                    .map(|m| m.item)
                    .collect();
                options.push((c, members));
            }
            let (cluster, score) = choose_cluster(&story.item, &options, params)
                .unwrap_or_else(|| (story.id.clone(), 1.0));
            tx.prepare_cached("UPDATE stories SET cluster = ?2, cluster_score = ?3 WHERE id = ?1")?
                .execute(params![story.id, cluster, score])?;
        }
        Ok(())
    }

    /// Recomputes every story's cluster (after a threshold or model change) and says
    /// what changed. One transaction: all or nothing.
    pub fn recluster(&self, params: &Params) -> Result<ReclusterReport, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let before = assignments(&tx)?;
        self.reassign_from(&tx, (i64::MIN, ""), &[], params)?;
        let after = assignments(&tx)?;
        set_cluster_meta(&tx, params)?;
        tx.commit()?;
        Ok(ReclusterReport {
            stories: after.len(),
            moved: after
                .iter()
                .filter(|(id, c)| before.get(*id) != Some(*c))
                .count(),
            clusters_before: multi_clusters(&before),
            clusters_after: multi_clusters(&after),
        })
    }

    /// Recomputes the clusters when they were made under other rules or another
    /// threshold, or some story has none (a store from before clusters were stored).
    pub fn ensure_clusters(&self, params: &Params) -> Result<Option<ReclusterReport>, StoreError> {
        let current = {
            let conn = self.conn();
            let stamp: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'clusters'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            let unassigned: i64 = conn.query_row(
                "SELECT COUNT(*) FROM stories WHERE cluster IS NULL",
                [],
                |r| r.get(0),
            )?;
            stamp.as_deref() == Some(cluster_stamp(params).as_str()) && unassigned == 0
        };
        if current {
            return Ok(None);
        }
        tracing::info!("duplicate clusters missing or made with other settings; recomputing");
        self.recluster(params).map(Some)
    }

    /// Clusters of two or more stories among the stories published in `range`: for each,
    /// its members in range (in publication order) with their story vectors. One query.
    pub fn clusters_in_range(
        &self,
        range: crate::domain::DateRange,
    ) -> Result<Vec<ClusterMembers>, StoreError> {
        let (since, until) = range.days();
        // Plain bounds, not `?1 IS NULL OR day >= ?1`: SQLite can use the day index only
        // for a condition it can see at prepare time (measured: a full scan of a
        // million stories, 700 ms, instead of 1 ms). Undated stories match only `ALL`.
        let by_day = if range.is_all() {
            "1"
        } else {
            "s.day >= ?1 AND s.day <= ?2"
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{}, s.cluster, s.vector FROM stories s JOIN digests d ON d.id = s.digest_id
             WHERE {by_day}
               AND EXISTS (SELECT 1 FROM stories o WHERE o.cluster = s.cluster AND o.id != s.id)",
            STORY_SELECT_COLUMNS
        ))?;
        let (since, until) = (since.unwrap_or(0), until.unwrap_or(u32::MAX));
        let bind: &[&dyn rusqlite::ToSql] = if range.is_all() {
            &[]
        } else {
            &[&since, &until]
        };
        let rows = stmt.query_map(bind, |r| {
            Ok((
                story_from_row(r)?,
                r.get::<_, String>(11)?,
                r.get::<_, Vec<u8>>(12)?,
            ))
        })?;
        let mut groups: Vec<ClusterMembers> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let (story, cluster, blob) = row?;
            let member = (story?, blob_to_vector(&blob, self.dimension)?);
            match at.get(&cluster) {
                Some(&i) => groups[i].1.push(member),
                None => {
                    at.insert(cluster.clone(), groups.len());
                    groups.push((cluster, vec![member]));
                }
            }
        }
        groups.retain(|(_, members)| members.len() >= 2);
        // Sorted here, not by SQL: an ORDER BY on (ts, id) tempts SQLite to walk that
        // index over every story instead of the day index over the range.
        for (_, members) in &mut groups {
            members.sort_by(|a, b| {
                let key = |s: &super::StoredStory| {
                    (s.published.map(|t| t.unix_timestamp()), s.id.clone())
                };
                key(&a.0).cmp(&key(&b.0))
            });
        }
        Ok(groups)
    }

    /// The cluster of a story and all its members' ids, in publication order (`None` for
    /// an unknown story).
    pub fn cluster_of_story(&self, id: &str) -> Result<Option<(String, Vec<String>)>, StoreError> {
        let conn = self.conn();
        let Some(cluster) = cluster_of(&conn, id)? else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare_cached("SELECT id FROM stories WHERE cluster = ?1 ORDER BY ts, id")?;
        let ids = stmt
            .query_map([&cluster], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some((cluster, ids)))
    }

    /// The stored duplicate cluster of each of these stories (a story that repeats no
    /// other is a cluster of its own; a story not stored is left out).
    pub fn cluster_ids_of(&self, ids: &[&str]) -> Result<HashMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(cluster) = cluster_of(&conn, id)? {
                out.insert((*id).to_owned(), cluster);
            }
        }
        Ok(out)
    }

    /// The stored story vectors (normalised mean of each story's windows) of these ids.
    pub fn story_vectors_of(&self, ids: &[&str]) -> Result<HashMap<String, Vec<f32>>, StoreError> {
        let conn = self.conn();
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = member(&conn, id, self.dimension)? {
                out.insert(m.id, m.item.vector);
            }
        }
        Ok(out)
    }
}

fn assignments(conn: &Connection) -> Result<HashMap<String, String>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, COALESCE(cluster, '') FROM stories")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn multi_clusters(assigned: &HashMap<String, String>) -> usize {
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for c in assigned.values() {
        *sizes.entry(c.as_str()).or_default() += 1;
    }
    sizes.values().filter(|&&n| n >= 2).count()
}

/// What the stored clusters were computed with.
fn cluster_stamp(p: &Params) -> String {
    format!(
        "v{CLUSTER_VERSION} threshold={} url_bonus={} grace={} per_day={}",
        p.threshold, p.same_url_bonus, p.grace_days, p.penalty_per_day
    )
}

/// Whether the stored clusters were computed with these settings (a new, empty store
/// counts as not: its first write stamps it).
pub(crate) fn stamp_matches(conn: &Connection, params: &Params) -> Result<bool, StoreError> {
    let stamp: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'clusters'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(stamp.as_deref() == Some(cluster_stamp(params).as_str()))
}

pub(crate) fn set_cluster_meta(conn: &Connection, params: &Params) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('clusters', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [cluster_stamp(params)],
    )?;
    Ok(())
}
