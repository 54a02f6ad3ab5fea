"""An ordinary MLflow script, run against a Shoal hub by tests/tests/mlflow_client.rs.

It uses only the official client (MLFLOW_TRACKING_URI / MLFLOW_TRACKING_TOKEN point it at the
hub), logs a run with params, metrics, tags and artifacts, reads everything back, searches,
registers the run's ONNX model and moves an alias, then prints one JSON summary line that the
Rust test checks.

Usage: mlflow_roundtrip.py <experiment name> <model name> <path of an .onnx file>
"""

import json
import math
import os
import sys
import tempfile
import time

import mlflow
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def main() -> None:
    experiment_name, model_name, onnx_path = sys.argv[1], sys.argv[2], sys.argv[3]
    client = MlflowClient()
    summary = {}

    experiment = mlflow.set_experiment(experiment_name)
    summary["experiment_id"] = experiment.experiment_id

    with tempfile.TemporaryDirectory() as work:
        notes = os.path.join(work, "notes.txt")
        with open(notes, "w") as f:
            f.write("occupancy model, trained on the lab sensors\n")
        # The layout MLflow's onnx flavor writes: a folder with MLmodel next to model.onnx.
        model_dir = os.path.join(work, "model")
        os.makedirs(model_dir)
        with open(os.path.join(model_dir, "MLmodel"), "w") as f:
            f.write("flavors:\n  onnx:\n    data: model.onnx\n")
        with open(onnx_path, "rb") as src, open(os.path.join(model_dir, "model.onnx"), "wb") as dst:
            dst.write(src.read())

        with mlflow.start_run(run_name="mlp-baseline") as run:
            run_id = run.info.run_id
            mlflow.log_params({"lr": "0.01", "hidden": "8"})
            mlflow.log_param("optimizer", "adam")
            for step in range(5):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metric("weird", float("nan"), step=0)
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric("accuracy", 0.5 + 0.1 * s, now, s) for s in range(4)],
                params=[Param("batch_size", "32")],
                tags=[RunTag("stage", "baseline")],
            )
            mlflow.set_tag("team", "occupancy")
            mlflow.set_tags({"device_class": "pi4", "temporary": "yes"})
            client.delete_tag(run_id, "temporary")
            mlflow.log_artifact(notes)
            mlflow.log_artifacts(model_dir, artifact_path="model")

        summary["run_id"] = run_id

        # Read everything back through the client.
        got = client.get_run(run_id)
        summary["status"] = got.info.status
        summary["run_name"] = got.info.run_name
        summary["params"] = got.data.params
        summary["metrics"] = {
            k: (None if math.isnan(v) else v) for k, v in got.data.metrics.items()
        }
        summary["tags"] = {k: v for k, v in got.data.tags.items() if not k.startswith("mlflow.")}
        summary["loss_history"] = [
            [m.step, m.value] for m in client.get_metric_history(run_id, "loss")
        ]
        summary["accuracy_history"] = [
            [m.step, m.value] for m in client.get_metric_history(run_id, "accuracy")
        ]
        summary["artifacts"] = sorted(
            (f.path, f.is_dir) for f in client.list_artifacts(run_id)
        )
        summary["model_artifacts"] = sorted(f.path for f in client.list_artifacts(run_id, "model"))
        download = os.path.join(work, "download")
        os.makedirs(download)
        local = client.download_artifacts(run_id, "notes.txt", download)
        with open(local) as f:
            summary["notes_roundtrip"] = f.read() == open(notes).read()
        local_model = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model/model.onnx", dst_path=download
        )
        with open(local_model, "rb") as f, open(onnx_path, "rb") as g:
            summary["onnx_roundtrip"] = f.read() == g.read()

    # Searches.
    found = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string="metrics.accuracy > 0.7 and params.optimizer = 'adam'",
        output_format="list",
    )
    summary["search_hits"] = [r.info.run_id for r in found]
    missed = client.search_runs(
        [experiment.experiment_id], filter_string="metrics.accuracy > 0.99"
    )
    summary["search_misses"] = len(missed)
    by_name = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.run_name = 'mlp-baseline'"
    )
    summary["search_by_name"] = len(by_name)

    # Experiments search, and a second run that is deleted and restored.
    summary["experiments_found"] = [
        e.name for e in client.search_experiments(filter_string=f"name = '{experiment_name}'")
    ]
    scratch = client.create_run(experiment.experiment_id, run_name="scratch")
    client.set_terminated(scratch.info.run_id, status="KILLED")
    client.delete_run(scratch.info.run_id)
    deleted = client.search_runs(
        [experiment.experiment_id], run_view_type=ViewType.DELETED_ONLY
    )
    summary["deleted_runs"] = [r.info.run_name for r in deleted]
    client.restore_run(scratch.info.run_id)
    everything = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.run_name ASC"], max_results=1
    )
    summary["first_by_name"] = [r.info.run_name for r in everything]
    summary["scratch_status"] = client.get_run(scratch.info.run_id).info.status

    # Register the logged model, move an alias, read it back by alias.
    version = mlflow.register_model(f"runs:/{run_id}/model", model_name)
    summary["model_version"] = version.version
    client.set_registered_model_alias(model_name, "champion", version.version)
    by_alias = client.get_model_version_by_alias(model_name, "champion")
    summary["alias_version"] = by_alias.version
    summary["alias_run_id"] = by_alias.run_id
    summary["registered_latest"] = [
        v.version for v in client.get_registered_model(model_name).latest_versions
    ]

    # A source without an ONNX file is refused with MLflow's error code.
    try:
        client.create_model_version(model_name, f"runs:/{run_id}/notes.txt", run_id)
        summary["non_onnx_error"] = None
    except MlflowException as e:
        summary["non_onnx_error"] = e.error_code
        summary["non_onnx_message"] = e.message

    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
