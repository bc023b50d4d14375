"""Great Expectations suites, one per dataset and gate config, built once per process.

Each rule is a real GE expectation over a column that quality.frames derives from the batch
(roles as one string, texts, shortest message, attribute range, ...). Every expectation
carries a `name` in its meta, which the report, the catalog and the tests use.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import pandas as pd

from quality.config import GateConfig
from quality.frames import CONVERSATIONS
from storage.schemas import SCHEMAS

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # an offline machine: no usage statistics

_LOCK = threading.Lock()
DETAILED = {"result_format": "SUMMARY", "unexpected_index_column_names": ["id"], "partial_unexpected_count": 10}  # GE's context is not thread-safe, and Prefect may run gates in threads


@functools.lru_cache(maxsize=1)
def ge_context():
    """The process's ephemeral GE context (GE import costs seconds: only once, only when gating)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GE fingerprints every pandas batch under this size by hashing each cell (a batch marker
    # nobody reads): 0.17 s of a 25,000-row preference batch, the suite's single largest cost.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _required_columns(dataset: str) -> list[str]:
    nested = set(CONVERSATIONS[dataset])
    names = [f.name for f in SCHEMAS[dataset] if not f.nullable]
    return [f"{n}_roles" if n in nested else n for n in names]


def expectation_specs(dataset: str, config: GateConfig) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, GE expectation class, kwargs) for every rule of this dataset's gate."""
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("required_columns", "ExpectTableColumnsToMatchSet",
         {"column_set": _required_columns(dataset), "exact_match": False}),
        ("batch_not_empty", "ExpectTableRowCountToBeBetween", {"min_value": config.min_rows}),
        ("id_not_null", "ExpectColumnValuesToNotBeNull", {"column": "id"}),
        ("id_unique", "ExpectColumnValuesToBeUnique", {"column": "id"}),
    ]
    for column, order in CONVERSATIONS[dataset].items():
        # the text's length is null exactly when the text is (a null conversation or content)
        specs.append((f"{column}_text_not_null", "ExpectColumnValuesToNotBeNull", {"column": f"{column}_chars"}))
        specs.append((f"{column}_role_order", "ExpectColumnValuesToMatchRegex",
                      {"column": f"{column}_roles", "regex": order}))
    if dataset == "topics":
        specs.append(("topic_text_not_null", "ExpectColumnValuesToNotBeNull", {"column": "topic_chars"}))
    specs += [
        ("text_min_length", "ExpectColumnValuesToBeBetween",
         {"column": "shortest_text_chars", "min_value": config.min_text_chars}),
        ("text_max_length", "ExpectColumnValuesToBeBetween",
         {"column": "longest_text_chars", "max_value": config.max_text_chars}),
    ]
    if dataset == "preferences":
        for side in ("chosen", "rejected"):
            specs.append((f"{side}_text_length", "ExpectColumnValuesToBeBetween",
                          {"column": f"{side}_chars", "min_value": config.min_text_chars,
                           "max_value": config.max_text_chars}))
        specs.append(("chosen_differs_from_rejected", "ExpectColumnValuesToBeInSet",
                      {"column": "chosen_equals_rejected", "value_set": [False]}))
    if dataset in ("dialogues", "responses", "preferences"):
        specs.append(("attributes_in_range_low", "ExpectColumnValuesToBeBetween",
                      {"column": "attr_low", "min_value": config.attribute_min}))
        specs.append(("attributes_in_range_high", "ExpectColumnValuesToBeBetween",
                      {"column": "attr_high", "max_value": config.attribute_max}))
    specs.append(("acceptance_rate", "ExpectColumnMeanToBeBetween",
                  {"column": "accepted", "min_value": config.min_acceptance_rate}))
    return specs


@functools.lru_cache(maxsize=64)
def _validation(dataset: str, config_json: str):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    config = GateConfig.model_validate_json(config_json)
    context = ge_context()
    key = f"{dataset}-{abs(hash(config_json)) % 10**10}"
    suite = gx.ExpectationSuite(name=f"{key}-suite")
    for name, kind, kwargs in expectation_specs(dataset, config):
        suite.add_expectation(getattr(gxe, kind)(**kwargs, meta={"name": name}))
    suite = context.suites.add(suite)
    batch = (context.data_sources.add_pandas(f"{key}-source").add_dataframe_asset(f"{dataset}")
             .add_batch_definition_whole_dataframe("whole batch"))
    return context.validation_definitions.add(gx.ValidationDefinition(name=f"{key}-validation", data=batch, suite=suite))


def suite_for(dataset: str, config: GateConfig):
    """The ValidationDefinition of this dataset under this config (cached for the process)."""
    with _LOCK:
        return _validation(dataset, config.model_dump_json())


def warm_up(configs: dict[str, GateConfig]) -> None:
    """Build GE's context and these datasets' suites now (seconds of imports and setup): the gate
    worker process does it as it starts, while the flow's first model calls are in flight."""
    for dataset, config in configs.items():
        suite_for(dataset, config)


def _threshold(kwargs: dict[str, Any]) -> str:
    shown = {k: v for k, v in kwargs.items() if k not in ("column", "batch_id")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _plain(value: Any) -> Any:
    """numpy scalars and other odd types from GE results as JSON-friendly values."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    return value


def validate(dataset: str, frame: pd.DataFrame, config: GateConfig) -> tuple[list[dict[str, Any]], dict]:
    """Run the suite on a flat frame: (one record per expectation, GE's own result as JSON)."""
    validation = suite_for(dataset, config)
    with _LOCK:
        # BASIC is ~40% cheaper; a failing batch (rare) is validated again to name the failing ids
        result = validation.run(batch_parameters={"dataframe": frame}, result_format="BASIC")
        if not result.success:
            result = validation.run(batch_parameters={"dataframe": frame}, result_format=DETAILED)
    records = []
    for item in result.results:
        expectation = item.expectation_config
        observed = item.result.get("observed_value")
        if observed is None and "unexpected_count" in item.result:
            observed = f"{item.result['unexpected_count']} unexpected of {item.result.get('element_count')}"
        if expectation.type == "expect_table_columns_to_match_set" and isinstance(observed, list):
            observed = {"missing": sorted(set(expectation.kwargs["column_set"]) - set(observed))}
        details: dict[str, Any] = {"column": expectation.kwargs.get("column")}
        if item.result.get("partial_unexpected_list"):
            details["examples"] = [_plain(v) for v in item.result["partial_unexpected_list"][:5]]
        if item.result.get("partial_unexpected_index_list"):
            details["example_ids"] = [row.get("id") if isinstance(row, dict) else row
                                      for row in item.result["partial_unexpected_index_list"][:5]]
        if item.exception_info and item.exception_info.get("raised_exception"):
            details["error"] = str(item.exception_info.get("exception_message"))[:300]
        records.append({"expectation": expectation.meta.get("name", expectation.type), "type": expectation.type,
                        "success": bool(item.success), "observed": _plain(observed),
                        "threshold": _threshold(expectation.kwargs), "details": details})
    return records, result.to_json_dict()
