//! Drift monitors and alerts.
//!
//! A monitor names a model version or alias, a device selection, a metric and its threshold,
//! a period and a minimum row count. Every period the hub computes the drift of the windows
//! it received since the last evaluation ([`Telemetry::drift_report_received`]), so windows
//! that arrive late after an outage are evaluated once, and stores the evaluation. A
//! feature (or output) whose metric reaches the threshold with enough rows is a breach; any
//! breach raises an [`Alert`], which every [`AlertSink`] receives: the alert store, the
//! workspace's MQTT events topic, and the monitor's webhook (a JSON body signed with
//! HMAC-SHA256). A retraining pipeline will be one more sink.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{FleetError, FleetResult};
use crate::telemetry::{DriftQuery, Telemetry};
use shoal_store::check_name;
use shoal_store::storage::Records;
use shoal_store::workspace::Workspaces;

pub const MONITORS_TREE: &str = "monitors";
pub const EVALUATIONS_TREE: &str = "monitor_evaluations";
pub const ALERTS_TREE: &str = "alerts";

/// The shortest period a monitor may have.
pub const MIN_PERIOD: Duration = Duration::from_millis(200);
/// Evaluations kept per monitor.
const KEPT_EVALUATIONS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Js,
    Psi,
    Wasserstein,
    Ks,
}

impl Metric {
    /// # Errors
    /// `InvalidArgument` listing the metrics.
    pub fn parse(text: &str) -> FleetResult<Metric> {
        match text {
            "js" => Ok(Metric::Js),
            "psi" => Ok(Metric::Psi),
            "wasserstein" => Ok(Metric::Wasserstein),
            "ks" => Ok(Metric::Ks),
            other => Err(FleetError::invalid(format!(
                "unknown metric '{other}' (js, psi, wasserstein, ks)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Js => "js",
            Metric::Psi => "psi",
            Metric::Wasserstein => "wasserstein",
            Metric::Ks => "ks",
        }
    }

    fn of(self, f: &shoal_drift::FeatureDrift) -> Option<f64> {
        match self {
            Metric::Js => f.js,
            Metric::Psi => f.psi,
            Metric::Wasserstein => f.wasserstein,
            Metric::Ks => f.ks,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Monitor {
    pub workspace: String,
    pub name: String,
    pub model: String,
    pub reference: String,
    pub devices: Vec<String>,
    /// A breach is any feature or output whose metric reaches its threshold.
    pub thresholds: Vec<Threshold>,
    pub every_ms: i64,
    pub min_rows: u64,
    pub webhook_url: Option<String>,
    /// Signs webhook bodies; shown to the user once, at creation.
    pub webhook_secret: String,
    pub on_alert: Option<String>,
    pub created_at_ms: i64,
    /// When the next evaluation is due.
    pub next_due_ms: i64,
    /// Windows the hub received before this time have been evaluated; the next evaluation
    /// starts here, so none is evaluated twice or skipped.
    #[serde(default)]
    pub covered_until_ms: i64,
}

/// One metric a monitor watches, and the value that makes a breach.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Breach {
    pub feature: String,
    pub metric: Metric,
    pub value: f64,
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub monitor: String,
    pub at_ms: i64,
    pub since_ms: i64,
    pub until_ms: i64,
    pub version: u32,
    pub windows: u64,
    pub inferences: u64,
    pub status: String,
    pub breaches: Vec<Breach>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub workspace: String,
    pub id: String,
    pub monitor: String,
    pub model: String,
    pub version: u32,
    pub at_ms: i64,
    pub breaches: Vec<Breach>,
    /// "none", "delivered", or why delivery failed.
    pub webhook: String,
    pub on_alert: Option<String>,
    /// For `on_alert: retrain:<run>`: the run the alert started, or why none started.
    #[serde(default)]
    pub retrain: Option<String>,
}

/// What a new monitor is created from.
#[derive(Debug, Clone)]
pub struct NewMonitor {
    pub workspace: String,
    pub name: String,
    pub model: String,
    pub reference: String,
    pub devices: Vec<String>,
    /// (metric name, threshold) pairs.
    pub thresholds: Vec<(String, f64)>,
    pub every_ms: i64,
    pub min_rows: u64,
    pub webhook_url: String,
    pub on_alert: String,
}

/// Receives every alert. The hub's sinks store it, publish it and POST it; a retraining
/// pipeline will be another.
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync {
    /// Delivers an alert; the returned text is recorded as the delivery's outcome.
    async fn deliver(&self, monitor: &Monitor, alert: &Alert) -> Result<(), String>;
}

#[derive(Clone)]
pub struct Monitors {
    records: Records,
    workspaces: Workspaces,
    telemetry: Telemetry,
}

impl Monitors {
    pub fn new(records: Records, workspaces: Workspaces, telemetry: Telemetry) -> Monitors {
        Monitors {
            records,
            workspaces,
            telemetry,
        }
    }

    /// # Errors
    /// `InvalidArgument` naming the bad setting; `NotFound` for the workspace or model;
    /// `AlreadyExists`.
    pub fn create(&self, new: NewMonitor) -> FleetResult<Monitor> {
        self.workspaces.require(&new.workspace)?;
        check_name("monitor name", &new.name)?;
        if new.thresholds.is_empty() {
            return Err(FleetError::invalid(
                "a monitor needs at least one metric and threshold",
            ));
        }
        let mut thresholds = Vec::with_capacity(new.thresholds.len());
        for (metric, value) in &new.thresholds {
            let metric = Metric::parse(metric)?;
            if !(value.is_finite() && *value > 0.0) {
                return Err(FleetError::invalid(format!(
                    "threshold {value} for {} must be a positive number",
                    metric.name()
                )));
            }
            thresholds.push(Threshold {
                metric,
                value: *value,
            });
        }
        if new.every_ms < MIN_PERIOD.as_millis() as i64 {
            return Err(FleetError::invalid(format!(
                "period {} ms is shorter than the minimum of {} ms",
                new.every_ms,
                MIN_PERIOD.as_millis()
            )));
        }
        let webhook_url = match new.webhook_url.trim() {
            "" => None,
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Some(url.to_string())
            }
            url => {
                return Err(FleetError::invalid(format!(
                    "webhook '{url}' must be an http:// or https:// URL"
                )))
            }
        };
        // The model must exist now; the reference is resolved again at every evaluation.
        self.telemetry
            .registry()
            .resolve(&new.workspace, &new.model, &new.reference)?;
        let now = shoal_store::now_ms();
        let monitor = Monitor {
            workspace: new.workspace.clone(),
            name: new.name.clone(),
            model: new.model,
            reference: if new.reference.is_empty() {
                shoal_registry::registry::LATEST.into()
            } else {
                new.reference
            },
            devices: new.devices,
            thresholds,
            every_ms: new.every_ms,
            min_rows: new.min_rows,
            webhook_url,
            webhook_secret: shoal_store::random_hex(24)?,
            on_alert: Some(new.on_alert).filter(|s| !s.is_empty()),
            created_at_ms: now,
            next_due_ms: now + new.every_ms,
            covered_until_ms: now,
        };
        if !self.records.insert_new(
            MONITORS_TREE,
            &format!("{}/{}", new.workspace, new.name),
            &monitor,
        )? {
            return Err(FleetError::already_exists("monitor", new.name));
        }
        tracing::info!(workspace = %monitor.workspace, monitor = %monitor.name, model = %monitor.model, thresholds = monitor.thresholds.len(), "drift monitor created");
        Ok(monitor)
    }

    /// # Errors
    /// `NotFound`.
    pub fn get(&self, workspace: &str, name: &str) -> FleetResult<Monitor> {
        self.records
            .get(MONITORS_TREE, &format!("{workspace}/{name}"))?
            .ok_or_else(|| FleetError::not_found("monitor", name))
    }

    /// # Errors
    /// `NotFound` for the workspace.
    pub fn list(&self, workspace: &str) -> FleetResult<Vec<Monitor>> {
        self.workspaces.require(workspace)?;
        Ok(self.records.scan(MONITORS_TREE, &format!("{workspace}/"))?)
    }

    /// # Errors
    /// `NotFound`.
    pub fn delete(&self, workspace: &str, name: &str) -> FleetResult<()> {
        self.get(workspace, name)?;
        self.records
            .delete(MONITORS_TREE, &format!("{workspace}/{name}"))?;
        for key in self
            .records
            .keys(EVALUATIONS_TREE, &format!("{workspace}/{name}/"))?
        {
            self.records.delete(EVALUATIONS_TREE, &key)?;
        }
        Ok(())
    }

    /// The most recent evaluations first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn evaluations(
        &self,
        workspace: &str,
        name: &str,
        limit: usize,
    ) -> FleetResult<Vec<Evaluation>> {
        let mut all: Vec<Evaluation> = self
            .records
            .scan(EVALUATIONS_TREE, &format!("{workspace}/{name}/"))?;
        all.reverse();
        all.truncate(limit);
        Ok(all)
    }

    /// Alerts, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn alerts(&self, workspace: &str, monitor: &str) -> FleetResult<Vec<Alert>> {
        self.workspaces.require(workspace)?;
        let alerts: Vec<Alert> = self.records.scan(ALERTS_TREE, &format!("{workspace}/"))?;
        Ok(alerts
            .into_iter()
            .filter(|a| monitor.is_empty() || a.monitor == monitor)
            .collect())
    }

    /// Monitors whose evaluation is due at `now_ms`, marked as done for this period.
    ///
    /// # Errors
    /// Storage errors.
    pub fn take_due(&self, now_ms: i64) -> FleetResult<Vec<Monitor>> {
        let mut due = Vec::new();
        for (key, monitor) in self.records.scan_with_keys::<Monitor>(MONITORS_TREE, "")? {
            if monitor.next_due_ms > now_ms {
                continue;
            }
            let claimed =
                self.records
                    .update::<Monitor, FleetError>(MONITORS_TREE, &key, |current| {
                        let mut m = current
                            .ok_or_else(|| FleetError::not_found("monitor", &monitor.name))?;
                        // Skip missed periods instead of evaluating them all at once after a pause.
                        while m.next_due_ms <= now_ms {
                            m.next_due_ms += m.every_ms;
                        }
                        Ok(m)
                    });
            match claimed {
                Ok(_) => due.push(monitor),
                Err(FleetError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(due)
    }

    /// Evaluates the windows received since the monitor's last evaluation, stores the
    /// evaluation, and returns the alert a breach raises.
    ///
    /// # Errors
    /// Storage errors; a model that no longer resolves is recorded as a note, not an error.
    pub fn evaluate(&self, monitor: &Monitor) -> FleetResult<(Evaluation, Option<Alert>)> {
        let now_ms = self.telemetry.received_cutoff();
        let since_ms = if monitor.covered_until_ms > 0 {
            monitor.covered_until_ms
        } else {
            now_ms - monitor.every_ms
        };
        let result = self.telemetry.drift_report_received(&DriftQuery {
            workspace: monitor.workspace.clone(),
            model: monitor.model.clone(),
            reference: monitor.reference.clone(),
            from_ms: since_ms,
            to_ms: now_ms,
            devices: monitor.devices.clone(),
            min_rows: monitor.min_rows,
        });
        let mut evaluation = Evaluation {
            monitor: monitor.name.clone(),
            at_ms: now_ms,
            since_ms,
            until_ms: now_ms,
            version: 0,
            windows: 0,
            inferences: 0,
            status: "not_enough_data".into(),
            breaches: Vec::new(),
            note: String::new(),
        };
        match result {
            Err(e) => evaluation.note = e.to_string(),
            Ok(result) => {
                evaluation.version = result.version;
                evaluation.windows = result.windows;
                evaluation.inferences = result.inferences;
                evaluation.note = result.note.clone();
                if let Some(report) = &result.report {
                    evaluation.status = crate::telemetry::status_name(report.status).into();
                    for f in report.features.iter().chain(&report.outputs) {
                        if f.status == shoal_drift::DriftStatus::NotEnoughData {
                            continue;
                        }
                        for threshold in &monitor.thresholds {
                            let Some(value) = threshold.metric.of(f) else {
                                continue;
                            };
                            if value >= threshold.value {
                                evaluation.breaches.push(Breach {
                                    feature: f.name.clone(),
                                    metric: threshold.metric,
                                    value,
                                    threshold: threshold.value,
                                });
                            }
                        }
                    }
                }
            }
        }
        // Ordered by time; the suffix keeps two evaluations in one millisecond apart.
        let key = format!(
            "{}/{}/{:016}-{}",
            monitor.workspace,
            monitor.name,
            now_ms.max(0),
            shoal_store::random_hex(4)?
        );
        self.records.put(EVALUATIONS_TREE, &key, &evaluation)?;
        let monitor_key = format!("{}/{}", monitor.workspace, monitor.name);
        let covered =
            self.records
                .update::<Monitor, FleetError>(MONITORS_TREE, &monitor_key, |current| {
                    let mut m =
                        current.ok_or_else(|| FleetError::not_found("monitor", &monitor.name))?;
                    m.covered_until_ms = m.covered_until_ms.max(now_ms);
                    Ok(m)
                });
        if let Err(FleetError::NotFound { .. }) = covered {
            // Deleted (or its workspace was) while it was being evaluated: nothing of it stays.
            self.records.delete(EVALUATIONS_TREE, &key)?;
            return Ok((evaluation, None));
        }
        covered?;
        self.trim_evaluations(monitor)?;
        if evaluation.breaches.is_empty() {
            return Ok((evaluation, None));
        }
        let alert = Alert {
            workspace: monitor.workspace.clone(),
            id: format!("{:016}-{}", now_ms.max(0), shoal_store::random_hex(4)?),
            monitor: monitor.name.clone(),
            model: monitor.model.clone(),
            version: evaluation.version,
            at_ms: now_ms,
            breaches: evaluation.breaches.clone(),
            webhook: if monitor.webhook_url.is_some() {
                "pending".into()
            } else {
                "none".into()
            },
            on_alert: monitor.on_alert.clone(),
            retrain: None,
        };
        self.records.put(
            ALERTS_TREE,
            &format!("{}/{}", alert.workspace, alert.id),
            &alert,
        )?;
        tracing::warn!(workspace = %alert.workspace, monitor = %alert.monitor, model = %alert.model, version = alert.version, breaches = alert.breaches.len(), "drift alert");
        Ok((evaluation, Some(alert)))
    }

    /// Records how the webhook delivery of an alert went.
    ///
    /// # Errors
    /// Storage errors.
    pub fn record_delivery(&self, alert: &Alert, outcome: &str) -> FleetResult<()> {
        let key = format!("{}/{}", alert.workspace, alert.id);
        self.records
            .update::<Alert, FleetError>(ALERTS_TREE, &key, |current| {
                let mut a = current.ok_or_else(|| FleetError::not_found("alert", &alert.id))?;
                a.webhook = outcome.to_string();
                Ok(a)
            })?;
        Ok(())
    }

    /// Records what an alert's retraining did: the run it started, or why it could not.
    ///
    /// # Errors
    /// `NotFound` for the alert.
    pub fn record_retrain(&self, alert: &Alert, outcome: &str) -> FleetResult<()> {
        let key = format!("{}/{}", alert.workspace, alert.id);
        self.records
            .update::<Alert, FleetError>(ALERTS_TREE, &key, |current| {
                let mut a = current.ok_or_else(|| FleetError::not_found("alert", &alert.id))?;
                a.retrain = Some(outcome.to_string());
                Ok(a)
            })?;
        Ok(())
    }

    fn trim_evaluations(&self, monitor: &Monitor) -> FleetResult<()> {
        let keys = self.records.keys(
            EVALUATIONS_TREE,
            &format!("{}/{}/", monitor.workspace, monitor.name),
        )?;
        if keys.len() > KEPT_EVALUATIONS {
            for key in &keys[..keys.len() - KEPT_EVALUATIONS] {
                self.records.delete(EVALUATIONS_TREE, key)?;
            }
        }
        Ok(())
    }
}

/// POSTs alerts as JSON, signed: `X-Shoal-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
pub struct WebhookSink {
    client: reqwest::Client,
}

/// How long one webhook delivery may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl WebhookSink {
    pub fn new() -> WebhookSink {
        let client = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .build()
            .unwrap_or_default();
        WebhookSink { client }
    }
}

impl Default for WebhookSink {
    fn default() -> Self {
        WebhookSink::new()
    }
}

/// The JSON body a webhook receives.
pub fn webhook_body(alert: &Alert) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "type": "drift_alert", "alert": alert }))
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl AlertSink for WebhookSink {
    async fn deliver(&self, monitor: &Monitor, alert: &Alert) -> Result<(), String> {
        let Some(url) = &monitor.webhook_url else {
            return Ok(());
        };
        let body = webhook_body(alert);
        let signature = hex::encode(hmac_sha256(monitor.webhook_secret.as_bytes(), &body));
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-shoal-signature", format!("sha256={signature}"))
            .header("x-shoal-event", "drift_alert")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook {url}: {e}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook {url} answered {}", response.status()))
        }
    }
}

/// HMAC-SHA256 (RFC 2104) over `message` with `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Monitors, their evaluations and alerts are keyed `{workspace}/…`: a workspace with
/// monitors is not empty, and they go with it (or they would keep being evaluated, and a
/// workspace created again under the name would inherit them).
impl shoal_store::WorkspaceContents for Monitors {
    fn held(&self, workspace: &str) -> shoal_store::WorkspaceResult<Vec<String>> {
        let count = self
            .records
            .count(MONITORS_TREE, &format!("{workspace}/"))?;
        Ok(shoal_store::held_count(count, "monitor")
            .into_iter()
            .collect())
    }

    fn delete_all(&self, workspace: &str) -> shoal_store::WorkspaceResult<()> {
        let prefix = format!("{workspace}/");
        for tree in [MONITORS_TREE, EVALUATIONS_TREE, ALERTS_TREE] {
            self.records.delete_prefix(tree, &prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hmac_matches_more_rfc_4231_vectors() {
        // Test case 1.
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 4: a 25-byte key 0x01..=0x19 over 50 bytes of 0xcd.
        let key: Vec<u8> = (1..=0x19).collect();
        assert_eq!(
            hex::encode(hmac_sha256(&key, &[0xcd; 50])),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
        );
        // Test case 7: key and data both longer than a block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the HMAC \
                  algorithm."
            )),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
    }

    #[test]
    fn metrics_parse() {
        assert_eq!(Metric::parse("js").unwrap(), Metric::Js);
        assert!(Metric::parse("mse")
            .unwrap_err()
            .to_string()
            .contains("js, psi"));
    }

    use crate::testkit::{hub, mlp, sensor_rows, window, Hub, Meta, WS};
    use shoal_registry::ModelVersion;
    use shoal_store::{ErrorCode, ServiceError};

    struct Setup {
        /// Keeps the artifact folder for as long as the test runs.
        _hub: Hub,
        telemetry: Telemetry,
        monitors: Monitors,
        version: ModelVersion,
    }

    /// A model with a baseline, a device, and monitors over the hub's telemetry.
    async fn setup() -> Setup {
        let hub = hub();
        hub.register("sensor", &mlp()).await;
        hub.set_baseline("sensor", "1", &sensor_rows(1, 500, 0.0))
            .await;
        let version = hub.registry.resolve(WS, "sensor", "1").unwrap();
        hub.add_device("cam-1");
        hub.assign("cam-1", &version);
        let telemetry = hub.telemetry();
        let monitors = Monitors::new(
            hub.records.clone(),
            hub.workspaces.clone(),
            telemetry.clone(),
        );
        Setup {
            _hub: hub,
            telemetry,
            monitors,
            version,
        }
    }

    fn new_monitor(name: &str) -> NewMonitor {
        NewMonitor {
            workspace: WS.into(),
            name: name.into(),
            model: "sensor".into(),
            reference: String::new(),
            devices: Vec::new(),
            thresholds: vec![("js".into(), 0.1)],
            every_ms: 60_000,
            min_rows: 50,
            webhook_url: String::new(),
            on_alert: String::new(),
        }
    }

    impl Setup {
        /// Ingests a window over `sample` and waits (without sleeping) until the clock has
        /// passed its receive time, so the next evaluation's cutoff includes it.
        fn ingest(&self, seq: u64, sample: &[[f32; 4]]) {
            let mut tail = self.telemetry.subscribe();
            let payload = window(
                Some(&self.version.baseline.as_ref().unwrap().baseline),
                &mlp(),
                &Meta {
                    device: "cam-1",
                    boot_epoch: 1,
                    seq,
                    end_ms: shoal_store::now_ms(),
                    version: &self.version,
                    errors: &[],
                },
                sample,
            );
            self.telemetry.ingest(WS, "cam-1", &payload).unwrap();
            let received = tail.try_recv().unwrap().received_at_ms;
            while shoal_store::now_ms() <= received {
                std::thread::yield_now();
            }
        }
    }

    #[tokio::test]
    async fn a_monitor_is_created_with_valid_settings_only() {
        let s = setup().await;
        let m = &s.monitors;
        let refused = |change: &dyn Fn(&mut NewMonitor), says: &str| {
            let mut new = new_monitor("drift");
            change(&mut new);
            let error = m.create(new).expect_err("refused");
            assert_eq!(error.error_code(), ErrorCode::InvalidArgument, "{error:?}");
            assert!(
                error.to_string().contains(says),
                "{error} should say {says}"
            );
        };
        refused(&|n| n.thresholds.clear(), "at least one metric");
        refused(
            &|n| n.thresholds = vec![("mse".into(), 0.1)],
            "unknown metric 'mse'",
        );
        refused(
            &|n| n.thresholds = vec![("psi".into(), 0.0)],
            "psi must be a positive",
        );
        refused(
            &|n| n.thresholds = vec![("ks".into(), -1.0)],
            "ks must be a positive",
        );
        refused(
            &|n| n.thresholds = vec![("js".into(), f64::NAN)],
            "positive number",
        );
        refused(
            &|n| n.thresholds = vec![("js".into(), 0.1), ("wasserstein".into(), f64::INFINITY)],
            "wasserstein",
        );
        refused(&|n| n.every_ms = 199, "shorter than the minimum of 200 ms");
        refused(
            &|n| n.webhook_url = "ftp://example.com/hook".into(),
            "http:// or https://",
        );
        refused(&|n| n.name = "no spaces".into(), "monitor name");

        let mut missing = new_monitor("drift");
        missing.model = "ghost".into();
        assert_eq!(
            m.create(missing).unwrap_err().error_code(),
            ErrorCode::NotFound
        );
        let mut missing = new_monitor("drift");
        missing.reference = "production".into();
        assert_eq!(
            m.create(missing).unwrap_err().error_code(),
            ErrorCode::NotFound
        );
        let mut nowhere = new_monitor("drift");
        nowhere.workspace = "nowhere".into();
        assert_eq!(
            m.create(nowhere).unwrap_err().error_code(),
            ErrorCode::NotFound
        );
        assert!(m.list(WS).unwrap().is_empty());

        let mut new = new_monitor("drift");
        new.thresholds = vec![("js".into(), 0.1), ("psi".into(), 0.25)];
        new.every_ms = 200;
        new.webhook_url = " https://example.com/hook ".into();
        let monitor = m.create(new).unwrap();
        assert_eq!(monitor.reference, "latest");
        assert_eq!(
            monitor.thresholds,
            vec![
                Threshold {
                    metric: Metric::Js,
                    value: 0.1
                },
                Threshold {
                    metric: Metric::Psi,
                    value: 0.25
                },
            ]
        );
        assert_eq!(
            monitor.webhook_url.as_deref(),
            Some("https://example.com/hook")
        );
        assert_eq!(monitor.webhook_secret.len(), 48);
        assert!(monitor
            .webhook_secret
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
        assert_eq!(monitor.on_alert, None);
        assert_eq!(monitor.next_due_ms, monitor.created_at_ms + 200);
        assert_eq!(
            m.get(WS, "drift").unwrap().webhook_secret,
            monitor.webhook_secret
        );

        let error = m.create(new_monitor("drift")).unwrap_err();
        assert!(
            matches!(error, FleetError::AlreadyExists { .. }),
            "{error:?}"
        );
        let other = m.create(new_monitor("other")).unwrap();
        assert_eq!(other.webhook_url, None);
        assert_ne!(other.webhook_secret, monitor.webhook_secret);
        assert_eq!(m.list(WS).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn take_due_returns_a_monitor_once_per_period() {
        let s = setup().await;
        let m = &s.monitors;
        let monitor = m.create(new_monitor("drift")).unwrap();
        let due = monitor.next_due_ms;
        let every = monitor.every_ms;

        assert!(m.take_due(due - 1).unwrap().is_empty());
        let taken = m.take_due(due).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].name, "drift");
        assert_eq!(m.get(WS, "drift").unwrap().next_due_ms, due + every);
        // Taken for this period: not again until the next one.
        assert!(m.take_due(due).unwrap().is_empty());
        assert!(m.take_due(due + every - 1).unwrap().is_empty());

        // After a long pause, one evaluation, and the missed periods are skipped.
        assert_eq!(m.take_due(due + 3 * every).unwrap().len(), 1);
        assert_eq!(m.get(WS, "drift").unwrap().next_due_ms, due + 4 * every);
        assert!(m.take_due(due + 3 * every).unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_evaluation_with_too_few_rows_raises_no_alert() {
        let s = setup().await;
        let m = &s.monitors;
        let mut new = new_monitor("drift");
        new.min_rows = 1000;
        let monitor = m.create(new).unwrap();
        // Far from the baseline, but only 30 rows.
        s.ingest(1, &sensor_rows(5, 30, 20.0));

        let (evaluation, alert) = m.evaluate(&monitor).unwrap();
        assert!(alert.is_none());
        assert_eq!(evaluation.windows, 1);
        assert_eq!(evaluation.inferences, 30);
        assert_eq!(evaluation.version, 1);
        assert_eq!(evaluation.status, "not_enough_data");
        assert!(evaluation.breaches.is_empty());
        assert_eq!(evaluation.since_ms, monitor.created_at_ms);

        let stored = m.evaluations(WS, "drift", 10).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].windows, 1);
        assert!(m.alerts(WS, "").unwrap().is_empty());
        assert_eq!(
            m.get(WS, "drift").unwrap().covered_until_ms,
            evaluation.until_ms
        );
    }

    #[tokio::test]
    async fn drifted_windows_with_enough_rows_raise_one_alert() {
        let s = setup().await;
        let m = &s.monitors;
        let monitor = m.create(new_monitor("drift")).unwrap();
        s.ingest(1, &sensor_rows(5, 200, 6.0));

        let (evaluation, alert) = m.evaluate(&monitor).unwrap();
        assert_eq!(evaluation.windows, 1);
        assert_eq!(evaluation.status, "significant");
        let alert = alert.expect("a breach raises an alert");
        assert_eq!(alert.monitor, "drift");
        assert_eq!(alert.model, "sensor");
        assert_eq!(alert.version, 1);
        assert_eq!(alert.webhook, "none");
        assert_eq!(alert.breaches, evaluation.breaches);
        let breached: Vec<&str> = alert.breaches.iter().map(|b| b.feature.as_str()).collect();
        for feature in crate::testkit::FEATURES {
            assert!(breached.contains(&feature), "{feature} in {breached:?}");
        }
        assert!(alert
            .breaches
            .iter()
            .all(|b| b.metric == Metric::Js && b.value >= 0.1 && b.threshold == 0.1));

        let alerts = m.alerts(WS, "drift").unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].id, alert.id);
        assert!(m.alerts(WS, "another").unwrap().is_empty());
        m.record_delivery(&alert, "delivered").unwrap();
        m.record_retrain(&alert, "run r-1").unwrap();
        let stored = &m.alerts(WS, "drift").unwrap()[0];
        assert_eq!(stored.webhook, "delivered");
        assert_eq!(stored.retrain.as_deref(), Some("run r-1"));

        // The next evaluation starts where this one stopped: the window is not seen twice.
        let monitor = m.get(WS, "drift").unwrap();
        assert_eq!(monitor.covered_until_ms, evaluation.until_ms);
        // Evaluations are keyed by their millisecond: let the clock move on.
        while shoal_store::now_ms() <= evaluation.until_ms {
            std::thread::yield_now();
        }
        let (again, alert) = m.evaluate(&monitor).unwrap();
        assert_eq!(again.windows, 0);
        assert!(alert.is_none());
        assert_eq!(m.alerts(WS, "").unwrap().len(), 1);
        assert_eq!(m.evaluations(WS, "drift", 10).unwrap().len(), 2);
        // Most recent first.
        assert_eq!(m.evaluations(WS, "drift", 1).unwrap()[0].windows, 0);
    }

    #[tokio::test]
    async fn deleting_a_monitor_deletes_its_evaluations_only() {
        let s = setup().await;
        let m = &s.monitors;
        let drift = m.create(new_monitor("drift")).unwrap();
        let keep = m.create(new_monitor("drift-2")).unwrap();
        m.evaluate(&drift).unwrap();
        m.evaluate(&keep).unwrap();
        m.delete(WS, "drift").unwrap();
        assert!(matches!(
            m.get(WS, "drift"),
            Err(FleetError::NotFound { .. })
        ));
        assert!(m.evaluations(WS, "drift", 10).unwrap().is_empty());
        // "drift-2" shares the prefix "drift" and keeps its evaluations.
        assert_eq!(m.evaluations(WS, "drift-2", 10).unwrap().len(), 1);
        assert!(matches!(
            m.delete(WS, "drift"),
            Err(FleetError::NotFound { .. })
        ));
    }
}
