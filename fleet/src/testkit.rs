//! What the fleet's unit tests share: a hub's domains over one in-memory store, real models
//! built in code and validated by tract, real artifact and CSV files in a temporary folder,
//! and telemetry windows summarised the way an agent does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use prost::Message;
use shoal_drift::{Baseline, FeatureKind, FeatureSummary, OutputSummary, WindowSummary};
use shoal_model::build::{Mlp, SplitMix64};
use shoal_proto::device::{ActiveModel, TelemetryWindow};
use shoal_registry::{ManifestSigner, ModelVersion, NewVersion, Registry};
use shoal_store::{ArtifactStore, Records, Workspaces, DEFAULT_WORKSPACE};

use crate::{Deployments, Fleet, MemoryPublisher, Telemetry};

pub const WS: &str = DEFAULT_WORKSPACE;
pub const HOUR_MS: i64 = 3_600_000;
/// The columns of the sensor data, in the model input's order.
pub const FEATURES: [&str; 4] = ["temp", "hum", "light", "co2"];

/// The domains of one hub over a fresh in-memory store with the default workspace.
pub struct Hub {
    pub records: Records,
    pub workspaces: Workspaces,
    pub registry: Registry,
    pub fleet: Fleet,
    pub dir: tempfile::TempDir,
}

pub fn hub() -> Hub {
    let records = Records::in_memory();
    let workspaces = Workspaces::new(records.clone());
    workspaces.ensure_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let artifacts = ArtifactStore::open(&dir.path().join("artifacts")).unwrap();
    let registry = Registry::new(records.clone(), artifacts, workspaces.clone());
    let fleet = Fleet::new(records.clone(), workspaces.clone()).unwrap();
    Hub {
        records,
        workspaces,
        registry,
        fleet,
        dir,
    }
}

impl Hub {
    /// Stores the model's ONNX bytes and registers them as the next version of `name`.
    pub async fn register(&self, name: &str, mlp: &Mlp) -> ModelVersion {
        let mut writer = self.registry.artifacts().writer().await.unwrap();
        writer.write(&mlp.to_onnx()).await.unwrap();
        let (digest, size) = writer.finish().await.unwrap();
        self.registry
            .register(
                NewVersion {
                    workspace: WS.into(),
                    name: name.into(),
                    ..Default::default()
                },
                digest,
                size,
            )
            .await
            .unwrap()
    }

    /// Sets the baseline of `name@reference` from `rows`, written as a CSV file.
    pub async fn set_baseline(
        &self,
        name: &str,
        reference: &str,
        rows: &[[f32; 4]],
    ) -> ModelVersion {
        let path = self.dir.path().join(format!("{name}-{reference}.csv"));
        std::fs::write(&path, sensor_csv(rows)).unwrap();
        self.registry
            .set_baseline(
                WS,
                name,
                reference,
                "",
                FEATURES.map(String::from).to_vec(),
                path,
            )
            .await
            .unwrap()
    }

    pub fn add_device(&self, id: &str) {
        self.fleet.add(WS, id, BTreeMap::new()).unwrap();
    }

    /// Makes `version` the device's desired model, as a deployment would (without
    /// publishing): the hub accepts its windows from then on.
    pub fn assign(&self, id: &str, version: &ModelVersion) {
        self.fleet
            .set_desired(
                WS,
                id,
                &crate::fleet::Assignment {
                    deployment: "test",
                    model: &version.model,
                    version: version.version,
                    digest: &version.digest,
                    baseline: version
                        .baseline
                        .as_ref()
                        .map(|b| (b.digest.as_str(), b.size_bytes)),
                },
            )
            .unwrap();
    }

    pub fn telemetry(&self) -> Telemetry {
        Telemetry::new(
            self.records.clone(),
            self.registry.clone(),
            self.fleet.clone(),
        )
    }

    /// Deployments that publish into memory, signed with a key in the temporary folder.
    pub fn deployments(&self) -> (Deployments, Arc<MemoryPublisher>, Arc<ManifestSigner>) {
        let publisher = Arc::new(MemoryPublisher::default());
        let signer = Arc::new(ManifestSigner::load_or_create(self.dir.path()).unwrap());
        let deployments = Deployments::new(
            self.records.clone(),
            self.workspaces.clone(),
            self.registry.clone(),
            self.fleet.clone(),
            signer.clone(),
            publisher.clone(),
        );
        (deployments, publisher, signer)
    }
}

/// `n` rows, column i uniform in [i, i + 10), moved by `shift`.
pub fn sensor_rows(seed: u64, n: usize, shift: f32) -> Vec<[f32; 4]> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| std::array::from_fn(|i| i as f32 + 5.0 + 5.0 * rng.unit() as f32 + shift))
        .collect()
}

/// The rows as CSV with a header of [`FEATURES`].
pub fn sensor_csv(rows: &[[f32; 4]]) -> String {
    let mut text = FEATURES.join(",") + "\n";
    for row in rows {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        text += &cells.join(",");
        text += "\n";
    }
    text
}

pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
        )
        .0
}

/// What identifies a window, and what it reports besides its sample.
pub struct Meta<'a> {
    pub device: &'a str,
    pub boot_epoch: u64,
    pub seq: u64,
    pub end_ms: i64,
    pub version: &'a ModelVersion,
    pub errors: &'a [(&'a str, u64)],
}

/// The summary an agent keeps over `sample` against `baseline` (features, then argmax
/// classes of the first output).
pub fn summarise(baseline: &Baseline, mlp: &Mlp, sample: &[[f32; 4]]) -> WindowSummary {
    let mut summary = WindowSummary::new(baseline);
    for row in sample {
        for (i, feature) in baseline.features.iter().enumerate() {
            if let (FeatureKind::Numeric(b), FeatureSummary::Numeric(s)) =
                (&feature.kind, &mut summary.features[i])
            {
                s.observe(b, Some(row[i] as f64));
            }
        }
        if let Some(OutputSummary::Classes(c)) = summary.outputs.first_mut() {
            c.observe_class(argmax(&mlp.forward(row)));
        }
    }
    summary
}

/// A telemetry window over `sample` as the device encodes it; without a baseline, a window
/// with no summaries.
pub fn window(baseline: Option<&Baseline>, mlp: &Mlp, meta: &Meta, sample: &[[f32; 4]]) -> Vec<u8> {
    let (features, outputs) = match baseline {
        Some(baseline) => {
            shoal_drift::wire::summary_to_wire(&summarise(baseline, mlp, sample), baseline)
        }
        None => (Vec::new(), Vec::new()),
    };
    TelemetryWindow {
        device_id: meta.device.into(),
        boot_epoch: meta.boot_epoch,
        seq: meta.seq,
        start_ms: meta.end_ms - 60_000,
        end_ms: meta.end_ms,
        model: Some(ActiveModel {
            model: meta.version.model.clone(),
            version: meta.version.version,
            digest: meta.version.digest.clone(),
        }),
        inferences: sample.len() as u64,
        errors: meta
            .errors
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect::<HashMap<_, _>>(),
        features,
        outputs,
        ..Default::default()
    }
    .encode_to_vec()
}

/// The model the fleet tests deploy and watch.
pub fn mlp() -> Mlp {
    Mlp::seeded(&[4, 3, 2], 9)
}
