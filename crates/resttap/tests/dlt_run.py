"""Loads a configuration of the seed's shape with dlt 1.31, as a user's pipeline would: for the
tests that compare resttap's dataset with dlt's, and that continue one with the other.

usage: dlt_run.py CONFIG.yaml BASE_URL TOKEN DESTINATION PIPELINES_DIR PIPELINE_NAME

DESTINATION: `duckdb:PATH`, `postgres:URL`, or a filesystem bucket URL (`file:///...`,
`s3://...`: Parquet files). dlt rejects the seed's `stop_condition`, so it is removed. The
dataset is <PIPELINE_NAME>_dataset.
"""
import sys

import dlt
import yaml
from dlt.sources.rest_api import rest_api_source

config_path, base_url, token, destination, pipelines_dir, name = sys.argv[1:7]
cfg = yaml.safe_load(open(config_path))
cfg["client"]["base_url"] = base_url
cfg["client"]["auth"]["token"] = token
for r in cfg["resources"]:
    if isinstance(r, dict):
        (r.get("endpoint") or {}).get("paginator", {}).pop("stop_condition", None)
extra = {}
if destination.startswith("duckdb:"):
    dest = dlt.destinations.duckdb(destination[len("duckdb:"):])
elif destination.startswith("postgres:"):
    dest = dlt.destinations.postgres(destination[len("postgres:"):])
else:
    dest = dlt.destinations.filesystem(bucket_url=destination)
    extra["loader_file_format"] = "parquet"
pipeline = dlt.pipeline(
    pipeline_name=name,
    destination=dest,
    dataset_name=f"{name}_dataset",
    pipelines_dir=pipelines_dir,
)
print(pipeline.run(rest_api_source(cfg), **extra))
