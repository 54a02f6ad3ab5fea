//! End-to-end: CSV generated here → train → ONNX loaded by tract, for both trainers and both
//! tasks. Expected figures are derived from how the data is generated, never from a clock.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use shoal_model::build::SplitMix64;
use shoal_model::{LoadedModel, Tensor, TensorData};
use shoal_train::{
    train, ConfigError, DataSpec, Dataset, DatasetError, TaskKind, TrainConfig, TrainError,
    TrainedModel, Trainer,
};

/// Standard normal samples (Box–Muller) from the seeded generator.
fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = (rng.unit() + 1.0) / 2.0;
    let u2 = (rng.unit() + 1.0) / 2.0;
    (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Three Gaussian blobs (σ = 1) in 4 features, centres 10 apart on different axes, so any
/// linear classifier worth the name separates them; feature scales differ wildly so the
/// folded standardization matters. Labels are text.
fn blobs_csv(rows: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    let centres = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]];
    let names = ["setosa", "versicolor", "virginica"];
    let mut csv = String::from("a,b,c,big,species\n");
    for row in 0..rows {
        let class = row % 3;
        let c = centres[class];
        let a = c[0] + gaussian(&mut rng);
        let b = c[1] + gaussian(&mut rng);
        let z = c[2] + gaussian(&mut rng);
        // Irrelevant, large and offset: 1000 ± 300.
        let big = 1000.0 + 300.0 * gaussian(&mut rng);
        csv.push_str(&format!("{a},{b},{z},{big},{}\n", names[class]));
    }
    csv
}

/// Points in [-1, 1]² away from the axes, three classes by quadrant: first, third, and the
/// other two together (an XOR-like class no line separates from the rest). Numeric labels.
fn quadrants_csv(rows: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    let mut csv = String::from("x,y,quadrant\n");
    let mut written = 0;
    while written < rows {
        let x = rng.unit();
        let y = rng.unit();
        if x.abs() < 0.1 || y.abs() < 0.1 {
            continue;
        }
        let class = match (x > 0.0, y > 0.0) {
            (true, true) => 1,
            (false, false) => 3,
            _ => 2,
        };
        csv.push_str(&format!("{x},{y},{class}\n"));
        written += 1;
    }
    csv
}

/// Noise standard deviation of [`linear_csv`].
const NOISE: f64 = 0.05;

/// `target = 0.02·u − 1.5·v + 0.5·w + 3 + noise`, with u in [0, 200], v and w in [-1, 1].
fn linear_csv(rows: usize, seed: u64) -> String {
    let mut rng = SplitMix64(seed);
    let mut csv = String::from("u,v,w,target\n");
    for _ in 0..rows {
        let u = 100.0 + 100.0 * rng.unit();
        let v = rng.unit();
        let w = rng.unit();
        let target = 0.02 * u - 1.5 * v + 0.5 * w + 3.0 + NOISE * gaussian(&mut rng);
        csv.push_str(&format!("{u},{v},{w},{target}\n"));
    }
    csv
}

fn dataset(csv: &str, target: &str) -> Dataset {
    let spec = DataSpec {
        target: target.into(),
        features: None,
    };
    Dataset::from_csv(csv.as_bytes(), &spec).expect("generated csv loads")
}

fn config(trainer: Trainer, pairs: &[(&str, &str)]) -> TrainConfig {
    let params: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TrainConfig::from_params(trainer, &params).expect("valid params")
}

fn train_quietly(dataset: &Dataset, config: &TrainConfig) -> TrainedModel {
    train(dataset, config, |_| ControlFlow::Continue(())).expect("training succeeds")
}

fn all_rows(dataset: &Dataset) -> Vec<Vec<f32>> {
    (0..dataset.rows())
        .map(|row| dataset.row(row).to_vec())
        .collect()
}

/// Accuracy of `model.predict` (the exported, folded weights) over every row of `dataset`.
fn accuracy_over_all_rows(model: &TrainedModel, dataset: &Dataset, csv_labels: &[String]) -> f64 {
    let predicted = model
        .predict_classes(&all_rows(dataset))
        .expect("a classifier");
    let correct = predicted
        .iter()
        .zip(csv_labels)
        .filter(|(p, a)| p == a)
        .count();
    correct as f64 / csv_labels.len() as f64
}

fn labels_column(csv: &str) -> Vec<String> {
    csv.lines()
        .skip(1)
        .map(|line| line.rsplit(',').next().unwrap().to_string())
        .collect()
}

/// Runs every row through tract and checks it against `predict`, value by value, within
/// 1e-5. Regression targets here stay below 10, where f32 values are 1e-6 apart; a target in
/// the thousands would need a relative bound, as f32 carries about seven significant digits.
fn assert_tract_matches_predict(model: &TrainedModel, dataset: &Dataset) {
    let loaded = LoadedModel::from_bytes(&model.to_onnx()).expect("tract loads the export");
    let outputs = model.classes.as_ref().map_or(1, Vec::len);
    assert_eq!(
        loaded.signature().outputs[0].shape_string(),
        format!("[N,{outputs}]")
    );
    let rows = all_rows(dataset);
    let width = dataset.feature_names().len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let result = loaded
        .run(vec![Tensor::f32(vec![rows.len(), width], flat)])
        .expect("tract runs the export");
    let TensorData::F32(values) = &result[0].data else {
        panic!("the export outputs f32");
    };
    assert_eq!(result[0].shape, vec![rows.len(), outputs]);
    let expected = model.predict(&rows);
    for (row, expected_row) in expected.iter().enumerate() {
        for (output, e) in expected_row.iter().enumerate() {
            let got = values[row * outputs + output];
            assert!(
                (got - e).abs() <= 1e-5,
                "row {row} output {output}: tract {got}, predict {e}"
            );
        }
    }
}

#[test]
fn logistic_regression_separates_blobs_and_tract_agrees() {
    let csv = blobs_csv(900, 1);
    let dataset = dataset(&csv, "species");
    let model = train_quietly(
        &dataset,
        &config(Trainer::LogisticRegression, &[("epochs", "10")]),
    );
    assert_eq!(model.task, TaskKind::Classification);
    assert_eq!(
        model.classes,
        Some(vec![
            "setosa".into(),
            "versicolor".into(),
            "virginica".into()
        ])
    );
    assert_eq!(model.network.layers.len(), 1);
    assert_eq!(model.epochs_run(), 10);
    assert!(!model.stopped_early);
    assert_eq!((model.rows_train, model.rows_validation), (720, 180));
    let metrics = model.metrics();
    assert!(metrics.accuracy.unwrap() >= 0.95, "{metrics:?}");
    assert!(metrics.macro_f1.unwrap() >= 0.95, "{metrics:?}");
    assert!(metrics.train_accuracy.unwrap() >= 0.9, "{metrics:?}");
    assert!(
        metrics.train_loss < model.history[0].train_loss,
        "the loss falls"
    );
    // Through the exported (folded) weights, on raw features.
    assert!(accuracy_over_all_rows(&model, &dataset, &labels_column(&csv)) >= 0.95);
    assert_tract_matches_predict(&model, &dataset);
}

#[test]
fn logistic_regression_with_sgd_also_separates_blobs() {
    let csv = blobs_csv(600, 2);
    let dataset = dataset(&csv, "species");
    let model = train_quietly(
        &dataset,
        &config(
            Trainer::LogisticRegression,
            &[("optimizer", "sgd"), ("lr", "0.1"), ("epochs", "10")],
        ),
    );
    assert!(
        model.metrics().accuracy.unwrap() >= 0.95,
        "{:?}",
        model.metrics()
    );
}

#[test]
fn mlp_learns_quadrants_that_no_line_separates() {
    let csv = quadrants_csv(1500, 3);
    let dataset = dataset(&csv, "quadrant");
    let labels = labels_column(&csv);

    // A linear model cannot: class 2 lies on both sides of every line through the others, so
    // it stays well below what the MLP reaches.
    let linear = train_quietly(
        &dataset,
        &config(Trainer::LogisticRegression, &[("epochs", "30")]),
    );
    let linear_accuracy = accuracy_over_all_rows(&linear, &dataset, &labels);
    assert!(linear_accuracy < 0.9, "linear accuracy {linear_accuracy}");

    let model = train_quietly(
        &dataset,
        &config(
            Trainer::Mlp,
            &[("hidden", "32,16"), ("epochs", "60"), ("seed", "7")],
        ),
    );
    assert_eq!(
        model.classes,
        Some(vec!["1".into(), "2".into(), "3".into()])
    );
    assert_eq!(model.network.layers.len(), 3);
    assert!(
        model.metrics().accuracy.unwrap() >= 0.95,
        "{:?}",
        model.metrics()
    );
    let accuracy = accuracy_over_all_rows(&model, &dataset, &labels);
    assert!(accuracy >= 0.95, "accuracy over all rows {accuracy}");
    assert_tract_matches_predict(&model, &dataset);
    for probabilities in model.predict(&all_rows(&dataset)) {
        let sum: f32 = probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
    }
}

#[test]
fn linear_regression_reaches_the_noise_floor_and_tract_agrees() {
    let csv = linear_csv(2000, 4);
    let dataset = dataset(&csv, "target");
    let model = train_quietly(
        &dataset,
        &config(Trainer::LogisticRegression, &[("epochs", "20")]),
    );
    assert_eq!(model.task, TaskKind::Regression);
    assert_eq!(model.classes, None);
    let metrics = model.metrics();
    // The best possible RMSE is the noise's standard deviation.
    let rmse = metrics.rmse.unwrap();
    assert!(rmse < 2.0 * NOISE, "rmse {rmse}, noise {NOISE}");
    assert!(metrics.mae.unwrap() < 2.0 * NOISE, "{metrics:?}");
    // Folded weights recover the generating coefficients in raw units.
    let layer = &model.network.layers[0];
    let coefficients = [0.02, -1.5, 0.5];
    for (weight, expected) in layer.weights.iter().zip(coefficients) {
        assert!(
            (*weight as f64 - expected).abs() < 0.01 + 0.05 * expected.abs(),
            "weight {weight}, expected {expected}"
        );
    }
    assert!(
        (layer.bias[0] as f64 - 3.0).abs() < 0.1,
        "bias {}",
        layer.bias[0]
    );
    assert_tract_matches_predict(&model, &dataset);
}

#[test]
fn mlp_regression_is_accurate_and_tract_agrees() {
    let csv = linear_csv(2000, 5);
    let dataset = dataset(&csv, "target");
    let model = train_quietly(
        &dataset,
        &config(Trainer::Mlp, &[("hidden", "16"), ("epochs", "30")]),
    );
    assert_eq!(model.task, TaskKind::Regression);
    let rmse = model.metrics().rmse.unwrap();
    // The target's own spread is about 1.6 (std of 0.02·u + 1.5·v + 0.5·w); a ReLU network
    // approximates the plane piecewise, so allow a little more than the noise.
    assert!(rmse < 4.0 * NOISE, "rmse {rmse}");
    assert!(model.metrics().train_rmse.is_some());
    assert_tract_matches_predict(&model, &dataset);
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let csv = quadrants_csv(400, 6);
    let dataset = dataset(&csv, "quadrant");
    let params = config(Trainer::Mlp, &[("epochs", "5"), ("seed", "11")]);
    let first = train_quietly(&dataset, &params);
    let second = train_quietly(&dataset, &params);
    assert_eq!(first.to_onnx(), second.to_onnx());
    assert_eq!(first.history, second.history);
    let other_seed = train_quietly(
        &dataset,
        &config(Trainer::Mlp, &[("epochs", "5"), ("seed", "12")]),
    );
    assert_ne!(first.to_onnx(), other_seed.to_onnx());
}

#[test]
fn break_from_the_callback_stops_training() {
    let csv = blobs_csv(300, 7);
    let dataset = dataset(&csv, "species");
    let mut seen = Vec::new();
    let model = train(
        &dataset,
        &config(Trainer::Mlp, &[("epochs", "50")]),
        |metrics| {
            seen.push(metrics.epoch);
            if metrics.epoch == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    assert_eq!(model.epochs_run(), 3);
    assert!(model.stopped_early);
    assert_eq!(model.metrics().epoch, 3);
    let names: Vec<&str> = model
        .metrics()
        .named_values()
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        names,
        [
            "train_loss",
            "val_loss",
            "val_accuracy",
            "val_macro_f1",
            "train_accuracy"
        ]
    );
}

#[test]
fn null_rows_are_skipped_and_counted() {
    let mut csv = blobs_csv(300, 8);
    csv.push_str("1,2,NA,1000,setosa\n");
    csv.push_str("1,2,3,1000,\n");
    csv.push_str("1,2,3,null,versicolor\n");
    let dataset = dataset(&csv, "species");
    assert_eq!(dataset.rows(), 300);
    let model = train_quietly(&dataset, &config(Trainer::LogisticRegression, &[]));
    assert_eq!(model.rows_skipped, 3);
    assert_eq!(model.rows_train + model.rows_validation, 300);
}

#[test]
fn bad_params_name_the_param_the_value_and_the_accepted_ones() {
    let params = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    let accepted =
        "accepted params are: hidden, epochs, lr, batch_size, l2, seed, validation_fraction, task, optimizer";

    let error = TrainConfig::from_params(Trainer::Mlp, &params("epochs", "ten")).unwrap_err();
    assert!(matches!(
        error,
        TrainError::Config(ConfigError::BadValue { .. })
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "param epochs=\"ten\" is invalid: expected an integer from 1 to 100000; {accepted}"
        )
    );
    let error =
        TrainConfig::from_params(Trainer::Mlp, &params("learning_rate", "0.1")).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("unknown param \"learning_rate\"; {accepted}")
    );
    let error =
        TrainConfig::from_params(Trainer::LogisticRegression, &params("hidden", "16")).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("param hidden=\"16\" does not apply to the logreg trainer; {accepted}")
    );
    for (name, value) in [
        ("hidden", "16,8,4"),
        ("hidden", "0"),
        ("hidden", "a"),
        ("lr", "-1"),
        ("lr", "NaN"),
        ("batch_size", "0"),
        ("l2", "-0.1"),
        ("seed", "-1"),
        ("validation_fraction", "1"),
        ("validation_fraction", "0"),
        ("task", "ranking"),
        ("optimizer", "adagrad"),
    ] {
        let error = TrainConfig::from_params(Trainer::Mlp, &params(name, value)).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("param {name}={value:?} is invalid")),
            "{message}"
        );
        assert!(message.ends_with(accepted), "{message}");
    }
}

#[test]
fn bad_csv_errors_name_the_column_and_line() {
    let spec = DataSpec {
        target: "label".into(),
        features: None,
    };
    let text = "a,b,label\n1,2,x\n3,4,y\n5,five,x\n6,six,y\n";
    let error = Dataset::from_csv(text.as_bytes(), &spec).unwrap_err();
    assert!(matches!(
        error,
        TrainError::Dataset(DatasetError::NonNumericFeature { line: 4, .. })
    ));
    assert_eq!(
        error.to_string(),
        "feature \"b\" is not numeric: line 4 has \"five\""
    );

    let ragged = "a,b,label\n1,2,x\n\n3,4\n";
    let error = Dataset::from_csv(ragged.as_bytes(), &spec).unwrap_err();
    assert_eq!(error.to_string(), "line 4 has 2 cells, the header has 3");

    let mut invalid = b"a,b,label\n1,2,x\n3,".to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe]);
    invalid.extend_from_slice(b",y\n");
    let error = Dataset::from_csv(invalid.as_slice(), &spec).unwrap_err();
    assert_eq!(
        error.to_string(),
        "line 3, column 2: cell is not valid utf-8"
    );

    let missing = DataSpec {
        target: "class".into(),
        features: None,
    };
    let error = Dataset::from_csv(text.as_bytes(), &missing).unwrap_err();
    assert_eq!(
        error.to_string(),
        "column \"class\" is not in the csv; the csv has [\"a\", \"b\", \"label\"]"
    );
}

#[test]
fn training_refuses_a_single_class_and_a_text_regression_target() {
    let one_class = dataset("a,label\n1,x\n2,x\n3,x\n", "label");
    let error = train(
        &one_class,
        &config(Trainer::LogisticRegression, &[]),
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(matches!(error, TrainError::SingleClass { .. }), "{error}");

    let text_target = dataset("a,label\n1,x\n2,y\n3,x\n", "label");
    let error = train(
        &text_target,
        &config(Trainer::LogisticRegression, &[("task", "regression")]),
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "regression needs a numeric target, but \"label\" on line 2 is \"x\""
    );
}
