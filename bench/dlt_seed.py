"""Runs the seed configuration with dlt 1.31 (the reference) against a running mock API.

usage: dlt_seed.py CONFIG.yaml BASE_URL TOKEN (DUCKDB_PATH | postgresql://... PIPELINES_DIR
                  | file:///LAKE PIPELINES_DIR (delta|parquet))

dlt rejects the seed's `stop_condition`, so it is removed; everything else is the seed as is.
"""
import sys

import yaml
import dlt
from dlt.sources.rest_api import rest_api_source

config_path, base_url, token, target = sys.argv[1:5]
cfg = yaml.safe_load(open(config_path))
cfg["client"]["base_url"] = base_url
cfg["client"]["auth"]["token"] = token
for r in cfg["resources"]:
    r["endpoint"]["paginator"].pop("stop_condition", None)

run_args = {}
if target.startswith("postgresql://"):
    destination = dlt.destinations.postgres(target)
    pipelines_dir = sys.argv[5]
elif target.startswith("file://"):
    destination = dlt.destinations.filesystem(bucket_url=target)
    pipelines_dir = sys.argv[5]
    if sys.argv[6] == "delta":
        cfg["resource_defaults"]["table_format"] = "delta"
    else:
        run_args["loader_file_format"] = "parquet"
else:
    destination = dlt.destinations.duckdb(target)
    pipelines_dir = target + ".pipelines"
pipeline = dlt.pipeline(
    pipeline_name="bench_dlt",
    destination=destination,
    dataset_name="bench_dataset",
    pipelines_dir=pipelines_dir,
)
info = pipeline.run(rest_api_source(cfg), **run_args)
print(info)
