//! Times the built-in trainers on a large CSV; `train/bench/sklearn_bench.py` trains
//! scikit-learn's equivalents on the same file. Results are in docs/BENCHMARKS.md.
//!
//! ```sh
//! # 100 000 rows, 20 features, 3 classes (see `write_benchmark_csv`):
//! cargo run --release -p shoal-train --example bench_trainers -- --make-csv /tmp/bench.csv
//! cargo run --release -p shoal-train --example bench_trainers -- --csv /tmp/bench.csv --target label
//! ```
//!
//! Options: `--rows N` and `--features N` (with `--make-csv`), `--epochs N` (20), `--lr X`
//! (0.01), `--batch-size N` (64), `--validation-fraction X` (0.2), `--seed N` (0).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::time::Instant;

use shoal_model::build::SplitMix64;
use shoal_train::{train, DataSpec, Dataset, TrainConfig, Trainer};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench_trainers: {message}");
            ExitCode::from(64)
        }
    }
}

fn run() -> Result<(), String> {
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("expected --option, got {flag:?}"))?;
        let value = args
            .next()
            .ok_or_else(|| format!("--{name} needs a value"))?;
        options.insert(name.to_owned(), value);
    }
    let number = |name: &str, default: usize| -> Result<usize, String> {
        options.get(name).map_or(Ok(default), |value| {
            value
                .parse()
                .map_err(|_| format!("--{name} {value:?} is not a count"))
        })
    };

    if let Some(path) = options.get("make-csv") {
        let rows = number("rows", 100_000)?;
        let features = number("features", 20)?;
        let started = Instant::now();
        write_benchmark_csv(path, rows, features).map_err(|e| format!("writing {path}: {e}"))?;
        println!(
            "wrote {path}: {rows} rows, {features} features + label, in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }

    let path = options
        .get("csv")
        .ok_or("give --csv FILE --target COLUMN, or --make-csv FILE")?;
    let target = options.get("target").ok_or("--target COLUMN is required")?;
    let started = Instant::now();
    let file = File::open(path).map_err(|e| format!("opening {path}: {e}"))?;
    let spec = DataSpec {
        target: target.clone(),
        features: None,
    };
    let dataset = Dataset::from_csv(std::io::BufReader::new(file), &spec)
        .map_err(|e| format!("{path}: {e}"))?;
    println!(
        "loaded {} rows × {} features in {:.2} s",
        dataset.rows(),
        dataset.feature_names().len(),
        started.elapsed().as_secs_f64()
    );

    let mut params = BTreeMap::new();
    for (option, param) in [
        ("epochs", "epochs"),
        ("lr", "lr"),
        ("batch-size", "batch_size"),
        ("validation-fraction", "validation_fraction"),
        ("seed", "seed"),
    ] {
        if let Some(value) = options.get(option) {
            params.insert(param.to_owned(), value.clone());
        }
    }
    println!(
        "{:<14} {:>6} {:>10} {:>9} {:>9} {:>10}",
        "trainer", "epochs", "s/epoch", "total s", "val acc", "train loss"
    );
    for (trainer, hidden) in [
        (Trainer::LogisticRegression, None),
        (Trainer::Mlp, Some("32")),
    ] {
        let mut trainer_params = params.clone();
        if let Some(hidden) = hidden {
            trainer_params.insert("hidden".into(), hidden.into());
        }
        let config =
            TrainConfig::from_params(trainer, &trainer_params).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut epoch_seconds = Vec::new();
        let mut last = Instant::now();
        let model = train(&dataset, &config, |_| {
            epoch_seconds.push(last.elapsed().as_secs_f64());
            last = Instant::now();
            ControlFlow::Continue(())
        })
        .map_err(|e| e.to_string())?;
        let total = started.elapsed().as_secs_f64();
        let metrics = model.metrics();
        let name = match hidden {
            Some(hidden) => format!("mlp({hidden})"),
            None => trainer.name().to_owned(),
        };
        let mean = epoch_seconds.iter().sum::<f64>() / epoch_seconds.len() as f64;
        println!(
            "{:<14} {:>6} {:>10.4} {:>9.2} {:>9.4} {:>10.4}",
            name,
            model.epochs_run(),
            mean,
            total,
            metrics.accuracy.unwrap_or(f64::NAN),
            metrics.train_loss
        );
    }
    Ok(())
}

/// Writes `rows` rows of `features` standard-normal features and a 3-class `label`: the class
/// with the highest of three noisy scores, one linear, one an interaction, one a distance
/// from the origin. A linear model gets the first right and the others partly; an MLP can
/// learn all three, and the noise caps both below 100 %.
fn write_benchmark_csv(path: &str, rows: usize, features: usize) -> std::io::Result<()> {
    assert!(features >= 8, "the label uses the first eight features");
    let mut rng = SplitMix64(20_261_127);
    let mut out = BufWriter::new(File::create(path)?);
    let header: Vec<String> = (0..features).map(|i| format!("f{i}")).collect();
    writeln!(out, "{},label", header.join(","))?;
    let mut x = vec![0.0f64; features];
    let mut line = String::new();
    for _ in 0..rows {
        for value in x.iter_mut() {
            *value = gaussian(&mut rng);
        }
        let scores = [
            x[0] + x[1] - x[2] + 0.5 * gaussian(&mut rng),
            1.5 * x[3] * x[4] + 0.5 * x[5] + 0.5 * gaussian(&mut rng),
            (x[6] * x[6] + x[7] * x[7]).sqrt() - 1.2 + 0.5 * gaussian(&mut rng),
        ];
        let label = (0..3)
            .max_by(|a, b| scores[*a].total_cmp(&scores[*b]))
            .expect("three scores");
        line.clear();
        for value in &x {
            line.push_str(&format!("{value:.5},"));
        }
        line.push_str(&label.to_string());
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = (rng.unit() + 1.0) / 2.0;
    let u2 = (rng.unit() + 1.0) / 2.0;
    (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
