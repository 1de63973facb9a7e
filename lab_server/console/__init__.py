"""The web console: server-rendered pages for agency admins, auditors and operators.

Thin like the API routes: each page checks the permissions table through the same ``Gate`` and
calls the same services. Approving and revoking are signed **in the admin's browser** with the
agency key (WebCrypto Ed25519, ``static/sign.js``): the hub receives the signed grant, never the
key — exactly what ``datalab approvals approve`` does on the command line.
"""
