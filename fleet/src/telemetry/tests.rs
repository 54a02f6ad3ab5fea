//! Telemetry ingest, hourly roll-ups, retention and drift reports over an in-memory store,
//! with windows summarised against a baseline the registry profiled from a real CSV file.

use shoal_drift::{Baseline, FeatureSummary, OutputSummary};
use shoal_model::build::Mlp;
use shoal_registry::ModelVersion;
use shoal_store::{ErrorCode, ServiceError};

use super::*;
use crate::testkit::{hub, mlp, sensor_rows, summarise, window, Hub, Meta, HOUR_MS, WS};

/// An hour boundary far from now: ingest and reports take end times as given.
const H: i64 = 480_000 * HOUR_MS;
const MIN: i64 = 60_000;

struct Setup {
    hub: Hub,
    telemetry: Telemetry,
    mlp: Mlp,
    version: ModelVersion,
}

impl Setup {
    fn baseline(&self) -> &Baseline {
        &self.version.baseline.as_ref().unwrap().baseline
    }

    /// A window of `device` over `sample`, ending at `end_ms`.
    fn window(&self, device: &str, seq: u64, end_ms: i64, sample: &[[f32; 4]]) -> Vec<u8> {
        self.window_with(device, seq, end_ms, sample, &[])
    }

    fn window_with(
        &self,
        device: &str,
        seq: u64,
        end_ms: i64,
        sample: &[[f32; 4]],
        errors: &[(&str, u64)],
    ) -> Vec<u8> {
        window(
            Some(self.baseline()),
            &self.mlp,
            &Meta {
                device,
                boot_epoch: 1,
                seq,
                end_ms,
                version: &self.version,
                errors,
            },
            sample,
        )
    }

    fn report(&self, from_ms: i64, to_ms: i64, devices: &[&str]) -> DriftResult {
        self.telemetry
            .drift_report(&DriftQuery {
                workspace: WS.into(),
                model: "sensor".into(),
                reference: "1".into(),
                from_ms,
                to_ms,
                devices: devices.iter().map(|d| d.to_string()).collect(),
                min_rows: 10,
            })
            .unwrap()
    }

    /// What a report over these samples must say: their summaries merged, evaluated.
    fn expected(&self, samples: &[&[[f32; 4]]]) -> shoal_drift::DriftReport {
        let mut merged = WindowSummary::new(self.baseline());
        for sample in samples {
            merged
                .merge(&summarise(self.baseline(), &self.mlp, sample))
                .unwrap();
        }
        evaluate(self.baseline(), &merged, 10, &Thresholds::default()).unwrap()
    }
}

/// A model with a baseline profiled from training rows, and two devices.
async fn setup() -> Setup {
    let hub = hub();
    let mlp = mlp();
    hub.register("sensor", &mlp).await;
    hub.set_baseline("sensor", "1", &sensor_rows(1, 500, 0.0))
        .await;
    // The baseline as stored, which is what devices receive and reports use.
    let version = hub.registry.resolve(WS, "sensor", "1").unwrap();
    hub.add_device("cam-1");
    hub.add_device("cam-2");
    hub.assign("cam-1", &version);
    hub.assign("cam-2", &version);
    let telemetry = hub.telemetry();
    Setup {
        hub,
        telemetry,
        mlp,
        version,
    }
}

fn counts(summary: &WindowSummary) -> Vec<Vec<u64>> {
    summary
        .features
        .iter()
        .map(|f| match f {
            FeatureSummary::Numeric(n) => n.counts.clone(),
            FeatureSummary::Categorical(c) => c.counts.clone(),
        })
        .chain(summary.outputs.iter().map(|o| match o {
            OutputSummary::Classes(c) => c.counts.clone(),
            OutputSummary::Numeric(n) => n.counts.clone(),
        }))
        .collect()
}

fn rollups(records: &Records) -> Vec<(String, HourlyRollup)> {
    records
        .scan_with_keys::<HourlyRollup>(HOURLY_TREE, "")
        .unwrap()
}

#[tokio::test]
async fn the_same_window_twice_is_stored_once() {
    let s = setup().await;
    let mut tail = s.telemetry.subscribe();
    let sample = sensor_rows(2, 40, 0.0);
    let payload = s.window("cam-1", 7, H + 10 * MIN, &sample);

    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &payload).unwrap(),
        Ingested::Stored { seq: 7 }
    );
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &payload).unwrap(),
        Ingested::Duplicate { seq: 7 }
    );

    let stats = s.telemetry.device(WS, "cam-1").unwrap();
    assert_eq!(stats.windows, 1);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.inferences, 40);
    assert_eq!(stats.last_window_ms, H + 10 * MIN);
    assert_eq!(stats.latest, (1, 7));
    assert_eq!(s.hub.records.count(WINDOWS_TREE, "").unwrap(), 1);
    let rollups = rollups(&s.hub.records);
    assert_eq!(rollups.len(), 1);
    assert_eq!(rollups[0].1.windows, 1);
    assert_eq!(rollups[0].1.inferences, 40);
    assert_eq!(s.report(H, H + HOUR_MS, &[]).windows, 1);

    // Live tails saw it once.
    let event = tail.try_recv().unwrap();
    assert_eq!(event.window.seq, 7);
    assert_eq!(event.workspace, WS);
    assert!(tail.try_recv().is_err());

    // The same seq after a reboot is another window.
    let rebooted = window(
        Some(s.baseline()),
        &s.mlp,
        &Meta {
            device: "cam-1",
            boot_epoch: 2,
            seq: 7,
            end_ms: H + 20 * MIN,
            version: &s.version,
            errors: &[],
        },
        &sample,
    );
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &rebooted).unwrap(),
        Ingested::Stored { seq: 7 }
    );
    assert_eq!(s.telemetry.device(WS, "cam-1").unwrap().latest, (2, 7));
    assert_eq!(s.report(H, H + HOUR_MS, &[]).windows, 2);
}

#[tokio::test]
async fn a_window_that_is_not_a_devices_own_is_refused_and_nothing_is_stored() {
    let s = setup().await;
    let payload = s.window("cam-1", 1, H + MIN, &sensor_rows(2, 5, 0.0));

    let error = s
        .telemetry
        .ingest(WS, "cam-1", b"\xff\xff\xff")
        .unwrap_err();
    assert!(matches!(error, FleetError::InvalidArgument(_)), "{error:?}");
    assert!(error.to_string().contains("malformed"), "{error}");

    let error = s.telemetry.ingest(WS, "cam-2", &payload).unwrap_err();
    assert!(matches!(error, FleetError::InvalidArgument(_)), "{error:?}");
    assert!(error.to_string().contains("cam-1"), "{error}");

    let no_model = TelemetryWindow {
        device_id: "cam-1".into(),
        seq: 2,
        end_ms: H + MIN,
        ..Default::default()
    }
    .encode_to_vec();
    let error = s.telemetry.ingest(WS, "cam-1", &no_model).unwrap_err();
    assert!(error.to_string().contains("no model"), "{error}");

    let stranger = s.window("ghost", 1, H + MIN, &sensor_rows(2, 5, 0.0));
    let error = s.telemetry.ingest(WS, "ghost", &stranger).unwrap_err();
    assert_eq!(error.error_code(), ErrorCode::NotFound, "{error:?}");

    assert_eq!(s.hub.records.count(WINDOWS_TREE, "").unwrap(), 0);
    assert_eq!(s.hub.records.count(IDS_TREE, "").unwrap(), 0);
    assert!(rollups(&s.hub.records).is_empty());
    assert_eq!(s.telemetry.device(WS, "cam-1").unwrap().windows, 0);
    // The refused window can still be stored on its own topic.
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &payload).unwrap(),
        Ingested::Stored { seq: 1 }
    );
}

#[tokio::test]
async fn windows_of_a_version_the_device_is_not_assigned_are_rejected_and_counted() {
    let s = setup().await;
    let v2 = s.hub.register("sensor", &Mlp::seeded(&[4, 3, 2], 10)).await;
    let for_v2 = |seq| {
        window(
            None,
            &s.mlp,
            &Meta {
                device: "cam-1",
                boot_epoch: 1,
                seq,
                end_ms: H + MIN,
                version: &v2,
                errors: &[],
            },
            &sensor_rows(2, 5, 0.0),
        )
    };
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &for_v2(1)).unwrap(),
        Ingested::Rejected {
            seq: 1,
            reason: Rejection::UnassignedModel
        }
    );
    assert_eq!(s.hub.records.count(WINDOWS_TREE, "").unwrap(), 0);
    assert_eq!(s.hub.records.count(IDS_TREE, "").unwrap(), 0);

    // While it moves from v1 to v2, both versions' windows are taken; v1's stay accepted
    // until the device is told something else again.
    s.hub.assign("cam-1", &v2);
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &for_v2(2)).unwrap(),
        Ingested::Stored { seq: 2 }
    );
    let v1_window = s.window("cam-1", 3, H + MIN, &sensor_rows(2, 5, 0.0));
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &v1_window).unwrap(),
        Ingested::Stored { seq: 3 }
    );
    // A device with no desired model at all is assigned nothing.
    s.hub.add_device("idle");
    let idle = window(
        None,
        &s.mlp,
        &Meta {
            device: "idle",
            boot_epoch: 1,
            seq: 1,
            end_ms: H + MIN,
            version: &v2,
            errors: &[],
        },
        &sensor_rows(2, 5, 0.0),
    );
    assert!(matches!(
        s.telemetry.ingest(WS, "idle", &idle).unwrap(),
        Ingested::Rejected { .. }
    ));
    let counted = |device| s.telemetry.device(WS, device).unwrap().rejected;
    assert_eq!(counted("cam-1").get("unassigned_model"), Some(&1));
    assert_eq!(counted("idle").get("unassigned_model"), Some(&1));
}

#[tokio::test]
async fn a_window_claiming_an_identity_the_hub_holds_is_a_conflict_not_a_duplicate() {
    let s = setup().await;
    let real = s.window("cam-1", 5, H + MIN, &sensor_rows(2, 5, 0.0));
    let forged = s.window("cam-1", 5, H + 2 * MIN, &sensor_rows(3, 9, 1.0));
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &forged).unwrap(),
        Ingested::Stored { seq: 5 }
    );
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &real).unwrap(),
        Ingested::Rejected {
            seq: 5,
            reason: Rejection::IdentityConflict
        }
    );
    assert_eq!(
        s.telemetry.ingest(WS, "cam-1", &forged).unwrap(),
        Ingested::Duplicate { seq: 5 }
    );
    let stats = s.telemetry.device(WS, "cam-1").unwrap();
    assert_eq!(stats.rejected.get("identity_conflict"), Some(&1));
    assert_eq!((stats.windows, stats.duplicates), (1, 1));

    // A window naming another device is counted against the topic's device.
    let other = s.window("cam-2", 1, H + MIN, &sensor_rows(2, 5, 0.0));
    assert!(s.telemetry.ingest(WS, "cam-1", &other).is_err());
    let stats = s.telemetry.device(WS, "cam-1").unwrap();
    assert_eq!(stats.rejected.get("wrong_device"), Some(&1));
    assert_eq!(s.telemetry.device(WS, "cam-2").unwrap().windows, 0);
}

#[tokio::test]
async fn windows_in_one_hour_merge_into_one_hourly_rollup() {
    let s = setup().await;
    let a = sensor_rows(10, 30, 0.0);
    let b = sensor_rows(11, 50, 0.0);
    let c = sensor_rows(12, 20, 2.0);
    let next = sensor_rows(13, 25, 0.0);
    let other = sensor_rows(14, 15, 0.0);
    let t = &s.telemetry;
    // The hour of a window is the hour of its end: H + 1h belongs to the next hour.
    t.ingest(
        WS,
        "cam-1",
        &s.window_with("cam-1", 1, H + 10 * MIN, &a, &[("bad_input", 2)]),
    )
    .unwrap();
    t.ingest(
        WS,
        "cam-1",
        &s.window_with(
            "cam-1",
            2,
            H + 30 * MIN,
            &b,
            &[("bad_input", 1), ("inference", 4)],
        ),
    )
    .unwrap();
    t.ingest(WS, "cam-1", &s.window("cam-1", 3, H + HOUR_MS - 1, &c))
        .unwrap();
    t.ingest(WS, "cam-1", &s.window("cam-1", 4, H + HOUR_MS, &next))
        .unwrap();
    t.ingest(WS, "cam-2", &s.window("cam-2", 1, H + 5 * MIN, &other))
        .unwrap();

    let rollups = rollups(&s.hub.records);
    let keys: Vec<&str> = rollups.iter().map(|(k, _)| k.as_str()).collect();
    let key = |hour: i64, device: &str| format!("{WS}/sensor/0000000001/{hour:016}/{device}");
    assert_eq!(
        keys,
        vec![
            key(H, "cam-1").as_str(),
            key(H, "cam-2").as_str(),
            key(H + HOUR_MS, "cam-1").as_str()
        ]
    );
    let hour = &rollups[0].1;
    assert_eq!(hour.windows, 3);
    assert_eq!(hour.inferences, 100);
    assert_eq!(hour.unmerged, 0);
    assert_eq!(
        hour.errors,
        BTreeMap::from([("bad_input".to_string(), 3), ("inference".to_string(), 4)])
    );
    let mut merged = summarise(s.baseline(), &s.mlp, &a);
    merged.merge(&summarise(s.baseline(), &s.mlp, &b)).unwrap();
    merged.merge(&summarise(s.baseline(), &s.mlp, &c)).unwrap();
    assert_eq!(counts(hour.summary.as_ref().unwrap()), counts(&merged));
    assert_eq!(rollups[1].1.windows, 1);
    assert_eq!(rollups[2].1.windows, 1);
    assert_eq!(rollups[2].1.inferences, 25);
}

#[tokio::test]
async fn a_drift_report_over_a_range_equals_the_merged_counts() {
    let s = setup().await;
    let a = sensor_rows(10, 30, 0.0);
    let b = sensor_rows(11, 50, 0.0);
    let c = sensor_rows(12, 20, 2.0);
    let next = sensor_rows(13, 25, 0.0);
    let other = sensor_rows(14, 15, 0.0);
    let t = &s.telemetry;
    t.ingest(
        WS,
        "cam-1",
        &s.window_with("cam-1", 1, H + 10 * MIN, &a, &[("bad_input", 2)]),
    )
    .unwrap();
    t.ingest(WS, "cam-1", &s.window("cam-1", 2, H + 30 * MIN, &b))
        .unwrap();
    t.ingest(WS, "cam-1", &s.window("cam-1", 3, H + 50 * MIN, &c))
        .unwrap();
    t.ingest(
        WS,
        "cam-1",
        &s.window("cam-1", 4, H + HOUR_MS + 10 * MIN, &next),
    )
    .unwrap();
    t.ingest(
        WS,
        "cam-2",
        &s.window_with("cam-2", 1, H + 20 * MIN, &other, &[("bad_input", 5)]),
    )
    .unwrap();

    // Two whole hours: read from the roll-ups.
    let all = s.report(H, H + 2 * HOUR_MS, &[]);
    assert_eq!(all.version, 1);
    assert_eq!(all.windows, 5);
    assert_eq!(all.devices, 2);
    assert_eq!(all.inferences, 140);
    assert_eq!(all.errors, BTreeMap::from([("bad_input".to_string(), 7)]));
    assert_eq!(all.note, "");
    assert_eq!(
        all.report.as_ref().unwrap(),
        &s.expected(&[&a, &b, &c, &next, &other])
    );
    let rows: Vec<u64> = all
        .report
        .as_ref()
        .unwrap()
        .features
        .iter()
        .map(|f| f.rows)
        .collect();
    assert_eq!(rows, vec![140; 4]);

    // Partial hours at both edges: raw windows there, the roll-up in between.
    let edges = s.report(H + 25 * MIN, H + HOUR_MS + 20 * MIN, &[]);
    assert_eq!(edges.windows, 3);
    assert_eq!(edges.devices, 1);
    assert_eq!(edges.report.unwrap(), s.expected(&[&b, &c, &next]));

    // Inside one hour, raw windows only; the same windows as the hour's roll-up.
    let whole_hour = s.report(H, H + HOUR_MS, &[]);
    let raw_hour = s.report(H + 1, H + HOUR_MS, &[]);
    assert_eq!(whole_hour.windows, 4);
    assert_eq!(raw_hour.windows, 4);
    assert_eq!(raw_hour.inferences, whole_hour.inferences);
    assert_eq!(raw_hour.errors, whole_hour.errors);
    assert_eq!(raw_hour.report, whole_hour.report);

    // One device only, in both ways of reading.
    let cam2 = s.report(H, H + 2 * HOUR_MS, &["cam-2"]);
    assert_eq!(cam2.windows, 1);
    assert_eq!(cam2.errors, BTreeMap::from([("bad_input".to_string(), 5)]));
    assert_eq!(cam2.report.unwrap(), s.expected(&[&other]));
    assert_eq!(s.report(H + 1, H + HOUR_MS, &["cam-2"]).windows, 1);

    // The end is exclusive: a window ending exactly at `to` is left for the next range.
    assert_eq!(s.report(H, H + 10 * MIN, &[]).windows, 0);
    assert_eq!(s.report(H, H + 10 * MIN + 1, &[]).windows, 1);
    // An unbounded range sees everything.
    assert_eq!(s.report(0, 0, &[]).windows, 5);
}

#[tokio::test]
async fn a_version_without_a_baseline_reports_counts_and_says_why_there_is_no_drift() {
    let s = setup().await;
    let v2 = s.hub.register("sensor", &Mlp::seeded(&[4, 3, 2], 10)).await;
    let payload = window(
        None,
        &s.mlp,
        &Meta {
            device: "cam-1",
            boot_epoch: 1,
            seq: 1,
            end_ms: H + MIN,
            version: &v2,
            errors: &[],
        },
        &sensor_rows(2, 12, 0.0),
    );
    s.hub.assign("cam-1", &v2);
    s.telemetry.ingest(WS, "cam-1", &payload).unwrap();
    let result = s
        .telemetry
        .drift_report(&DriftQuery {
            workspace: WS.into(),
            model: "sensor".into(),
            reference: LATEST_REFERENCE.into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(result.version, 2);
    assert_eq!(result.windows, 1);
    assert_eq!(result.inferences, 12);
    assert_eq!(result.min_rows, DEFAULT_MIN_ROWS);
    assert!(result.report.is_none());
    assert!(result.note.contains("no baseline"), "{}", result.note);
    // Version 1's windows are apart.
    assert_eq!(s.report(0, 0, &[]).windows, 0);
}

const LATEST_REFERENCE: &str = shoal_registry::LATEST;

#[tokio::test]
async fn retention_deletes_raw_windows_but_reports_stay_exact_over_whole_hours() {
    let s = setup().await;
    let a = sensor_rows(10, 30, 0.0);
    let b = sensor_rows(11, 50, 1.0);
    let next = sensor_rows(13, 25, 0.0);
    let other = sensor_rows(14, 15, 0.0);
    let t = &s.telemetry;
    t.ingest(
        WS,
        "cam-1",
        &s.window_with("cam-1", 1, H + 10 * MIN, &a, &[("bad_input", 2)]),
    )
    .unwrap();
    t.ingest(WS, "cam-1", &s.window("cam-1", 2, H + 40 * MIN, &b))
        .unwrap();
    t.ingest(WS, "cam-2", &s.window("cam-2", 1, H + 20 * MIN, &other))
        .unwrap();
    t.ingest(
        WS,
        "cam-1",
        &s.window("cam-1", 3, H + HOUR_MS + 10 * MIN, &next),
    )
    .unwrap();
    let before = s.report(H, H + 2 * HOUR_MS, &[]);
    let first_hour_before = s.report(H, H + HOUR_MS, &[]);

    // A day's retention, a day and an hour after H: the first hour's windows go.
    let day = Duration::from_secs(24 * 3600);
    let deleted = t
        .enforce_retention(H + HOUR_MS + 24 * HOUR_MS, day)
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(s.hub.records.count(WINDOWS_TREE, "").unwrap(), 1);
    assert_eq!(s.hub.records.count(IDS_TREE, "").unwrap(), 1);
    // Roll-ups stay.
    assert_eq!(rollups(&s.hub.records).len(), 3);

    let after = s.report(H, H + 2 * HOUR_MS, &[]);
    assert_eq!(after.windows, before.windows);
    assert_eq!(after.devices, before.devices);
    assert_eq!(after.inferences, before.inferences);
    assert_eq!(after.errors, before.errors);
    assert_eq!(after.report, before.report);
    assert_eq!(after.report.unwrap(), s.expected(&[&a, &b, &next, &other]));
    let first_hour_after = s.report(H, H + HOUR_MS, &[]);
    assert_eq!(first_hour_after.report, first_hour_before.report);
    assert_eq!(first_hour_after.windows, 3);
    // A partial hour needs raw windows, which are gone.
    assert_eq!(s.report(H + 1, H + HOUR_MS, &[]).windows, 0);

    // Everything after a long time; nothing left to delete the second time.
    assert_eq!(t.enforce_retention(H + 1000 * HOUR_MS, day).unwrap(), 1);
    assert_eq!(t.enforce_retention(H + 1000 * HOUR_MS, day).unwrap(), 0);
    assert_eq!(s.report(H, H + 2 * HOUR_MS, &[]).report, before.report);
}

#[tokio::test]
async fn the_device_keeps_the_drop_counts_of_its_latest_window_not_of_a_late_resend() {
    let s = setup().await;
    let with_drops = |seq: u64, cap_records: u64| {
        let mut w = TelemetryWindow::decode(
            s.window(
                "cam-1",
                seq,
                H + seq as i64 * MIN,
                &sensor_rows(seq, 3, 0.0),
            )
            .as_slice(),
        )
        .unwrap();
        w.dropped = Some(DropCounts {
            cap_records,
            ..Default::default()
        });
        w.encode_to_vec()
    };
    s.telemetry.ingest(WS, "cam-1", &with_drops(5, 50)).unwrap();
    // Seq 4 arrives late (it was buffered during an outage).
    s.telemetry.ingest(WS, "cam-1", &with_drops(4, 40)).unwrap();
    let stats = s.telemetry.device(WS, "cam-1").unwrap();
    assert_eq!(stats.windows, 2);
    assert_eq!(stats.latest, (1, 5));
    assert_eq!(stats.dropped().cap_records, 50);
    assert_eq!(stats.last_window_ms, H + 5 * MIN);
    assert!(matches!(
        s.telemetry.device(WS, "ghost"),
        Err(FleetError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_window_without_summaries_does_not_hide_the_rest_of_its_hour() {
    let s = setup().await;
    let first = window(
        None,
        &s.mlp,
        &Meta {
            device: "cam-1",
            boot_epoch: 1,
            seq: 1,
            end_ms: H + 5 * MIN,
            version: &s.version,
            errors: &[],
        },
        &sensor_rows(2, 10, 0.0),
    );
    let later = sensor_rows(3, 40, 0.0);
    s.telemetry.ingest(WS, "cam-1", &first).unwrap();
    s.telemetry
        .ingest(WS, "cam-1", &s.window("cam-1", 2, H + 30 * MIN, &later))
        .unwrap();

    let raw = s.report(H + 1, H + HOUR_MS, &[]);
    assert_eq!(raw.report.as_ref().unwrap(), &s.expected(&[&later]));
    let rolled_up = s.report(H, H + HOUR_MS, &[]);
    assert_eq!(rolled_up.note, raw.note);
    assert_eq!(rolled_up.report, raw.report);
}
