"""The hub fills in a scoring recipe's model from a released training job, and only from one."""

from __future__ import annotations

import pytest

from datalab.errors import InvalidParameters, NotFound
from datalab.wire import JobRequest, JobState, JobView, Table
from lab_server.released_models import resolve_model
from recipes.aggregate import FederatedAggregate
from recipes.ranking_yield import RankingYield

TERMS = ["age", "flag_type=separation"]


def job(recipe: str = "fl_logistic", state: JobState = JobState.RELEASED, **extra) -> JobView:
    rows = [["intercept", -0.4], ["age", 0.25], ["flag_type=separation", 1.5]]
    return JobView(
        job_id="j1",
        recipe=recipe,
        version="1.0.0",
        code_sha256="0" * 64,
        params={"features": TERMS},
        analyst="analyst",
        state=state,
        created_at=0.0,
        updated_at=0.0,
        tasks=[],
        result=Table(columns=["term", "coefficient"], rows=rows),
        **extra,
    )


def resolve(params: dict, found: JobView | None = None) -> dict:
    def read(job_id: str) -> JobView:
        if found is None:
            raise NotFound(f"no job {job_id}")
        return found

    request = JobRequest(recipe="ranking_yield", params=params)
    return resolve_model(RankingYield(), request, read).params


def test_the_released_models_terms_and_weights_are_filled_in_in_order() -> None:
    params = resolve({"model": "j1"}, job())
    assert params == {"model": "j1", "terms": TERMS, "weights": [-0.4, 0.25, 1.5]}
    assert RankingYield().validate(params)["weights"] == [-0.4, 0.25, 1.5]
    assert resolve({"model": "j1"}, job(recipe="fl_linear"))["terms"] == TERMS


def test_only_a_released_training_job_names_a_model() -> None:
    with pytest.raises(InvalidParameters, match="cannot be given"):
        resolve({"model": "j1", "weights": [1.0, 2.0, 3.0]}, job())
    with pytest.raises(NotFound):
        resolve({"model": "nope"})
    with pytest.raises(
        InvalidParameters,
        match="ran aggregate; ranking_yield",
    ):
        resolve({"model": "j1"}, job(recipe="aggregate"))
    with pytest.raises(InvalidParameters, match="released no model \\(it is failed\\)"):
        resolve({"model": "j1"}, job(state=JobState.FAILED))
    with pytest.raises(InvalidParameters, match="must name a released training job"):
        resolve({"model": 3}, job())


def test_other_recipes_pass_through_untouched() -> None:
    request = JobRequest(recipe="aggregate", params={"weights": [1]})
    assert resolve_model(FederatedAggregate(), request, lambda _: job()) is request
