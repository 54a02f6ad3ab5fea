//! MLflow 3 logged models: models logged from runs, with params, tags and artifacts of their
//! own, linked to the runs that output them.

use super::*;

//
// MLflow 3's `log_model` does not write run artifacts: it creates a *logged model* (an id
// `m-<32 hex>`), uploads the model folder below the logged model's own artifact root
// (`{experiment}/models/{id}/artifacts/...` in `artifact_index`), finalizes it and links it to
// the run that produced it. Records:
// - `logged_models/{model_id}`: [`LoggedModel`].
// - `experiment_logged_models/{experiment_id}/{model_id}` → creation time: an experiment's
//   logged models.
// A run lists the logged models it output in its [`RUN_LOGGED_MODELS_TAG`] tag.

pub(super) const LOGGED_MODELS_TREE: &str = "logged_models";
pub(super) const EXPERIMENT_LOGGED_MODELS_TREE: &str = "experiment_logged_models";

/// The run tag listing the logged models a run output, as a JSON list of
/// `{"model_id": "m-…", "step": 0}` in the order they were linked.
pub const RUN_LOGGED_MODELS_TAG: &str = "mlflow.loggedModels";

/// Longest accepted logged-model name.
const MAX_LOGGED_MODEL_NAME_CHARS: usize = 250;

/// Where a logged model is in its life (MLflow's `LoggedModelStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoggedModelStatus {
    /// Created; its files are being uploaded.
    Pending,
    /// Finalized: every file is uploaded.
    Ready,
    /// The client gave up uploading its files.
    UploadFailed,
}

impl LoggedModelStatus {
    /// MLflow's name for the status.
    pub fn mlflow_name(self) -> &'static str {
        match self {
            LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
            LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
            LoggedModelStatus::UploadFailed => "LOGGED_MODEL_UPLOAD_FAILED",
        }
    }

    /// Parses MLflow's name (with or without the `LOGGED_MODEL_` prefix) or its number.
    pub fn parse(name: &str) -> Option<LoggedModelStatus> {
        let name = name.trim().to_ascii_uppercase();
        let name = name.strip_prefix("LOGGED_MODEL_").unwrap_or(&name);
        Some(match name {
            "PENDING" | "1" => LoggedModelStatus::Pending,
            "READY" | "2" => LoggedModelStatus::Ready,
            "UPLOAD_FAILED" | "3" => LoggedModelStatus::UploadFailed,
            _ => return None,
        })
    }
}

/// A model logged by MLflow 3's `log_model`: a folder of files (an `MLmodel` and the flavor's
/// files) with params and tags, usually produced by a run. It is not a registry entry: the
/// registry takes a version from it when it is registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    /// `m-` and 32 hex digits, unique hub-wide.
    pub id: String,
    pub workspace: String,
    pub experiment_id: String,
    pub name: String,
    /// A free-form type the client may set (`agent`, ...); empty when unset.
    pub model_type: String,
    /// The run that produced it, if any.
    pub source_run_id: Option<String>,
    pub status: LoggedModelStatus,
    pub lifecycle: Lifecycle,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl LoggedModel {
    /// The model's artifact root as a key prefix: `{experiment}/models/{id}/artifacts`.
    pub fn artifact_root(&self) -> String {
        format!("{}/models/{}/artifacts", self.experiment_id, self.id)
    }

    /// The model's artifact root, as MLflow clients address it.
    pub fn artifact_uri(&self) -> String {
        format!("mlflow-artifacts:/{}", self.artifact_root())
    }
}

/// What a new logged model is created with.
#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    pub workspace: String,
    pub experiment_id: String,
    /// `None` or empty: a generated name.
    pub name: Option<String>,
    pub model_type: String,
    pub source_run_id: Option<String>,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

/// One entry of a run's [`RUN_LOGGED_MODELS_TAG`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunModelOutput {
    pub model_id: String,
    pub step: i64,
}

/// The logged models a run output, read from its [`RUN_LOGGED_MODELS_TAG`] (empty when the
/// tag is absent or unreadable).
pub fn run_model_outputs(run: &Run) -> Vec<RunModelOutput> {
    run.tags
        .get(RUN_LOGGED_MODELS_TAG)
        .and_then(|value| serde_json::from_str(value).ok())
        .unwrap_or_default()
}

fn check_logged_model_name(name: &str) -> TrackingResult<()> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_LOGGED_MODEL_NAME_CHARS
        || name.contains('/')
        || name.contains('\0')
    {
        return Err(TrackingError::invalid(format!(
            "logged model name '{name}' must be 1 to {MAX_LOGGED_MODEL_NAME_CHARS} characters \
             without '/'"
        )));
    }
    Ok(())
}

impl Tracking {
    /// Creates a logged model in the `Pending` status.
    ///
    /// # Errors
    /// `NotFound` for the experiment, or for a source run of another workspace;
    /// `InvalidArgument` for a bad name, key or value.
    pub fn create_logged_model(&self, new: NewLoggedModel) -> TrackingResult<LoggedModel> {
        let experiment = self.experiment_in(&new.workspace, &new.experiment_id)?;
        if let Some(run_id) = &new.source_run_id {
            let run = self.run(run_id)?;
            if run.workspace != new.workspace {
                return Err(TrackingError::not_found("run", run_id));
            }
        }
        for (k, v) in &new.params {
            check_param(k, v)?;
        }
        for (k, v) in &new.tags {
            check_tag(k, v)?;
        }
        let id = format!("m-{}", shoal_store::random_hex(16)?);
        let name = match new.name.filter(|n| !n.is_empty()) {
            Some(name) => name,
            None => format!("model-{}", &id[2..10]),
        };
        check_logged_model_name(&name)?;
        let now = shoal_store::now_ms();
        let model = LoggedModel {
            id: id.clone(),
            workspace: new.workspace,
            experiment_id: experiment.id.clone(),
            name,
            model_type: new.model_type,
            source_run_id: new.source_run_id,
            status: LoggedModelStatus::Pending,
            lifecycle: Lifecycle::Active,
            params: new.params,
            tags: new.tags,
            created_ms: now,
            updated_ms: now,
        };
        if !self.records.insert_new(LOGGED_MODELS_TREE, &id, &model)? {
            return Err(TrackingError::Internal(format!(
                "logged model id {id} was already taken"
            )));
        }
        self.records.put(
            EXPERIMENT_LOGGED_MODELS_TREE,
            &format!("{}/{id}", experiment.id),
            &now,
        )?;
        tracing::info!(model = %id, name = %model.name, experiment = %experiment.name, "logged model created");
        Ok(model)
    }

    /// A logged model by id, deleted ones included.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn logged_model(&self, id: &str) -> TrackingResult<LoggedModel> {
        self.records
            .get(LOGGED_MODELS_TREE, id)?
            .ok_or_else(|| TrackingError::not_found("logged model", id))
    }

    /// Changes a logged model atomically; `change` may run more than once.
    ///
    /// # Errors
    /// `NotFound`, or what `change` returns.
    pub fn update_logged_model(
        &self,
        id: &str,
        mut change: impl FnMut(&mut LoggedModel) -> TrackingResult<()>,
    ) -> TrackingResult<LoggedModel> {
        self.records
            .update::<LoggedModel, TrackingError>(LOGGED_MODELS_TREE, id, |current| {
                let mut model =
                    current.ok_or_else(|| TrackingError::not_found("logged model", id))?;
                change(&mut model)?;
                model.updated_ms = shoal_store::now_ms();
                Ok(model)
            })
    }

    /// Sets a logged model's status (MLflow's finalize: `Ready` or `UploadFailed`).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn finalize_logged_model(
        &self,
        id: &str,
        status: LoggedModelStatus,
    ) -> TrackingResult<LoggedModel> {
        let model = self.update_logged_model(id, |model| {
            model.status = status;
            Ok(())
        })?;
        self.records.flush()?;
        Ok(model)
    }

    /// Logs params on a logged model. As on runs, a param is written once: the same value
    /// again is fine, another value is refused.
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for a changed value or a bad key.
    pub fn log_logged_model_params(
        &self,
        id: &str,
        params: &[(String, String)],
    ) -> TrackingResult<LoggedModel> {
        for (k, v) in params {
            check_param(k, v)?;
        }
        self.update_logged_model(id, |model| {
            for (k, v) in params {
                match model.params.get(k) {
                    Some(old) if old != v => {
                        return Err(TrackingError::invalid(format!(
                            "param '{k}' of logged model {id} is already '{old}'; changing it \
                             to '{v}' is not allowed"
                        )))
                    }
                    _ => {
                        model.params.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(())
        })
    }

    /// Sets tags on a logged model (overwriting).
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for a bad key or value.
    pub fn set_logged_model_tags(
        &self,
        id: &str,
        tags: &[(String, String)],
    ) -> TrackingResult<LoggedModel> {
        for (k, v) in tags {
            check_tag(k, v)?;
        }
        self.update_logged_model(id, |model| {
            for (k, v) in tags {
                model.tags.insert(k.clone(), v.clone());
            }
            Ok(())
        })
    }

    /// # Errors
    /// `NotFound` for the logged model or the tag.
    pub fn delete_logged_model_tag(&self, id: &str, key: &str) -> TrackingResult<LoggedModel> {
        self.update_logged_model(id, |model| {
            model
                .tags
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| TrackingError::not_found("tag", key))
        })
    }

    /// Every logged model of an experiment, deleted ones included, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn experiment_logged_models(
        &self,
        experiment_id: &str,
    ) -> TrackingResult<Vec<LoggedModel>> {
        let prefix = format!("{experiment_id}/");
        let mut keyed: Vec<(i64, String)> = self
            .records
            .scan_with_keys::<i64>(EXPERIMENT_LOGGED_MODELS_TREE, &prefix)?
            .into_iter()
            .map(|(key, created)| (created, key[prefix.len()..].to_string()))
            .collect();
        keyed.sort();
        let mut models = Vec::with_capacity(keyed.len());
        for (_, id) in keyed {
            if let Some(model) = self.records.get::<LoggedModel>(LOGGED_MODELS_TREE, &id)? {
                models.push(model);
            }
        }
        Ok(models)
    }

    /// Records that a run output a logged model (MLflow's `runs/outputs`), in the run's
    /// [`RUN_LOGGED_MODELS_TAG`]. Linking the same model at the same step again changes
    /// nothing.
    ///
    /// # Errors
    /// `NotFound` for the run or the model; `InvalidArgument` when the model is of another
    /// workspace or the tag would grow past a tag's size limit.
    pub fn link_logged_model_output(
        &self,
        run_id: &str,
        model_id: &str,
        step: i64,
    ) -> TrackingResult<Run> {
        let model = self.logged_model(model_id)?;
        let run = self.run(run_id)?;
        if model.workspace != run.workspace {
            return Err(TrackingError::not_found("logged model", model_id));
        }
        self.update_run(run_id, |run| {
            let mut outputs = run_model_outputs(run);
            let entry = RunModelOutput {
                model_id: model_id.to_string(),
                step,
            };
            if outputs.contains(&entry) {
                return Ok(());
            }
            outputs.push(entry);
            let value = serde_json::to_string(&outputs)
                .map_err(|e| TrackingError::Internal(format!("logged model list: {e}")))?;
            check_tag(RUN_LOGGED_MODELS_TAG, &value)?;
            run.tags.insert(RUN_LOGGED_MODELS_TAG.to_string(), value);
            Ok(())
        })
    }
}

#[cfg(test)]
mod logged_model_tests {
    use super::*;
    use shoal_store::storage::{MemoryStore, Records};

    fn tracking() -> Tracking {
        let records = Records::new(std::sync::Arc::new(MemoryStore::default()));
        let workspaces = Workspaces::new(records.clone());
        workspaces.ensure_default().expect("default workspace");
        Tracking::new(records, workspaces)
    }

    #[test]
    fn logged_models_are_created_finalized_tagged_and_linked() {
        let tracking = tracking();
        let run = tracking
            .create_run(NewRun::tracked("default", "0"))
            .expect("run");
        let model = tracking
            .create_logged_model(NewLoggedModel {
                workspace: "default".into(),
                experiment_id: "0".into(),
                name: Some("model".into()),
                source_run_id: Some(run.id.clone()),
                params: [("lr".to_string(), "0.1".to_string())].into(),
                ..Default::default()
            })
            .expect("logged model");
        assert!(
            model.id.starts_with("m-") && model.id.len() == 34,
            "{}",
            model.id
        );
        assert_eq!(model.status, LoggedModelStatus::Pending);
        assert_eq!(
            model.artifact_root(),
            format!("{}/models/{}/artifacts", model.experiment_id, model.id)
        );
        check_artifact_path(&format!("{}/model.onnx", model.artifact_root())).expect("path");

        let ready = tracking
            .finalize_logged_model(&model.id, LoggedModelStatus::Ready)
            .expect("finalize");
        assert_eq!(ready.status, LoggedModelStatus::Ready);
        tracking
            .log_logged_model_params(&model.id, &[("lr".into(), "0.1".into())])
            .expect("same value again");
        assert!(tracking
            .log_logged_model_params(&model.id, &[("lr".into(), "0.2".into())])
            .is_err());
        tracking
            .set_logged_model_tags(&model.id, &[("team".into(), "occ".into())])
            .expect("tags");
        let tagged = tracking
            .delete_logged_model_tag(&model.id, "team")
            .expect("delete tag");
        assert!(tagged.tags.is_empty());

        tracking
            .link_logged_model_output(&run.id, &model.id, 0)
            .expect("link");
        let linked = tracking
            .link_logged_model_output(&run.id, &model.id, 0)
            .expect("link again");
        assert_eq!(
            run_model_outputs(&linked),
            vec![RunModelOutput {
                model_id: model.id.clone(),
                step: 0
            }]
        );
        let listed = tracking
            .experiment_logged_models(&model.experiment_id)
            .expect("list");
        assert_eq!(
            listed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [model.id.as_str()]
        );
        assert!(LoggedModelStatus::parse("LOGGED_MODEL_READY") == Some(LoggedModelStatus::Ready));
        assert!(tracking
            .create_logged_model(NewLoggedModel {
                workspace: "default".into(),
                experiment_id: "0".into(),
                name: Some("a/b".into()),
                ..Default::default()
            })
            .is_err());
    }
}
