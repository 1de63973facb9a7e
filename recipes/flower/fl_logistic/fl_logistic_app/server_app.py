"""The ServerApp: runs under the hub's SuperLink and only ever holds the aggregate.

Each round is a SecAgg+ fit round (``SecAggPlusWorkflow``): nodes upload masked vectors and the
server unmasks only their weighted sum, so no district's update is ever seen on its own. With
central DP (``noise-multiplier`` > 0) the nodes clip their updates and Flower's wrapper adds
Gaussian noise to the sum before anything is recorded. After
the training rounds one more secure round with no local steps evaluates the final model (the
nodes send it back unchanged, with its metrics on their data). Each round's aggregate —
coefficients, metrics, how many nodes answered — is appended as one JSON line to the file the
hub named in ``result-path``; that file is all the hub reads back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from flwr.common import ArrayRecord, Context, ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


class SecAggPlus(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, forgetting nodes that never took part in a round.

    Flower 1.42 keeps every *sampled* node in the unmask stage's list of dead nodes, even one
    that never answered the setup stage (a node whose gate refused the app, or that died
    first): the server then asks the others for key shares nobody holds, the clients fail with
    ``KeyError`` and the round is lost ("Not enough shares to recover secret"). A node that has
    not distributed its key shares has no mask in anyone's vector, so after the setup and the
    share-keys stages only the nodes that answered count as sampled. A node dropping later
    (after sharing its keys) is still a dead node the protocol recovers from, as designed.
    """

    def setup_stage(self, grid, context, state):
        ok = super().setup_stage(grid, context, state)
        return self._forget_silent(state) if state.active_node_ids else ok

    def share_keys_stage(self, grid, context, state):
        super().share_keys_stage(grid, context, state)
        return self._forget_silent(state)

    def _forget_silent(self, state) -> bool:
        state.sampled_node_ids = set(state.active_node_ids)
        return len(state.active_node_ids) >= 2 and self._check_threshold(state)


class Counting(FedAvg):
    """FedAvg that remembers how many nodes each round's aggregate holds.

    Under SecAgg+ every result already carries the unmasked weighted average (the workflow
    writes the aggregate into each), so averaging again returns it unchanged.
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.counts: dict[int, tuple[int, int]] = {}

    def configure_fit(self, server_round, parameters, client_manager):
        items = super().configure_fit(server_round, parameters, client_manager)
        # the first round waits for every expected node; later ones go on with who is left
        self.min_available_clients = 2
        self.min_fit_clients = 2
        return items

    def aggregate_fit(self, server_round, results, failures):
        self.counts[server_round] = (len(results), len(failures))
        return super().aggregate_fit(server_round, results, failures)


class CentralDP(DifferentialPrivacyClientSideFixedClipping):
    """Flower's central-DP wrapper (clipping at the nodes, Gaussian noise on the sum here),
    going on when a node failed: Flower's wrapper drops any round with a failure, and a node
    whose gate refused the app always fails. The noise is calibrated for the smallest sum
    SecAgg+ releases (2 nodes), so fewer answering nodes never means less noise per node."""

    def aggregate_fit(self, server_round, results, failures):
        return super().aggregate_fit(server_round, results, [])


class Recorder:
    """The fit workflow of each round: SecAgg+ (and DP noise), then one JSON line of the
    aggregate — as released, after any noise — to the hub's result file. The last round only
    evaluates: its metrics are kept, the model is not changed by it."""

    def __init__(self, secure, counts: Counting, run, features: list[str], rounds: int) -> None:
        self.secure = secure
        self.counts = counts
        self.path = Path(str(run["result-path"])) if run["result-path"] else None
        self.d = len(features) + 1
        self.rounds = rounds
        self.started = time.time()

    def __call__(self, grid: Grid, context: Context) -> None:
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD]["current_round"])
        before = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()[0]
        self.secure(grid, context)
        if server_round not in self.counts.counts:
            return  # the round was lost: the model stays as it was
        after = context.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()[0]
        evaluation = server_round > self.rounds
        if evaluation:
            after = np.concatenate([before[: self.d], after[self.d :]])
            context.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord([after])
        nodes, failures = self.counts.counts[server_round]
        self.write(
            {
                "round": server_round,
                "evaluation_only": evaluation,
                "nodes": nodes,
                "failures": failures,
                # the metrics are those of the model that entered this round
                "accuracy": float(after[self.d]),
                "loss": float(after[self.d + 1]),
                "intercept": float(after[0]),
                "coefficients": [float(v) for v in after[1 : self.d]],
                "seconds": round(time.time() - self.started, 3),
            }
        )

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    rounds = int(run["num-server-rounds"])
    steps = int(run["local-steps"])
    features = [f for f in str(run["features"]).split(",") if f]
    min_nodes = max(2, int(run.get("min-nodes", 2)))
    timeout = float(run["round-timeout"])
    noise = float(run.get("noise-multiplier", 0.0))

    def fit_config(server_round: int) -> dict:
        return {
            "local-steps": steps if server_round <= rounds else 0,
            "server-round": server_round,
            # read by fixedclipping_mod; without DP no update comes near it
            "clipping_norm": 1e12,
        }

    counting = Counting(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=min_nodes,
        min_evaluate_clients=0,
        min_available_clients=min_nodes,
        accept_failures=True,
        on_fit_config_fn=fit_config,
        initial_parameters=ndarrays_to_parameters([np.zeros(len(features) + 3)]),
    )
    strategy = (
        CentralDP(
            counting,
            noise_multiplier=noise,
            clipping_norm=float(run["clipping-norm"]),
            num_sampled_clients=2,
        )
        if noise > 0
        else counting
    )
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=rounds + 1, round_timeout=timeout),
        strategy=strategy,
    )
    # every sampled node shares its secrets with every other (a float is Flower's "share of
    # the sampled nodes"): with a sparse graph (3 shares of 4 nodes) one death plus one refusal
    # can leave a live node with a single live neighbour, below the threshold, and the round
    # halts ("Insufficient available nodes"); the threshold, and so the privacy, is unchanged
    secure = SecAggPlus(
        num_shares=1.0,
        reconstruction_threshold=2,
        max_weight=float(run.get("max-weight", 100000.0)),
        timeout=timeout,
    )
    recorder = Recorder(secure, counting, run, features, rounds)
    DefaultWorkflow(fit_workflow=recorder)(grid, legacy)
    vector = legacy.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()[0]
    recorder.write(
        {
            "done": True,
            "intercept": float(vector[0]),
            "coefficients": [float(v) for v in vector[1 : recorder.d]],
            "seconds": round(time.time() - recorder.started, 3),
        }
    )
