"""The node agent: runs beside one agency's data, pulls signed tasks from the hub, checks them
against the agency's own approvals and column policy, computes aggregates locally and answers
with signed partials. Rows and identifiers never leave this process.

See docs/node.md for how to run and administer it.
"""
