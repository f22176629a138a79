"""Use cases of the MES over a SQLAlchemy `Session`: what the API and the screens call.

Each function takes the session and the acting `Actor`, checks the actor's permission and
export-control clearance, applies the pure rules of `mes.domain`, writes the records and
their audit entries, and flushes. The caller commits (one request, one transaction), so a
refused step leaves nothing behind. Errors are `mes.domain.errors` exceptions.
"""
