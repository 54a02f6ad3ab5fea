//! Metric series: every logged point under `run_metrics/{run}/{key as hex}/{seq}`, the
//! latest per key on the run record, non-finite values kept as strings.

use super::*;

/// One point of a metric series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// NaN and infinities are stored as strings: JSON numbers cannot hold them.
    #[serde(with = "non_finite_f64")]
    pub value: f64,
    pub step: i64,
    pub timestamp_ms: i64,
}

fn hex_key(key: &str) -> String {
    hex::encode(key.as_bytes())
}

fn is_latest(new: &MetricPoint, old: &MetricPoint) -> bool {
    (new.step, new.timestamp_ms) >= (old.step, old.timestamp_ms)
}

/// Serde for an `f64` that may be NaN or infinite (MLflow allows such metric values): finite
/// values as JSON numbers, the others as `"NaN"`, `"Infinity"`, `"-Infinity"`.
mod non_finite_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if *value == f64::INFINITY {
            serializer.serialize_str("Infinity")
        } else if *value == f64::NEG_INFINITY {
            serializer.serialize_str("-Infinity")
        } else {
            serializer.serialize_f64(*value)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Number(f64),
        Text(String),
        /// Records written before non-finite values were encoded hold `null` for them.
        Null(()),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Stored::deserialize(deserializer)? {
            Stored::Number(n) => Ok(n),
            Stored::Null(()) => Ok(f64::NAN),
            Stored::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                other => other.parse().map_err(serde::de::Error::custom),
            },
        }
    }
}

impl Tracking {
    /// Logs metric points. Non-finite values are kept (MLflow allows NaN and infinities).
    /// Returns the run as it stands after them (`None` when there were none).
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for a bad key; `FailedPrecondition` for a deleted run.
    pub fn log_metrics(
        &self,
        run_id: &str,
        points: &[(String, MetricPoint)],
    ) -> TrackingResult<Option<Run>> {
        if points.is_empty() {
            return Ok(None);
        }
        for (key, _) in points {
            check_key("metric", key)?;
        }
        let run = self.run(run_id)?;
        if run.lifecycle == Lifecycle::Deleted {
            return Err(TrackingError::FailedPrecondition(format!(
                "run {run_id} is deleted"
            )));
        }
        for (key, point) in points {
            let seq = self.metric_seq.fetch_add(1, Ordering::Relaxed);
            self.records.put(
                METRICS_TREE,
                &format!("{run_id}/{}/{seq:020}", hex_key(key)),
                point,
            )?;
        }
        let run = self.update_run(run_id, |run| {
            for (key, point) in points {
                match run.metrics.get(key) {
                    Some(old) if !is_latest(point, old) => {}
                    _ => {
                        run.metrics.insert(key.clone(), *point);
                    }
                }
            }
            Ok(())
        })?;
        Ok(Some(run))
    }

    /// Every point of one metric, in the order logged.
    ///
    /// # Errors
    /// `NotFound` for the run.
    pub fn metric_history(&self, run_id: &str, key: &str) -> TrackingResult<Vec<MetricPoint>> {
        self.run(run_id)?;
        Ok(self
            .records
            .scan(METRICS_TREE, &format!("{run_id}/{}/", hex_key(key)))?)
    }
}

#[cfg(test)]
mod non_finite_tests {
    use super::MetricPoint;

    #[test]
    fn non_finite_metric_values_survive_a_json_roundtrip() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25] {
            let point = MetricPoint {
                value,
                step: 1,
                timestamp_ms: 2,
            };
            let json = serde_json::to_string(&point).expect("serialize");
            let back: MetricPoint = serde_json::from_str(&json).expect("deserialize");
            assert!(
                back.value == value || (value.is_nan() && back.value.is_nan()),
                "{json}"
            );
        }
        let old: MetricPoint =
            serde_json::from_str(r#"{"value":null,"step":0,"timestamp_ms":0}"#).expect("null");
        assert!(old.value.is_nan());
    }
}
