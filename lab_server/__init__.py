"""The lab server ("hub"): catalogue, recipes, jobs and their state machine, and the audit log.

It holds metadata and aggregates only — never rows or identifiers. Nodes pull signed tasks from
it and post signed partials; analysts submit jobs and read released, disclosure-controlled
results. See ``docs/protocol.md`` for the wire protocol and ``docs/hub.md`` for operation.
"""
