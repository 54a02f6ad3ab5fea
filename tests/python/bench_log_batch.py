"""Measures metric logging throughput through MLflow's `log_batch` against a tracking server.

Point it at Shoal or at a stock `mlflow server` with MLFLOW_TRACKING_URI (and, for Shoal,
MLFLOW_TRACKING_TOKEN); it creates one run and logs --total metric points in batches of
--batch (MLflow's limit is 1000), then prints the rate.

    MLFLOW_TRACKING_URI=http://127.0.0.1:7080 MLFLOW_TRACKING_TOKEN=$(cat data/admin.token) \\
        python bench_log_batch.py --total 100000
"""

import argparse
import json
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=100_000, help="metric points to log")
    parser.add_argument("--batch", type=int, default=1000, help="points per log_batch call")
    parser.add_argument("--keys", type=int, default=10, help="distinct metric keys")
    parser.add_argument("--experiment", default="bench-log-batch")
    args = parser.parse_args()

    client = MlflowClient()
    experiment = client.get_experiment_by_name(args.experiment)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(args.experiment)
    )
    run_id = client.create_run(experiment_id, run_name="bench").info.run_id

    now = int(time.time() * 1000)
    batches = []
    for start in range(0, args.total, args.batch):
        batches.append([
            Metric(f"m{i % args.keys}", i * 0.001, now, i // args.keys)
            for i in range(start, min(start + args.batch, args.total))
        ])

    started = time.perf_counter()
    for batch in batches:
        client.log_batch(run_id, metrics=batch)
    elapsed = time.perf_counter() - started
    client.set_terminated(run_id)

    logged = sum(len(b) for b in batches)
    history = client.get_metric_history(run_id, "m0")
    assert len(history) == (logged + args.keys - 1) // args.keys, len(history)
    print(json.dumps({
        "metrics": logged,
        "batch": args.batch,
        "calls": len(batches),
        "seconds": round(elapsed, 3),
        "metrics_per_second": round(logged / elapsed),
        "ms_per_call": round(1000 * elapsed / len(batches), 2),
    }))


if __name__ == "__main__":
    main()
