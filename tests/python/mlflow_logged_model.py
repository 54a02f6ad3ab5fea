"""MLflow 3's model logging, run against a Shoal hub by tests/tests/mlflow_client.rs.

A run logs an ONNX model with `mlflow.onnx.log_model(...)`, which creates an MLflow 3 logged
model, uploads its folder and links it to the run. The script then registers it by its
`models:/m-...` URI and again by `runs:/<run>/<name>`, reads the files back by both URIs and
by the registered version, searches logged models, and prints one JSON summary line that the
Rust test checks.

The ONNX graph is built here with `onnx.helper`, so nothing is downloaded.

Usage: mlflow_logged_model.py <experiment name> <model name>
"""

import json
import os
import sys
import tempfile

import mlflow
import mlflow.onnx
import onnx
from onnx import TensorProto, helper
from mlflow.tracking import MlflowClient


def tiny_gemm() -> onnx.ModelProto:
    """y = x @ W + b, x of shape [batch, 4], y of shape [batch, 2].

    The batch dimension is named: tract, which validates models for the registry, needs a
    known or named size for every input dimension.
    """
    weights = helper.make_tensor(
        "W", TensorProto.FLOAT, [4, 2], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    )
    bias = helper.make_tensor("B", TensorProto.FLOAT, [2], [0.0, 1.0])
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"])],
        "occupancy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    experiment_name, model_name = sys.argv[1], sys.argv[2]
    client = MlflowClient()
    summary = {}
    model = tiny_gemm()
    model_bytes = model.SerializeToString()

    experiment = mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name="logged-onnx") as run:
        run_id = run.info.run_id
        mlflow.log_param("hidden", "0")
        # Logged before log_model, which logs the run's metrics at its step again.
        mlflow.log_metric("loss", 0.5, step=0)
        info = mlflow.onnx.log_model(model, name="onnx-model", params={"opset": "13"})
    summary["run_id"] = run_id
    summary["model_id"] = info.model_id
    summary["model_uri"] = info.model_uri

    # The logged model, read back.
    logged = client.get_logged_model(info.model_id)
    summary["logged_status"] = str(logged.status)
    summary["logged_name"] = logged.name
    summary["logged_source_run"] = logged.source_run_id
    summary["logged_params"] = logged.params
    summary["logged_artifact_location"] = logged.artifact_location
    summary["logged_files"] = sorted(
        f.path for f in client.list_logged_model_artifacts(info.model_id)
    )
    found = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string="name = 'onnx-model'",
        output_format="list",
    )
    summary["search_ids"] = [m.model_id for m in found]
    summary["search_none"] = len(
        mlflow.search_logged_models(
            experiment_ids=[experiment.experiment_id],
            filter_string="name = 'no-such-model'",
            output_format="list",
        )
    )
    got = client.get_run(run_id)
    summary["run_model_outputs"] = [o.model_id for o in got.outputs.model_outputs]
    summary["loss_history"] = [
        [m.step, m.value] for m in client.get_metric_history(run_id, "loss")
    ]

    # Register by the model URI, then by the run-relative URI of the logged model's name.
    version = mlflow.register_model(info.model_uri, model_name)
    summary["version"] = version.version
    summary["version_source"] = version.source
    summary["version_run_id"] = version.run_id
    by_run = mlflow.register_model(f"runs:/{run_id}/onnx-model", model_name)
    summary["by_run_version"] = by_run.version
    summary["by_run_source"] = by_run.source
    summary["logged_model_versions"] = json.loads(
        client.get_logged_model(info.model_id).tags.get("mlflow.modelVersions", "[]")
    )

    # The files come back byte for byte, by every URI.
    with tempfile.TemporaryDirectory() as work:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=info.model_uri, dst_path=os.path.join(work, "by-id")
        )
        with open(os.path.join(local, "model.onnx"), "rb") as f:
            summary["download_roundtrip"] = f.read() == model_bytes
        loaded = mlflow.onnx.load_model(f"models:/{model_name}/1")
        summary["load_registered_roundtrip"] = loaded.SerializeToString() == model_bytes
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{run_id}/onnx-model/model.onnx",
            dst_path=os.path.join(work, "by-run"),
        )
        with open(local, "rb") as f:
            summary["run_uri_roundtrip"] = f.read() == model_bytes

    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
