"""Loads the seed (or another config of its shape) with dlt 1.31 into a lake, as a user's
pipeline would: for the tests that check that resttap continues what dlt loaded.

usage: dlt_lake.py CONFIG.yaml BASE_URL TOKEN BUCKET_URL PIPELINES_DIR PIPELINE_NAME

dlt rejects the seed's `stop_condition`, so it is removed; Parquet files, dataset
<PIPELINE_NAME>_dataset.
"""
import sys

import dlt
import yaml
from dlt.sources.rest_api import rest_api_source

config_path, base_url, token, bucket, pipelines_dir, name = sys.argv[1:7]
cfg = yaml.safe_load(open(config_path))
cfg["client"]["base_url"] = base_url
cfg["client"]["auth"]["token"] = token
for r in cfg["resources"]:
    r["endpoint"]["paginator"].pop("stop_condition", None)
pipeline = dlt.pipeline(
    pipeline_name=name,
    destination=dlt.destinations.filesystem(bucket_url=bucket),
    dataset_name=f"{name}_dataset",
    pipelines_dir=pipelines_dir,
)
print(pipeline.run(rest_api_source(cfg), loader_file_format="parquet"))
