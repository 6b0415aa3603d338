//! Finding the model's files: a local folder, or the Hugging Face Hub through hf-hub.
//!
//! Both paths end in the same layout (`config.json`, `tokenizer.json`,
//! `model.safetensors`) that one loader reads. Must not: parse the files.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

use super::{EmbedError, ModelSpec};

/// Where the files were found, for `model info` and start-up logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A folder given by the user or the default `models/<name>/`.
    Dir(PathBuf),
    /// The hf-hub cache (`$HF_HOME/hub`), downloaded from `endpoint` if it was not there.
    Hub { repo: String, revision: String },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Dir(dir) => write!(f, "folder {}", dir.display()),
            ModelSource::Hub { repo, revision } => write!(f, "hf-hub {repo}@{revision}"),
        }
    }
}

/// The three files a BERT model needs, all known to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub weights: PathBuf,
    pub source: ModelSource,
}

const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const WEIGHTS: &str = "model.safetensors";

impl ModelFiles {
    /// The default folder for a model: `models/<name>/` under the working directory.
    pub fn default_dir(spec: &ModelSpec) -> PathBuf {
        Path::new("models").join(&spec.name)
    }

    /// Use a folder that must already hold all three files.
    pub fn from_dir(dir: &Path) -> Result<Self, EmbedError> {
        let file = |name: &str| -> Result<PathBuf, EmbedError> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(EmbedError::MissingFile {
                    path,
                    hint: format!(
                        "build the folder with `scripts/fetch-model {}` (no Hub access needed) \
                         or download it with `storydex model fetch`",
                        dir.display()
                    ),
                })
            }
        };
        Ok(Self {
            config: file(CONFIG)?,
            tokenizer: file(TOKENIZER)?,
            weights: file(WEIGHTS)?,
            source: ModelSource::Dir(dir.to_owned()),
        })
    }

    /// Fetch through hf-hub, which honours `HF_ENDPOINT` (mirror) and `HF_HOME` (cache).
    /// Files already in the cache are not downloaded again.
    pub fn from_hub(spec: &ModelSpec, progress: bool) -> Result<Self, EmbedError> {
        let download_error = |file: &str, message: String| EmbedError::Download {
            repo: spec.hub_repo.clone(),
            file: file.to_owned(),
            message,
        };
        let api = ApiBuilder::from_env()
            .with_progress(progress)
            .build()
            .map_err(|e| download_error("(client)", e.to_string()))?;
        let repo = api.repo(Repo::with_revision(
            spec.hub_repo.clone(),
            RepoType::Model,
            spec.revision.clone(),
        ));
        let get = |name: &str| {
            repo.get(name).map_err(|e| {
                download_error(
                    name,
                    format!(
                        "{e}; without Hub access, build the folder with `scripts/fetch-model` \
                         and pass it with --model-dir"
                    ),
                )
            })
        };
        Ok(Self {
            config: get(CONFIG)?,
            tokenizer: get(TOKENIZER)?,
            weights: get(WEIGHTS)?,
            source: ModelSource::Hub {
                repo: spec.hub_repo.clone(),
                revision: spec.revision.clone(),
            },
        })
    }

    /// The folder if one is given; else the default folder if complete; else hf-hub.
    pub fn locate(spec: &ModelSpec, dir: Option<&Path>) -> Result<Self, EmbedError> {
        if let Some(dir) = dir {
            return Self::from_dir(dir);
        }
        let default = Self::default_dir(spec);
        match Self::from_dir(&default) {
            Ok(files) => Ok(files),
            Err(local) => Self::from_hub(spec, false).map_err(|hub| match hub {
                EmbedError::Download {
                    repo,
                    file,
                    message,
                } => EmbedError::Download {
                    repo,
                    file,
                    message: format!("{message} (and the local folder is incomplete: {local})"),
                },
                other => other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_missing_a_file_names_the_file_and_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG), "{}").unwrap();
        let err = ModelFiles::from_dir(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(TOKENIZER), "{message}");
        assert!(message.contains("scripts/fetch-model"), "{message}");
    }
}
