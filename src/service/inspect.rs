//! Read-only views of the store for the evaluation, the server's health and metrics,
//! and tests: counts, stored vectors, raw lexical candidates.
//!
//! Owns: nothing but forwarding; these say what each caller looks at, instead of handing
//! out the store. Must not: change what is stored (except saving the derived index).

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Service, ServiceError};
use crate::domain::DateRange;
use crate::store::{StoryVector, WindowMeta};

impl Service {
    /// The model the store was built with.
    pub fn model_id(&self) -> &str {
        self.store.model_id()
    }

    /// Stored stories.
    pub fn story_count(&self) -> Result<usize, ServiceError> {
        Ok(self.store.story_count()?)
    }

    /// Windows in the vector index.
    pub fn window_count(&self) -> usize {
        self.store.window_count()
    }

    /// Changes whenever stored stories change.
    pub fn generation(&self) -> Result<i64, ServiceError> {
        Ok(self.store.generation()?)
    }

    /// Where the vector index is saved.
    /// The store's folder.
    pub fn data_dir(&self) -> PathBuf {
        self.store.dir().to_owned()
    }

    pub fn index_path(&self) -> PathBuf {
        self.store.index_path()
    }

    /// Saves the vector index (it is derived from SQLite; saving spares a rebuild).
    pub fn save_index(&self) -> Result<(), ServiceError> {
        Ok(self.store.save_index()?)
    }

    /// A stored story's windows with their vectors, in order.
    pub fn story_windows(&self, id: &str) -> Result<Vec<(WindowMeta, Vec<f32>)>, ServiceError> {
        Ok(self.store.story_windows(id)?)
    }

    /// Every stored story's single vector with the facts clustering uses.
    pub fn story_vectors(&self) -> Result<Vec<StoryVector>, ServiceError> {
        Ok(self.store.story_vectors()?)
    }

    /// The lexical (BM25) ranking alone: story ids and scores, best first.
    pub fn lexical_candidates(
        &self,
        text: &str,
        k: usize,
        range: DateRange,
    ) -> Result<Vec<(String, f32)>, ServiceError> {
        Ok(self.store.search_lexical(text, k, range, None)?)
    }

    /// How many stored stories have each term, and how many stories there are.
    pub fn document_frequencies(
        &self,
        terms: &[String],
    ) -> Result<(usize, HashMap<String, usize>), ServiceError> {
        Ok(self.store.document_frequencies(terms)?)
    }
}
