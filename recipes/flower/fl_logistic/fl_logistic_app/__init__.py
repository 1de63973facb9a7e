"""Federated logistic regression as a Flower app (the ``fl_logistic`` recipe's reviewed code)."""
