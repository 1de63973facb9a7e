"""The hub fills in the model a scoring recipe uses from a training job the lab released.

A ``ModelScoringRecipe`` (``recipes/scoring_contract.py``) scores each node's rows with a model.
If the analyst could send any weight vector, the weights would be a query language: crafted to
move one person across a decile boundary between two runs, the difference of the two releases
would be that person's outcome. So the analyst only names a training job (parameter ``model``);
the hub reads that job's released coefficients — a job the analyst may read, released, of a
training recipe the scoring recipe accepts — and writes its terms and weights into the job's
parameters. A request carrying terms or weights itself is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from datalab.errors import InvalidParameters
from datalab.wire import JobRequest, JobState, JobView
from recipes.contract import Recipe
from recipes.scoring_contract import RESOLVED, ModelScoringRecipe


def resolve_model(
    recipe: Recipe, request: JobRequest, read_job: Callable[[str], JobView]
) -> JobRequest:
    """``request`` with the released model's terms and weights filled in (unchanged for any
    other kind of recipe). ``read_job`` reads a job as the requesting analyst (NotFound,
    Forbidden)."""
    if not isinstance(recipe, ModelScoringRecipe):
        return request
    given = sorted(set(request.params) & set(RESOLVED))
    if given:
        raise InvalidParameters(
            f"parameter {given[0]!r} cannot be given: the lab fills in the terms and weights "
            "of the released model named by parameter 'model'"
        )
    job_id = request.params.get("model")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidParameters("parameter 'model' must name a released training job (its job id)")
    job = read_job(job_id)
    if job.recipe not in recipe.model_recipes:
        raise InvalidParameters(
            f"job {job_id} ran {job.recipe}; {recipe.key} scores with a model released by "
            f"{' or '.join(recipe.model_recipes)}"
        )
    if job.state is not JobState.RELEASED or job.result is None:
        raise InvalidParameters(f"job {job_id} released no model (it is {job.state.value})")
    coefficients = {str(row[0]): float(row[1]) for row in job.result.rows}
    terms = [str(t) for t in job.params["features"]]
    if "intercept" not in coefficients or any(t not in coefficients for t in terms):
        raise InvalidParameters(f"job {job_id}'s released table is not a model")
    weights = [coefficients["intercept"], *(coefficients[t] for t in terms)]
    return request.model_copy(
        update={"params": {**request.params, "terms": terms, "weights": weights}}
    )
