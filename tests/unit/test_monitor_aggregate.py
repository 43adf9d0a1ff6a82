"""Rank 0's folding of samples into PanDA's job figures and ``jobMetrics``."""

from __future__ import annotations

import pytest

from hpcpilot.comm.base import JobReport
from hpcpilot.comm.harvester_files import worker_attributes
from hpcpilot.comm.panda_api import Api, JobUpdate, update_job
from hpcpilot.model import metrics as m
from hpcpilot.model.bounds import JOB_METRICS_MAX
from hpcpilot.model.metrics import MetricSample
from hpcpilot.model.states import JobState
from hpcpilot.monitor.aggregate import MetricsAggregator, job_metrics_string


def sample(t: float, panda_id: int, **values: float) -> MetricSample:
    return MetricSample(t, panda_id, tuple(values.items()))


def two_nodes() -> MetricsAggregator:
    agg = MetricsAggregator()
    agg.add(
        1, [sample(1, 7, rss_kb=100, pss_kb=80, rchar=1000, cpu_s=2), sample(2, 7, rss_kb=300, rchar=5000)]
    )
    agg.add(2, [sample(1, 7, rss_kb=200, rchar=700, cpu_s=5, gpu_util=0.5), sample(2, 7, gpu_util=0.9)])
    agg.add(2, [sample(3, 0, load1=4.0, busy_slots=2)])  # a node sample: not a job figure
    return agg


def test_memory_is_max_over_nodes_and_mean_of_node_means() -> None:
    fig = two_nodes().figures(7, wall_s=10.0)
    assert fig.metrics["maxRSS"] == 300
    assert fig.metrics["avgRSS"] == 200  # node 1: mean 200, node 2: mean 200
    assert fig.metrics["maxPSS"] == 80 and fig.metrics["avgPSS"] == 80
    assert "maxVMEM" not in fig.metrics  # never sampled


def test_counters_add_each_nodes_last_value_and_rates_divide_by_wall() -> None:
    fig = two_nodes().figures(7, wall_s=10.0)
    assert fig.metrics["totRCHAR"] == 5700
    assert fig.metrics["rateRCHAR"] == 570
    assert fig.cpu_s == 7


def test_user_metrics_go_to_job_metrics_as_their_max() -> None:
    fig = two_nodes().figures(7, wall_s=10.0)
    assert fig.job_metrics == "gpu_util=0.9"
    assert all(not k.startswith("gpu") for k in fig.metrics)


def test_unknown_job_and_node_samples_give_no_figures() -> None:
    agg = two_nodes()
    assert agg.figures(8, 1.0).metrics == {}
    assert agg.figures(0, 1.0).metrics == {}


def test_job_metrics_string_cleans_names_and_respects_the_limit() -> None:
    assert job_metrics_string({"my metric=x": 3.0, "b": 1.25}) == "b=1.25 my_metric_x=3"
    long = {f"metric{i:03d}": 123456.0 for i in range(100)}
    text = job_metrics_string(long)
    assert len(text) <= JOB_METRICS_MAX and text.endswith("=123456")


def test_non_finite_values_are_ignored() -> None:
    agg = MetricsAggregator()
    agg.add(1, [sample(1, 3, rss_kb=float("nan")), sample(2, 3, rss_kb=50)])
    assert agg.figures(3, 1.0).metrics["maxRSS"] == 50


@pytest.mark.parametrize("api", [Api.V1, Api.LEGACY])
def test_update_job_sends_known_figures_and_job_metrics_only(api: Api) -> None:
    update = JobUpdate(
        panda_id=7,
        state=JobState.RUNNING,
        metrics=(("maxRSS", 300.0), ("gpu_util", 0.9)),
        job_metrics="gpu_util=0.9",
    )
    params = dict(update_job(api, update).params)
    assert params["max_rss" if api is Api.V1 else "maxRSS"] == 300
    assert params["job_metrics" if api is Api.V1 else "jobMetrics"] == "gpu_util=0.9"
    assert "gpu_util" not in params
    assert JobUpdate.from_record(update.to_record()) == update


def test_worker_attributes_merge_range_counts_and_user_metrics() -> None:
    report = JobReport(
        7,
        JobState.RUNNING,
        ranges={"finished": 3},
        metrics={"maxRSS": 300.0, "nonsense": 1.0},
        job_metrics="gpu_util=0.9",
    )
    attrs = worker_attributes(report, None, "")
    assert attrs["jobMetrics"] == "finished=3 gpu_util=0.9"
    assert attrs["maxRSS"] == 300.0 and "nonsense" not in attrs
    assert m.RSS_KB not in attrs
