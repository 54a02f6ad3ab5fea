#!/usr/bin/env python3
"""scikit-learn baseline for Shoal's built-in trainers, on the CSV `bench_trainers` writes.

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn pandas
    cargo run --release -p shoal-train --example bench_trainers -- --make-csv /tmp/shoal_bench.csv
    /tmp/skvenv/bin/python train/bench/sklearn_bench.py --csv /tmp/shoal_bench.csv --target label

Mirrors the Rust trainers' settings where scikit-learn has them: the same validation
fraction (a seeded random split, not the same rows), features standardized on the training
split, no L2 penalty, MLP with one hidden layer of 32 ReLU units, Adam, batch 64, the same
learning rate and number of epochs, no early stopping. LogisticRegression has no epochs: it
runs lbfgs on the full batch to convergence, so its per-iteration time is printed instead.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    frame = pd.read_csv(args.csv)
    y = frame.pop(args.target).to_numpy()
    x = frame.to_numpy(dtype=np.float32)
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")
    print(f"loaded {x.shape[0]} rows x {x.shape[1]} features in "
          f"{time.perf_counter() - started:.2f} s")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=args.validation_fraction, random_state=args.seed)
    scaler = StandardScaler().fit(x_train)
    x_train = scaler.transform(x_train)
    x_val = scaler.transform(x_val)

    print(f"{'model':<20} {'iters':>6} {'s/iter':>10} {'total s':>9} {'val acc':>9}")
    warnings.simplefilter("ignore", ConvergenceWarning)

    models = [
        ("LogisticRegression", LogisticRegression(C=np.inf,
                                                  max_iter=1000)),
        ("MLPClassifier(32)", MLPClassifier(
            hidden_layer_sizes=(32,), solver="adam", batch_size=args.batch_size,
            learning_rate_init=args.lr, max_iter=args.epochs, alpha=0.0,
            n_iter_no_change=args.epochs + 1, tol=0.0, shuffle=True,
            random_state=args.seed)),
    ]
    for name, model in models:
        started = time.perf_counter()
        model.fit(x_train, y_train)
        total = time.perf_counter() - started
        iterations = int(np.max(model.n_iter_))
        accuracy = float(np.mean(model.predict(x_val) == y_val))
        print(f"{name:<20} {iterations:>6} {total / iterations:>10.4f} {total:>9.2f} "
              f"{accuracy:>9.4f}")


if __name__ == "__main__":
    main()
