"""The ClientApp: runs inside a district node, on that district's rows, and answers with its
model update only through SecAgg+ (``secaggplus_mod`` masks it before it leaves the node).

Under central DP the update is clipped (``fixedclipping_mod``) before it is masked.

Each update also carries the incoming global model's accuracy and loss on this node's data, so
the weighted average the server unmasks is the global model's metrics over all nodes — no node's
own metrics are sent in the clear.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.client import NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Context

from fl_logistic_app.model import local_update, metrics, read_training_data


class Trainer(NumPyClient):
    def __init__(self, context: Context, model: str) -> None:
        run = context.run_config
        node = context.node_config
        #: "logistic" or "linear": fixed by the ClientApp the FAB's pyproject names, never by
        #: the run config (so an approval of one model kind never runs the other)
        self.model = model
        self.ridge = float(run["ridge"])
        features = [f for f in str(run["features"]).split(",") if f]
        allowed = [c for c in str(node.get("trainable-columns", "")).split(",") if c]
        self.x, self.y = read_training_data(
            str(node["data-path"]), str(run["dataset"]), features, str(run["label"]), allowed
        )
        if len(self.y) < int(run["min-rows"]):
            raise ValueError(f"fewer than {run['min-rows']} rows: this node does not take part")
        #: test hook of the node's own operator: where to keep a copy of each plain update
        #: (inside the node's domain), so an attack test can look for it at the hub.
        self.record = str(node.get("record-updates", ""))
        self.node_id = context.node_id
        #: under central DP every node weighs the same (the noise is calibrated per node)
        self.uniform = float(run.get("noise-multiplier", 0.0)) > 0

    def get_parameters(self, config: dict) -> list[np.ndarray]:
        return [np.zeros(self.x.shape[1] + 2)]

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list, int, dict]:
        incoming = np.asarray(parameters[0], dtype=float)
        w = incoming[: self.x.shape[1]]
        accuracy, loss = metrics(w, self.x, self.y, self.model)
        steps = int(config.get("local-steps", 1))
        new = local_update(w, self.x, self.y, self.model, steps, self.ridge) if steps else w
        update = np.concatenate([new, [accuracy, loss]])
        if self.record:
            folder = Path(self.record)
            folder.mkdir(parents=True, exist_ok=True)
            round_ = int(config.get("server-round", 0))
            np.save(folder / f"update-{self.node_id}-{round_}.npy", update)
        return [update], 1 if self.uniform else len(self.y), {}


def _client_app(model: str) -> ClientApp:
    def client_fn(context: Context):
        return Trainer(context, model).to_client()

    # SecAgg+ outermost: it calls the training step only when collecting masked vectors, and
    # ``fixedclipping_mod`` clips the update there, before it is masked (central DP; without DP
    # the server asks for a clipping norm no update reaches)
    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod, fixedclipping_mod])


# One ClientApp per model kind. Each recipe's FAB names its own in ``[tool.flwr.app.components]``
# of its pyproject.toml (inside the FAB, so inside the approved hash): the model kind is part of
# what an agency approves, and no run config can change it.
logistic_app = _client_app("logistic")
linear_app = _client_app("linear")
