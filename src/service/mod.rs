//! The use cases, one file each: [`ingest`](Service::ingest_paths), [`search`](Service::search),
//! [`similar`](Service::similar), [`check`](Service::check_text),
//! [`duplicates`](Service::duplicates) and a watched folder ([`Watcher`]); the reads of stored stories and digests are here.
//!
//! Owns: the rules that combine parsing, embedding and the store. Must not: know about
//! HTTP or the terminal (the CLI and the server both call this), or hand out the store:
//! every caller goes through a method that says what it is for.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::corpus::ParseError;
use crate::domain::Invalid;
use crate::embed::{EmbedError, Encoder};
use crate::store::{Store, StoreError, StoredDigest, StoredStory};

mod check;
mod duplicates;
mod ingest;
mod inspect;
mod search;
mod similar;
mod watch;

pub use crate::tuning::{Fusion, Ranking, Tuning};
pub(crate) use check::could_have_covered;
pub use check::{parse_draft, CheckedItem, Coverage, DraftCheck, MatchReason, Verdict};
pub use duplicates::DuplicateCluster;
pub(crate) use duplicates::{item as cluster_item, to_item as story_item};
pub use ingest::is_ingestable;
pub use ingest::{CheckedIngest, FailedFile, IngestReport, Progress};
pub use search::{SearchMode, StoryHit};
pub use watch::{
    Apply, WatchOp, WatchOptions, WatchOutcome, WatchSettings, WatchSnapshot, WatchStatus, Watcher,
    DEFAULT_QUIET_MS,
};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no {what} with id {id:?}")]
    NotFound { what: &'static str, id: String },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("embedding failed: {0}")]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Snippets longer than this many characters are cut.
const SNIPPET_CHARS: usize = 280;

impl Tuning {
    /// The knobs a model manifest was calibrated with.
    pub fn from_spec(spec: &crate::embed::ModelSpec) -> Self {
        Self::from_manifest(&spec.thresholds, spec.search)
    }

    /// The knobs stored clusters are computed with (the same-language threshold).
    pub fn cluster_params(&self) -> crate::cluster::Params {
        crate::cluster::Params::with_threshold(self.duplicate)
    }
}

/// Brings a store just opened up to date with `tuning`: its clusters are recomputed if
/// they were made with other settings or some story has none (stores from before
/// clusters were stored). Every command and the server do this once on start.
pub fn prepare_store(store: &Store, tuning: &Tuning) -> Result<(), ServiceError> {
    if let Some(r) = store.ensure_clusters(&tuning.cluster_params())? {
        tracing::info!(
            stories = r.stories,
            clusters = r.clusters_after,
            "clusters recomputed"
        );
    }
    Ok(())
}

pub struct Service {
    store: Arc<Store>,
    encoder: Arc<dyn Encoder>,
    tuning: Tuning,
    ranking: Ranking,
    clusters: duplicates::ClusterCache,
}

impl Service {
    pub fn new(store: Arc<Store>, encoder: Arc<dyn Encoder>, tuning: impl Into<Tuning>) -> Self {
        let tuning = tuning.into();
        Self {
            store,
            encoder,
            ranking: tuning.ranking,
            tuning,
            clusters: Default::default(),
        }
    }

    /// The same service with other ranking knobs (a variant being evaluated).
    pub fn with_ranking(mut self, ranking: Ranking) -> Self {
        self.ranking = ranking;
        self
    }

    /// Another service over the same store and encoder, ranking with other knobs (for
    /// comparing variants in one process; clusters are not shared).
    pub fn clone_with_ranking(&self, ranking: Ranking) -> Service {
        Service {
            store: Arc::clone(&self.store),
            encoder: Arc::clone(&self.encoder),
            tuning: self.tuning,
            ranking,
            clusters: Default::default(),
        }
    }

    pub fn ranking(&self) -> Ranking {
        self.ranking
    }

    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// Rebuilds the lexical index after the language data changed
    /// ([`crate::lexical::use_lexicon`]; `storydex eval` compares with and without).
    pub fn refresh_lexical_index(&self) -> Result<(), ServiceError> {
        Ok(self.store.refresh_lexical_index()?)
    }

    pub fn encoder(&self) -> &dyn Encoder {
        self.encoder.as_ref()
    }

    /// The model and passage layout a story's content hash depends on.
    fn content_key(&self) -> String {
        format!(
            "{}|{}",
            self.encoder.model_id(),
            self.encoder.passage_layout()
        )
    }

    /// The knobs stored clusters are computed with (the same-language threshold).
    pub fn cluster_params(&self) -> crate::cluster::Params {
        self.tuning.cluster_params()
    }

    /// Recomputes the stored clusters if they were made with other settings or some
    /// story has none (stores from before clusters were stored). Call once on start.
    pub fn ensure_clusters(&self) -> Result<Option<crate::store::ReclusterReport>, ServiceError> {
        Ok(self.store.ensure_clusters(&self.cluster_params())?)
    }

    /// Recomputes every stored cluster; says what changed.
    pub fn recluster(&self) -> Result<crate::store::ReclusterReport, ServiceError> {
        Ok(self.store.recluster(&self.cluster_params())?)
    }

    /// The same-language (zh-zh) duplicate threshold, which clusters use.
    pub fn duplicate_threshold(&self) -> f32 {
        self.tuning.duplicate
    }

    pub fn story(&self, id: &str) -> Result<StoredStory, ServiceError> {
        self.store.story(id)?.ok_or_else(|| ServiceError::NotFound {
            what: "story",
            id: id.to_owned(),
        })
    }

    pub fn digests(&self) -> Result<Vec<StoredDigest>, ServiceError> {
        Ok(self.store.digests()?)
    }

    pub fn digest(&self, id: &str) -> Result<(StoredDigest, Vec<StoredStory>), ServiceError> {
        self.store
            .digest(id)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "digest",
                id: id.to_owned(),
            })
    }
}

/// Seconds since the Unix epoch of an optional time (for sorting; undated sorts first).
pub fn timestamp(t: Option<OffsetDateTime>) -> i64 {
    t.map_or(i64::MIN, |t| t.unix_timestamp())
}
