//! Stories similar to a stored one, from its stored vectors (no model call).
//!
//! Owns: using every window of a story as a query, and the "other digests only"
//! filter. Must not: embed; the story's vectors are already stored.

use super::{Service, ServiceError, StoryHit};
use crate::domain::{DateRange, TopK};

impl Service {
    /// Stories similar to a stored one, from its stored vectors (no model call).
    pub fn similar(
        &self,
        id: &str,
        k: TopK,
        range: DateRange,
        other_digests_only: bool,
    ) -> Result<Vec<StoryHit>, ServiceError> {
        let windows = self.store.story_windows(id)?;
        let Some((first, _)) = windows.first() else {
            return Err(ServiceError::NotFound {
                what: "story",
                id: id.to_owned(),
            });
        };
        let digest_id = first.digest_id.clone();
        let queries: Vec<Vec<f32>> = windows.into_iter().map(|(_, v)| v).collect();
        let ranked = self.ranked_windows(&queries, k.get(), None, range, |m| {
            &*m.story_id != id && (!other_digests_only || m.digest_id != digest_id)
        })?;
        let hits = ranked
            .into_iter()
            .map(|r| {
                (
                    r.hit.meta.story_id.to_string(),
                    r.adjusted,
                    Some(r.hit),
                    None,
                )
            })
            .collect();
        self.hydrate(hits, None, None)
    }
}
